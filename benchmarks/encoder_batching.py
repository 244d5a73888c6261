"""Does batching the image encoder across sources pay? Time per image at batch 1 against batch 2 and 4.

    python benchmarks/encoder_batching.py --model models/edgetam512 --model models/fid512 --threads 2

The model sets' image encoders are exported for one image. OpenVINO can reshape a model to a batch of N
where its graph allows it (EdgeTAM's RepViT does; Hiera's graph holds batch-1 reshapes and does not).
`--export-sam2 VARIANT` exports that SAM 2 variant's image encoder for each batch (seeded weights, as
the model sets) and times those files on ONNX Runtime CPU and OpenVINO CPU. Median of --repeats.
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


def export_batches(variant: str, size: int, batches: list[int], folder: Path) -> dict[int, Path]:
    import torch

    from engine.export.build import build_model
    from engine.export.exporter import OPSET
    from engine.export.families import Sam2Family
    from engine.variants import get_variant

    module = Sam2Family(build_model(get_variant(variant), image_size=size, seed=0)).image_encoder().eval()
    paths = {}
    for n in batches:
        paths[n] = folder / f"image_encoder_b{n}.onnx"
        with torch.no_grad():
            torch.onnx.export(module, (torch.rand(n, 3, size, size),), str(paths[n]), dynamo=True,
                              opset_version=OPSET, external_data=False, input_names=["image"])
    return paths


def time_files(paths: dict[int, Path], size: int, threads: int, repeats: int) -> dict:
    import onnxruntime as ort
    import openvino as ov

    out: dict = {"onnxruntime_cpu": {}, "openvino_cpu_f32": {}}
    core = ov.Core()
    for n, path in paths.items():
        x = np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        t = median_time(lambda s=sess, x=x: s.run(None, {"image": x}), repeats)
        out["onnxruntime_cpu"][n] = {"ms_per_call": round(1000 * t, 1), "ms_per_image": round(1000 * t / n, 1)}
        req = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                                                   "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        t = median_time(lambda r=req, x=x: r.infer({0: x}), repeats)
        out["openvino_cpu_f32"][n] = {"ms_per_call": round(1000 * t, 1), "ms_per_image": round(1000 * t / n, 1)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", default=[])
    p.add_argument("--export-sam2", help="a SAM 2 variant whose image encoder is exported per batch and timed")
    p.add_argument("--image-size", type=int, default=512)
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
    if args.export_sam2:
        import tempfile

        batches = [int(b) for b in args.batches.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            paths = export_batches(args.export_sam2, args.image_size, batches, Path(tmp))
            res = time_files(paths, args.image_size, args.threads, args.repeats)
        report[f"{args.export_sam2}@{args.image_size} (exported per batch)"] = res
        print(args.export_sam2, json.dumps(res), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
