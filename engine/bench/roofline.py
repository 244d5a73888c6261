"""This machine's matrix-multiply rate: the yardstick a stage's GFLOP/s is judged by.

"x PyTorch" flatters a runtime on CPUs where PyTorch's own GEMM is slow; the fraction of the machine's
GEMM rate does not. The probe times one large square MatMul on OpenVINO's CPU plugin (f32, and bf16
where the CPU has it) with the benchmark's thread count, and keeps the best of a few runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PROBE_SIZE = 2048  # 17 GFLOP a call: long enough to time, short enough for a probe (well under a second)


def gemm_rate(precision: str, threads: int | None, n: int = PROBE_SIZE, repeats: int = 5) -> float | None:
    """GFLOP/s of an [n,n] @ [n,n] multiply on OpenVINO CPU in `precision` (f32 | bf16); None when the CPU
    cannot run that precision or OpenVINO is not installed."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    core = ov.Core()
    caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if precision == "bf16" and "BF16" not in caps:
        return None
    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    weight = ops.constant(rng.standard_normal((n, n)).astype(np.float32))
    model = ov.Model([ops.matmul(x, weight, False, False)], [x], "gemm_probe")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    request = core.compile_model(model, "CPU", config).create_infer_request()
    data = rng.standard_normal((n, n)).astype(np.float32)
    request.infer({0: data})  # warm-up: first-run allocations
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        request.infer({0: data})
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def probe(threads: int | None) -> dict[str, float | None]:
    return {p: (round(r, 1) if (r := gemm_rate(p, threads)) is not None else None) for p in ("f32", "bf16")}


def fractions(steady: dict[str, Any], rate: float | None,
              converted: dict[str, str] | tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Each stage's achieved share of the GEMM rate, and the frame's time were every stage at that rate.
    Stages of a converted set (int8, fp16: `converted` maps stage -> precision; a tuple means int8) have no
    probe of their precision to be judged by: they are left out, and so is the frame's roofline."""
    if not rate:
        return None
    if not isinstance(converted, dict):
        converted = dict.fromkeys(converted, "int8")
    stages = steady.get("stages", {})
    share = {name: round(s["gflop_per_s"] / rate, 3) for name, s in stages.items()
             if s.get("gflop_per_s") and name not in converted}
    if converted:
        kinds = "/".join(sorted(set(converted.values())))
        return {"gemm_gflop_per_s": rate, "stage_fraction": share, "frame_roofline_ms": None, "frame_fraction": None,
                "not_judged": f"{kinds} stages ({', '.join(converted)}): no {kinds} probe"}
    per_frame_gflop = sum(s["gflop_per_call"] * s["per_call"]["count"] for s in stages.values()
                          if s.get("gflop_per_call")) / max(steady["frame"]["count"], 1)
    roofline_ms = per_frame_gflop / rate * 1000.0
    frame_ms = steady["frame"]["median_ms"]
    return {"gemm_gflop_per_s": rate, "stage_fraction": share, "frame_roofline_ms": round(roofline_ms, 1),
            "frame_fraction": round(roofline_ms / frame_ms, 3) if frame_ms else None}
