"""Latency over time from live_latency.py's JSON: a per-minute table and a plot, before against after.

    python benchmarks/live_report.py benchmarks/live/edgetam512-10min
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def per_minute(series: list[list[float]]) -> list[tuple[int, float, float, int]]:
    t = np.array([s[0] for s in series])
    lat = np.array([s[1] for s in series]) * 1000
    rows = []
    for m in range(int(t.max() // 60) + 1):
        sel = lat[(t >= 60 * m) & (t < 60 * (m + 1))]
        if len(sel):
            rows.append((m + 1, round(float(np.median(sel)), 1), round(float(np.percentile(sel, 95)), 1), len(sel)))
    return rows


def main() -> int:
    folder = Path(sys.argv[1])
    runs = {}
    for name in ("before", "service"):
        path = folder / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            (per,) = data["runs"].values()
            runs[name] = per["cam0"]
    lines = ["| minute | " + " | ".join(f"{n} p50 / p95 ms (results)" for n in runs) + " |",
             "| --- |" + " --- |" * len(runs)]
    tables = {n: {r[0]: r for r in per_minute(s["series"])} for n, s in runs.items()}
    for minute in sorted(set().union(*[set(t) for t in tables.values()])):
        cells = [f"{t[minute][1]:.0f} / {t[minute][2]:.0f} ({t[minute][3]})" if minute in t else "-"
                 for t in tables.values()]
        lines.append(f"| {minute} | " + " | ".join(cells) + " |")
    (folder / "per_minute.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for name, s in runs.items():
        t = [p[0] for p in s["series"]]
        lat = [p[1] for p in s["series"]]
        label = "before: one read per tracked frame" if name == "before" else "after: newest frame (engine.live)"
        ax.plot(t, lat, lw=0.6, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("camera to result (s)")
    ax.set_title("EdgeTAM 512, OpenVINO CPU f32, 2 cores; a 30 fps MJPEG camera", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
