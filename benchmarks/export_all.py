"""Export every variant once (random weights) and record export time, peak memory, file sizes and the
OpenVINO compile time of each stage. Each export runs in its own process.

    python benchmarks/export_all.py --workdir /tmp/variants --out benchmarks/export-variants.md
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.modelset import STAGES, ModelSet  # noqa: E402
from engine.variants import VARIANTS  # noqa: E402


def compile_seconds(ms: ModelSet) -> dict[str, float]:
    """OpenVINO CPU f32 compile time per stage, no model cache."""
    code = ("import sys, time, openvino as ov; c = ov.Core(); m = c.read_model(sys.argv[1]); t = time.perf_counter(); "
            "c.compile_model(m, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'}); print(time.perf_counter() - t)")
    out = {}
    for stage in STAGES:
        res = subprocess.run([sys.executable, "-c", code, str(ms.stage_path(stage))], capture_output=True, text=True)
        out[stage] = float(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else float("nan")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/variants"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--keep", action="store_true", help="keep the exported model sets")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = []
    for name in args.variants.split(","):
        out = args.workdir / name
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "engine.export", "--variant", name, "--image-size",
                              str(args.image_size), "--out", str(out), "--force"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"{name}: {res.stderr[-2000:]}")
        peak = float(re.search(r"peak memory (\d+) MB", res.stdout).group(1))
        ms = ModelSet.load(out)
        sizes = {s: ms.stage_path(s).stat().st_size / 1e6 for s in STAGES}
        comp = compile_seconds(ms)
        rows.append((name, wall, peak, sizes, comp))
        print(f"{name:<22} export {wall:6.1f} s  peak {peak:6.0f} MB  "
              + "  ".join(f"{s} {sizes[s]:.1f} MB/{comp[s]:.2f} s" for s in STAGES), flush=True)
        if not args.keep:
            shutil.rmtree(out)
    if args.out:
        head = ("| variant | export s (process) | peak RSS MB | " + " | ".join(f"{s} MB" for s in STAGES) + " | "
                + " | ".join(f"{s} OV compile s" for s in STAGES) + " |")
        lines = [head, "|" + " --- |" * (3 + 2 * len(STAGES))]
        for name, wall, peak, sizes, comp in rows:
            lines.append(f"| {name} | {wall:.1f} | {peak:.0f} | " + " | ".join(f"{sizes[s]:.1f}" for s in STAGES)
                         + " | " + " | ".join(f"{comp[s]:.2f}" for s in STAGES) + " |")
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
