"""Statistics, console table, JSON, CSV and the stacked-bar chart of a benchmark."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

STAGE_ORDER = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
# what ProfiledStages logs: the stages, and the memory store's work (stacking memories, rounding new ones)
TIMED = (*STAGE_ORDER, "memory_bank")


def stats_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "min_ms": float("nan"), "count": 0}
    a = np.asarray(values) * 1000.0
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "min_ms": round(float(a.min()), 3), "count": int(a.size)}


def summarise(frames: list[dict[str, Any]], flops: dict[str, float]) -> dict[str, Any]:
    """frames: [{"total": s, "stages": [(name, s), ...]}] of the measured frames."""
    calls: dict[str, list[float]] = {}
    per_frame: dict[str, list[float]] = {}
    host = []
    for f in frames:
        sums: dict[str, float] = {}
        for name, sec in f["stages"]:
            calls.setdefault(name, []).append(sec)
            sums[name] = sums.get(name, 0.0) + sec
        for name in calls:
            per_frame.setdefault(name, []).append(sums.get(name, 0.0))
        host.append(f["total"] - sum(sums.values()))
    total = [f["total"] for f in frames]
    stages = {}
    for name in TIMED:
        if name not in calls:
            continue
        s = {"per_call": stats_ms(calls[name]), "per_frame": stats_ms(per_frame[name])}
        gflop = flops.get(name)
        if gflop is not None:
            s["gflop_per_call"] = round(gflop / 1e9, 3)
            med = s["per_call"]["median_ms"]
            s["gflop_per_s"] = round(gflop / 1e9 / (med / 1000.0), 1) if med and med == med else None
        stages[name] = s
    frame = stats_ms(total)
    host_ms = stats_ms(host)
    med = frame["median_ms"]
    return {
        "frame": frame,
        "fps": round(1000.0 / med, 3) if med and med == med else None,
        "host_overhead": host_ms,
        "host_fraction": round(float(np.median(host) / np.median(total)), 4) if total else None,
        "stages": stages,
    }


def run_label(run: dict[str, Any]) -> str:
    return f"{run['label']}, {run['objects']} obj, {run['memory_frames']} mem"


def format_table(runs: list[dict[str, Any]]) -> str:
    def key(r: dict[str, Any]) -> tuple:
        return r.get("variant"), r["objects"], r["memory_frames"]

    ref = {key(r): r for r in runs if r["backend"]["runtime"] == "torch"}
    head = (f"{'run':<44} {'frame ms':>9} {'fps':>6} {'vs torch':>8} {'host %':>6}  "
            + "  ".join(f"{s[:12]:>12}" for s in TIMED))
    lines = [head, "-" * len(head)]
    for r in runs:
        st = r["steady"]
        torch_run = ref.get(key(r))
        ratio = (f"{torch_run['steady']['frame']['median_ms'] / st['frame']['median_ms']:.2f}x"
                 if torch_run else "")
        cells = []
        for s in TIMED:
            x = st["stages"].get(s)
            cells.append(f"{x['per_frame']['median_ms']:>12.1f}" if x else f"{'-':>12}")
        host = st["host_fraction"]
        lines.append(f"{run_label(r):<44} {st['frame']['median_ms']:>9.1f} {st['fps']:>6.2f} {ratio:>8} "
                     f"{100 * host if host is not None else float('nan'):>6.1f}  " + "  ".join(cells))
    lines.append("stage columns: median ms per frame (all objects); 'vs torch': PyTorch frame time / this run's")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1, default=str))


def write_csv(runs: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "runtime", "device", "precision", "objects", "memory_frames", "phase", "stage",
                    "median_ms", "p90_ms", "min_ms", "count", "gflop_per_call", "gflop_per_s"])
        for r in runs:
            d = r["backend"]
            for phase in ("steady", "first_frames"):
                ph = r[phase]
                rows = [("frame", ph["frame"], None, None), ("host_overhead", ph["host_overhead"], None, None)]
                rows += [(s, x["per_call"], x.get("gflop_per_call"), x.get("gflop_per_s"))
                         for s, x in ph["stages"].items()]
                for stage, st, gflop, rate in rows:
                    w.writerow([r["label"], d.get("runtime"), d.get("device"), d.get("precision"), r["objects"],
                                r["memory_frames"], phase, stage, st["median_ms"], st["p90_ms"], st["min_ms"],
                                st["count"], gflop, rate])


def write_chart(runs: list[dict[str, Any]], path: Path) -> bool:
    """Stacked bars: median ms per frame of each stage plus host overhead, one bar per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [run_label(r).replace(", ", "\n") for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(runs) + 2), 5))
    bottom = np.zeros(len(runs))
    for stage in (*TIMED, "host"):
        vals = np.array([
            (r["steady"]["host_overhead"]["median_ms"] if stage == "host"
             else r["steady"]["stages"].get(stage, {}).get("per_frame", {}).get("median_ms", 0.0))
            for r in runs])
        ax.bar(labels, vals, bottom=bottom, label=stage.replace("_", " "))
        bottom += vals
    ax.set_ylabel("ms per frame (median, steady state)")
    ax.set_title("SAM 2 tracking: time per stage")
    ax.legend(fontsize=8)
    plt.xticks(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
