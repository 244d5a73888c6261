"""Two model sets' stages timed against each other in one process, call by call in turn (A, B, A, B, ...),
so a shared machine's drift falls on both alike: how much faster a quantized set's stages are.

    python benchmarks/stage_ab.py --a models/edgetam_512 --b models/edgetam_512_int8_image_encoder \\
        --backend openvino --calls 30 --out benchmarks/int8-avx2/ab-edgetam512-ov.json

Inputs are the engine's random stage inputs at a full memory bank (7 memories, 16 pointers, one point),
the same for both sets. Prints the median ms per call of each stage, A and B, and B's speed-up; the frame
line sums one call of each stage (one object, as engine.bench's steady state).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from backends.base import BackendConfig
    from engine.modelset import STAGES, ModelSet
    from engine.stages import StageSet, random_inputs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=Path, required=True)
    p.add_argument("--b", type=Path, required=True)
    p.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--threads", type=int)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cfg = BackendConfig(name=args.backend, device="CPU" if args.backend == "openvino" else "cpu", precision="f32",
                        threads=args.threads)
    sets = {k: ModelSet.load(v) for k, v in (("a", args.a), ("b", args.b))}
    stages = {k: StageSet.load(ms, cfg) for k, ms in sets.items()}
    inputs = random_inputs(sets["a"], memory_frames=7, pointers=16, points=1, seed=0)
    times: dict[str, dict[str, list[float]]] = {k: {s: [] for s in STAGES} for k in sets}
    for s in STAGES:
        for k in sets:  # warm-up
            stages[k].run(s, inputs[s])
        for _ in range(args.calls):
            for k in sets:
                t0 = time.perf_counter()
                stages[k].run(s, inputs[s])
                times[k][s].append(time.perf_counter() - t0)
    med = {k: {s: 1000 * float(np.median(v)) for s, v in per.items()} for k, per in times.items()}
    rows = {s: {"a_ms": round(med["a"][s], 2), "b_ms": round(med["b"][s], 2),
                "speedup": round(med["a"][s] / med["b"][s], 3)} for s in STAGES}
    fa, fb = sum(med["a"].values()), sum(med["b"].values())
    rows["frame (one call each)"] = {"a_ms": round(fa, 1), "b_ms": round(fb, 1), "speedup": round(fa / fb, 3)}
    for name, r in rows.items():
        print(f"{name:24s} A {r['a_ms']:8.2f} ms   B {r['b_ms']:8.2f} ms   x{r['speedup']:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "backend": args.backend,
                                        "threads": args.threads, "calls": args.calls, "stages": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
