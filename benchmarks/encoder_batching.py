"""Does batching the image encoder across sources pay? Time per image at batch 1 against batch 2 and 4.

    python benchmarks/encoder_batching.py --model models/edgetam512 --model models/fid512 --threads 2

The model sets' image encoders are exported for one image. OpenVINO can reshape a model to a batch of N
when its graph allows it; ONNX Runtime runs the graph as saved, so its side is measured on the same
OpenVINO-reshaped model saved back to ONNX is not possible: ONNX Runtime is timed on N sequential calls
in N threads of a session pool instead (the alternative a service would have). Median of --repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def openvino_batches(path: Path, size: int, threads: int, batches: list[int], repeats: int) -> dict:
    import openvino as ov

    core = ov.Core()
    out = {}
    for n in batches:
        model = core.read_model(str(path))
        try:
            model.reshape({model.inputs[0].any_name: [n, 3, size, size]})
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": threads,
                                                         "PERFORMANCE_HINT": "LATENCY"})
        except Exception as exc:  # noqa: BLE001 - a graph that cannot take a batch is a result too
            out[n] = {"error": str(exc).splitlines()[0][:200]}
            continue
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)
        t = median_time(lambda r=request, x=x: r.infer({0: x}), repeats)
        out[n] = {"ms_per_call": round(1000 * t, 1), "ms_per_image": round(1000 * t / n, 1)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from engine.modelset import ModelSet

    report = {}
    for root in args.model:
        ms = ModelSet.load(root)
        size = ms.manifest.image_size
        res = openvino_batches(root / "image_encoder.onnx", size, args.threads,
                               [int(b) for b in args.batches.split(",")], args.repeats)
        report[str(root)] = {"variant": ms.variant, "image_size": size, "openvino_cpu_f32": res}
        print(root, json.dumps(res), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
