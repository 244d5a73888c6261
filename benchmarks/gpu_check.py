"""GPU check: stage parity and stage timing on ONNX Runtime's CUDA execution provider.

Run on a machine with an NVIDIA GPU and onnxruntime-gpu (plus torch and sam2 if the model set must be
exported there):

    python benchmarks/gpu_check.py --out gpu-results

It (1) exports the default model set if --model is missing, (2) compares every stage on ORT CUDA with
its PyTorch module (TF32 off, then ORT's default), (3) times each stage on ORT CUDA with and without IO
binding, on ORT CPU and on PyTorch CUDA eager, with the same inputs, (4) tracks a synthetic clip on
ORT CUDA with the benchmark harness, (5) makes the fp16 set (`engine.quantize --precision fp16`), times
its stages and its tracking, and judges its masks against the f32 set on ORT CUDA (TF32 off) over --video,
forward and reverse, with `engine.fidelity`, (6) tracks the dynamic set with IO binding and with features and the memory bank kept on the device
(keep_on_device), (7) exports the static set of the same weights and runs it with IO binding, with CUDA
graphs, with CUDA graphs and keep_on_device (configs/onnxruntime-cuda-graph.yaml's backend) and, with
--tensorrt, on TensorRT fp16: stage times, tracking fps and host share, and masks against the f32 dynamic set; (8) tries OpenVINO's GPU plugin when openvino is installed
(it drives Intel GPUs; an NVIDIA card is reported as not seen). Results: gpu_check.json and
gpu_check.md under --out, and a table on the console.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.base import BackendConfig  # noqa: E402
from engine.modelset import ModelSet  # noqa: E402
from engine.stages import StageSet, random_inputs  # noqa: E402


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:  # no nvidia-smi: report, do not fail
        return f"unknown ({exc})"


def time_stage(run, inputs, repeats: int, sync=None) -> dict[str, float]:
    for _ in range(3):
        run(inputs)
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(inputs)
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    a = np.asarray(times) * 1000
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "min_ms": round(float(a.min()), 3), "count": repeats}


def torch_cuda_timers(model_dir: Path, ms: ModelSet, inputs: dict[str, dict[str, np.ndarray]]):
    """Per-stage callables of the PyTorch reference modules on CUDA (same weights), or None."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
        from engine.export.build import build_model
        from engine.export.stages import MemoryAttentionReference
        from engine.variants import get_variant
    except ImportError as exc:
        return None, f"torch/sam2 not importable: {exc}"
    seed = int(ms.manifest.provenance["weights"].get("seed", 0))
    m = build_model(get_variant(ms.variant), ms.manifest.image_size, seed=seed).model.cuda().eval()
    pos = torch.from_numpy(ms.constants["vision_pos_enc"]).cuda()
    ma = MemoryAttentionReference(m, pos)

    def t(a):
        return torch.from_numpy(a).cuda()

    def dec(x):
        sparse, dense = m.sam_prompt_encoder(points=(t(x["point_coords"]), t(x["point_labels"])), boxes=None, masks=None)
        return m.sam_mask_decoder.predict_masks(t(x["image_embed"]), m.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                                False, [t(x["high_res_feat0"]), t(x["high_res_feat1"])])

    fns = {
        "image_encoder": lambda x: m.forward_image(t(x["image"])),
        "mask_decoder": dec,
        "memory_attention": lambda x: ma(*(t(x[k]) for k in ("curr", "memory", "memory_pos", "obj_ptrs", "obj_ptr_pos"))),
        "memory_encoder": lambda x: m.memory_encoder(t(x["pix_feat"]), t(x["mask_for_mem"]), skip_mask_sigmoid=True),
    }

    def wrap(fn):
        def run(x):
            with torch.inference_mode():
                return fn(x)
        return run

    return {k: wrap(v) for k, v in fns.items()}, torch.cuda.synchronize


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/sam2.1_hiera_tiny"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--skip-track", action="store_true")
    p.add_argument("--device", default="cuda", help="onnxruntime device to check (cpu for a dry run without a GPU)")
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 set")
    p.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "davis-car-shadow" / "frames",
                   help="clip on which the fp16 set's masks are judged (default: the shared DAVIS clip)")
    p.add_argument("--point", default="420,250", help="click on --frame of --video for the fp16 judgement")
    p.add_argument("--frame", type=int, default=20)
    p.add_argument("--no-graph", action="store_true", help="skip the static set with CUDA graphs")
    p.add_argument("--tensorrt", action="store_true",
                   help="also run the static set on TensorRT fp16 (engine builds take minutes; cached under --out)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    report: dict = {"gpu": gpu_name(), "onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    print(f"GPU: {report['gpu']}\nonnxruntime {ort.__version__}, providers {report['providers']}", flush=True)

    if not (args.model / "modelset.yaml").is_file():
        from engine.export.build import build_model
        from engine.export.exporter import export_model_set
        from engine.variants import get_variant

        t0 = time.perf_counter()
        export_model_set(build_model(get_variant("sam2.1_hiera_tiny"), 1024, seed=0), args.model)
        report["export_seconds"] = round(time.perf_counter() - t0, 1)
    ms = ModelSet.load(args.model)

    tf32_off = {"use_tf32": 0} if args.device == "cuda" else {}
    # ---- parity: every stage on ORT CUDA against its PyTorch module (PyTorch on the CPU, f32)
    try:
        from engine.export.build import rebuild_model
        from engine.export.verify import verify_model_set

        built = rebuild_model(ms)  # the set's own weights: seed, overrides and calibration from its manifest
        rows = verify_model_set(built, ms, backends=[
            ("ort CUDA f32, TF32 off", BackendConfig(name="onnxruntime", device=args.device, provider_options=tf32_off)),
            ("ort CUDA f32, TF32 default", BackendConfig(name="onnxruntime", device=args.device)),
        ])
        worst: dict = {}
        for r in rows:
            key = f"{r.backend} | {r.stage}"
            if r.rel >= worst.get(key, {"rel": -1})["rel"]:
                worst[key] = {"case": r.case, "output": r.output, "max_abs": r.max_abs, "rel": r.rel}
        report["parity_worst_per_stage"] = worst
        report["parity_rows"] = [r.__dict__ for r in rows]
    except ImportError as exc:
        report["parity_error"] = f"torch/sam2 not importable: {exc}"

    # ---- stage timing
    timing: dict = {}
    for name, cfg in {"ort CUDA": BackendConfig(name="onnxruntime", device=args.device),
                      "ort CUDA io_binding": BackendConfig(name="onnxruntime", device=args.device, io_binding=True),
                      "ort CPU": BackendConfig(name="onnxruntime", device="cpu")}.items():
        _time_set(ms, cfg, name, timing, args.repeats)
    for label, frames, ptrs in _CASES:
        inputs = random_inputs(ms, frames, ptrs)
        fns, sync = torch_cuda_timers(args.model, ms, inputs)
        if fns:
            for stage, x in _timed(inputs, label):
                timing[_key(stage, label)]["torch CUDA eager"] = time_stage(fns[stage], x, args.repeats, sync)
        elif sync:
            report["torch_cuda"] = sync
    if not args.no_fp16:
        report["fp16"] = check_fp16(args, ms, timing)
    report["resident"] = check_resident(args, timing)
    report["static"] = check_static(args, ms, timing)
    report["stage_timing"] = timing

    # ---- tracking on ORT CUDA with the benchmark harness
    if not args.skip_track:
        cmd = [sys.executable, "-m", "engine.bench", "--backend", "onnxruntime", "--device", args.device,
               "--model", str(args.model), "--objects", "1,2", "--out", str(args.out / "bench")]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        report["tracking_console"] = proc.stdout[-4000:]
        if proc.returncode != 0:
            report["tracking_error"] = proc.stderr[-4000:]

    # ---- OpenVINO GPU
    try:
        import openvino as ov

        devices = ov.Core().available_devices
        report["openvino"] = {"version": ov.get_version(), "devices": devices,
                              "note": "OpenVINO's GPU plugin drives Intel GPUs" if "GPU" not in devices else ""}
    except ImportError:
        report["openvino"] = "not installed here (its GPU plugin targets Intel GPUs, not NVIDIA)"

    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    lines = [f"# GPU check: {report['gpu']}", "", f"onnxruntime {report['onnxruntime']}", ""]
    if "parity_worst_per_stage" in report:
        lines += ["| backend / stage | worst case | output | max abs | rel |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['case']} | {v['output']} | {v['max_abs']:.2e} | {v['rel']:.2e} |"
                  for k, v in report["parity_worst_per_stage"].items()]
    names = ["ort CUDA", "ort CUDA io_binding", "ort CUDA fp16 io_binding", "ort CUDA io_binding (static)",
             "ort CUDA graph (static)", "TensorRT fp16 (static)", "torch CUDA eager", "ort CPU"]
    lines += ["", "| stage (median ms) | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for stage, d in timing.items():
        lines.append(f"| {stage} | " + " | ".join(f"{d[n]['median_ms']:.2f}" if n in d else "-" for n in names) + " |")
    lines += ["", "| tracking, 1 object (engine.bench) | fps | frame ms | host % | min IoU vs exact |",
              "| --- | --- | --- | --- | --- |"]
    for part in ("resident", "static", "fp16"):
        judged = report.get(part) or {}
        for name, r in (judged.items() if part != "fp16" else [("fp16", judged)]):
            t = r.get("tracking") if isinstance(r, dict) else None
            if t:
                lines.append(f"| {name} | {t['fps']:.1f} | {t['frame_ms']:.2f} | {100 * t['host_fraction']:.1f} | "
                             f"{_min_iou(r.get('fidelity', ''))} |")
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if report.get("tracking_console"):
        print(report["tracking_console"][-2500:])
    if report.get("tracking_error"):
        print("tracking failed:", report["tracking_error"][-1500:])
    for part in ("fp16", "resident", "static"):
        for key, value in (report.get(part) or {}).items():
            print(f"{part} {key}: {str(value)[-2500:]}")
    return 0


def _min_iou(fidelity_console: str) -> str:
    """The smallest 'min IoU' engine.fidelity printed (its console lines name it per object and direction)."""
    import re

    found = [float(x) for x in re.findall(r"min IoU[ =:]+([0-9.]+)", fidelity_console)]
    return f"{min(found):.4f}" if found else "-"


_CASES = (("7 memory frames, 16 pointers", 7, 16), ("1 memory frame, 1 pointer", 1, 1))


def _timed(inputs: dict, label: str):
    """The stages a case times: all with a full bank, memory attention alone with one memory."""
    return [(stage, x) for stage, x in inputs.items() if stage == "memory_attention" or not label.startswith("1")]


def _key(stage: str, label: str) -> str:
    return stage if stage != "memory_attention" else f"memory_attention ({label})"


def _time_set(ms: ModelSet, cfg: BackendConfig, column: str, timing: dict, repeats: int) -> None:
    """Every stage of `ms` on `cfg`, with a full bank and with one memory, into timing[stage][column]."""
    stages = StageSet.load(ms, cfg)
    for label, frames, ptrs in _CASES:
        for stage, x in _timed(random_inputs(ms, frames, ptrs), label):
            # a static set's inputs go to the file tracking would run them on (its smallest tier with room)
            file, x = ms.manifest.static.route(stage, x) if ms.manifest.static is not None else (stage, x)
            row = time_stage(lambda v, s=file: stages.stages[s].run(v), x, repeats)
            timing.setdefault(_key(stage, label), {})[column] = {**row, "load_s": round(stages.stages[file].load_seconds, 2)}


def _judge(args: argparse.Namespace, name: str, candidate: dict, exact: dict) -> dict:
    """engine.bench tracking and engine.fidelity masks of one candidate config against an exact one."""
    out: dict = {}
    paths = {}
    for which, cfg in (("candidate", candidate), ("exact", exact)):
        paths[which] = args.out / f"{name}-{which}.yaml"
        paths[which].write_text(json.dumps(cfg))
    bench = subprocess.run([sys.executable, "-m", "engine.bench", "--config", str(paths["candidate"]), "--objects", "1",
                            "--out", str(args.out / f"bench-{name}")], capture_output=True, text=True, cwd=ROOT)
    out["tracking_console"] = bench.stdout[-3000:] if bench.returncode == 0 else bench.stderr[-3000:]
    out["tracking"] = _tracking_summary(args.out / f"bench-{name}" / "report.json")
    if not args.video.exists():
        out["fidelity"] = f"not judged: {args.video} is not here (--video)"
        return out
    judged = subprocess.run([sys.executable, "-m", "engine.fidelity", "--candidate", str(paths["candidate"]),
                             "--exact", str(paths["exact"]), "--video", str(args.video), "--frame", str(args.frame),
                             "--point", args.point, "--direction", "both", "--min-iou", "0.98", "--quiet",
                             "--out", str(args.out / f"{name}-fidelity")], capture_output=True, text=True, cwd=ROOT)
    out["fidelity"] = judged.stdout[-3000:] + judged.stderr[-1500:]
    out["fidelity_exit"] = judged.returncode
    return out


def _tracking_summary(report: Path) -> dict:
    """fps, frame ms, host share and per-stage ms of a bench run's first (engine) run."""
    if not report.is_file():
        return {}
    run = json.loads(report.read_text())["runs"][0]["steady"]
    return {"fps": run["fps"], "frame_ms": run["frame"]["median_ms"], "host_fraction": run["host_fraction"],
            "stages_ms": {k: v["per_frame"]["median_ms"] for k, v in run["stages"].items()}}


def _exact(args: argparse.Namespace) -> dict:
    """The f32 dynamic set on ORT CUDA with TF32 off and float32 memory: what the fast paths are judged by."""
    return {"model": str(args.model.resolve()), "tracker": {"memory_dtype": "float32"},
            "backend": {"name": "onnxruntime", "device": args.device, "io_binding": True,
                        "provider_options": {"use_tf32": 0} if args.device == "cuda" else {}}}


def check_static(args: argparse.Namespace, ms: ModelSet, timing: dict) -> dict:
    """The static set of the same weights: CUDA graphs, and TensorRT fp16 when asked."""
    from engine.export.build import rebuild_model
    from engine.export.exporter import export_model_set
    from engine.static import DEFAULT_COND_FRAMES, DEFAULT_POINTS, StaticShapes

    static_dir = args.out / f"{args.model.name}_static"
    if not (static_dir / "modelset.yaml").is_file():
        built = rebuild_model(ms)
        shapes = StaticShapes.for_model(built.model.num_maskmem, built.model.max_obj_ptrs_in_encoder,
                                        DEFAULT_COND_FRAMES, DEFAULT_POINTS)
        export_model_set(built, static_dir, static=shapes)
    sms = ModelSet.load(static_dir)
    tracker = {"max_cond_frames": sms.manifest.static.cond_frames, "memory_dtype": "float32"}
    graph = args.device == "cuda"
    runs = [("static", "ort CUDA io_binding (static)", {"name": "onnxruntime", "device": args.device,
                                                          "io_binding": True})]
    if not args.no_graph:
        runs += [("cuda-graph", "ort CUDA graph (static)", {"name": "onnxruntime", "device": args.device,
                                                            "cuda_graph": graph}),
                 ("cuda-graph-resident", None, {"name": "onnxruntime", "device": args.device, "cuda_graph": graph,
                                                "keep_on_device": True})]
    if args.tensorrt:
        runs.append(("tensorrt", "TensorRT fp16 (static)", {"name": "onnxruntime", "device": "tensorrt",
                                                             "precision": "f16", "keep_on_device": True,
                                                             "cache_dir": str((args.out / "trt-cache").resolve())}))
    return _run_configs(args, static_dir, runs, tracker, timing)


def check_resident(args: argparse.Namespace, timing: dict) -> dict:
    """The dynamic set with features and the memory bank kept on the device (keep_on_device), beside the
    plain IO-binding run; float32 memory, so its masks must equal the exact run's."""
    runs = [("dynamic", None, {"name": "onnxruntime", "device": args.device, "io_binding": True}),
            ("resident", None, {"name": "onnxruntime", "device": args.device, "keep_on_device": True})]
    return _run_configs(args, args.model, runs, {"memory_dtype": "float32"}, timing)


def _run_configs(args: argparse.Namespace, model: Path, runs: list, tracker: dict, timing: dict) -> dict:
    """Each (name, stage-timing column or None, backend) on `model`: stage times, tracking, fidelity."""
    from engine.config import parse_config

    out: dict = {}
    for name, column, backend in runs:
        try:
            cfg = parse_config({"model": str(model.resolve()), "backend": backend})
            if column:
                _time_set(ModelSet.load(model), cfg.backend, column, timing, args.repeats)
            out[name] = _judge(args, name, {"model": str(model.resolve()), "backend": backend,
                                            "tracker": tracker}, _exact(args))
        except Exception as exc:  # one path failing (e.g. no TensorRT libraries) must not lose the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def check_fp16(args: argparse.Namespace, ms: ModelSet, timing: dict) -> dict:
    """The fp16 set, made here: its stages timed beside the f32 ones, its tracking and its masks."""
    half = args.out / f"{args.model.name}_fp16"
    made = subprocess.run([sys.executable, "-m", "engine.quantize", "--model", str(args.model.resolve()), "--precision",
                           "fp16", "--out", str(half), "--force", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    if made.returncode != 0:
        return {"error": made.stderr[-2000:]}
    backend = {"name": "onnxruntime", "device": args.device, "io_binding": True}
    _time_set(ModelSet.load(half), BackendConfig(**backend), "ort CUDA fp16 io_binding", timing, args.repeats)
    return _judge(args, "fp16", {"model": str(half.resolve()), "backend": backend,
                                 "tracker": {"memory_dtype": "float32"}}, _exact(args))


if __name__ == "__main__":
    sys.exit(main())
