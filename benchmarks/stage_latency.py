"""Per stage and per backend: load/compile time, steady-state latency and peak memory, each stage in its
own process so that its peak resident memory is its own.

    python benchmarks/stage_latency.py --model models/sam2.1_hiera_tiny --out benchmarks/stage-latency.md

Inputs are random with tracking shapes: decoder with one click, memory attention with 7 memory frames and
16 pointers (a full bank) and with 1 frame and 1 pointer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {"onnxruntime CPU f32": ("onnxruntime", "cpu", "f32"),
           "openvino CPU f32": ("openvino", "CPU", "f32"),
           "openvino CPU bf16": ("openvino", "CPU", "bf16")}
CASES = [("image_encoder", 0, 0), ("mask_decoder", 0, 0), ("memory_attention", 7, 16),
         ("memory_attention", 1, 1), ("memory_encoder", 0, 0)]


def child(model: Path, runtime: str, device: str, precision: str, stage: str, frames: int, ptrs: int,
          repeats: int, threads: int | None) -> dict:
    import numpy as np

    from backends.base import BackendConfig
    from backends.registry import create_backend
    from engine.cli import peak_rss_mb
    from engine.modelset import ModelSet
    from engine.stages import random_inputs

    ms = ModelSet.load(model)
    base = peak_rss_mb()
    backend = create_backend(BackendConfig(name=runtime, device=device, precision=precision, threads=threads))
    t0 = time.perf_counter()
    st = backend.load(ms.stage_path(stage))
    load = time.perf_counter() - t0
    x = random_inputs(ms, max(frames, 1), ptrs)[stage]
    st.run(x)
    first = None
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        st.run(x)
        times.append(time.perf_counter() - t)
        if i == 0:
            first = times[0]
    a = np.asarray(times) * 1000
    return {"load_s": round(load, 2), "median_ms": round(float(np.median(a)), 1),
            "min_ms": round(float(a.min()), 1), "count": repeats, "first_run_ms": round(first * 1000, 1),
            "peak_rss_mb": round(peak_rss_mb(), 0), "rss_before_load_mb": round(base, 0),
            "precision": getattr(st, "inference_precision", precision)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/sam2.1_hiera_tiny"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int)
    p.add_argument("--stages", help="comma list of stages to measure (default: all)")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(args.model, *spec, args.repeats, args.threads)))
        return 0
    rows = []
    for label, (runtime, device, precision) in CONFIGS.items():
        for stage, frames, ptrs in CASES:
            if args.stages and stage not in args.stages.split(","):
                continue
            spec = json.dumps([runtime, device, precision, stage, frames, ptrs])
            cmd = [sys.executable, __file__, "--model", str(args.model), "--repeats", str(args.repeats), "--child", spec]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{label} {stage} failed: {out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            case = stage if stage != "memory_attention" else f"memory_attention {frames} fr + {ptrs} ptr"
            rows.append((label, case, r))
            print(f"{label:<20} {case:<34} load {r['load_s']:>6.2f} s  median {r['median_ms']:>8.1f} ms  "
                  f"peak RSS {r['peak_rss_mb']:>6.0f} MB", flush=True)
    if args.out:
        lines = ["| backend | stage | load/compile s | median ms | min ms | runs | peak RSS MB |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {lab} | {case} | {r['load_s']:.2f} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['count']} | "
                  f"{r['peak_rss_mb']:.0f} |" for lab, case, r in rows]
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
