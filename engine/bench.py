"""python -m engine.bench: per-stage latency of SAM 2 tracking on each backend/device, PyTorch side by side.

Method (as Meta's own speed test): one click per object on the first frame, then tracking; the first
`--warmup` tracked frames (which fill the memory bank: 6 recent memories, 16 pointers) are reported
apart from the steady state, and so are model load/compile times. Each backend configuration runs in
its own process, so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from engine.cli import peak_rss_mb, run_cli
from engine.errors import ConfigError, EngineError, ModelSetError

DEFAULT_MODEL = Path("models/sam2.1_hiera_tiny")
DEFAULT_VARIANT = "sam2.1_hiera_tiny"


@dataclass
class RunSpec:
    runtime: str  # onnxruntime | openvino | torch
    device: str
    precision: str
    model: str | None = None  # another model set than --model (--static-model, --compare-model)
    tag: str = ""  # what the label adds: "static set", or the variant when several models are compared

    @property
    def label(self) -> str:
        base = "PyTorch reference" if self.runtime == "torch" else f"{self.runtime} {self.device} {self.precision}"
        return base + (f", {self.tag}" if self.tag else "")


def _int_list(text: str, name: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} expects comma-separated integers, got {text!r}") from None
    if not values or any(not lo <= v <= hi for v in values):
        raise ConfigError(f"--{name} values must lie between {lo} and {hi}, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="a deployment YAML (configs/); flags below override its backend")
    p.add_argument("--backend", help="onnxruntime, openvino, or a comma list of both")
    p.add_argument("--device", help="device for the backend(s): cpu/cuda/directml (onnxruntime), CPU/GPU/NPU/AUTO (openvino)")
    p.add_argument("--precision", help="f32, bf16, f16, or a comma list (unsupported pairs are skipped)")
    p.add_argument("--threads", type=int, help="threads for every runtime, PyTorch included (default: all cores)")
    p.add_argument("--model", type=Path, help=f"model set folder (default: the --config's model, else {DEFAULT_MODEL}, exported if "
                        "missing)")
    p.add_argument("--video", help="video file or image folder (default: a synthetic clip of moving shapes)")
    p.add_argument("--frames", type=int, default=8, help="steady-state frames to measure (default 8)")
    p.add_argument("--warmup", type=int, default=16,
                   help="tracked frames before measuring; 16 fills the memory bank (default 16)")
    p.add_argument("--objects", default="1", help="object counts to sweep, e.g. 1,2,4")
    p.add_argument("--memory-frames", default="7", help="memory frames to sweep, e.g. 1,3,7")
    p.add_argument("--static-model", type=Path,
                   help="a static model set (engine.export --static) of the same model: every runtime run is "
                        "repeated on it, so static and dynamic shapes are compared in one run")
    p.add_argument("--compare-model", action="append", type=Path, default=[], metavar="SET",
                   help="another model set (e.g. EdgeTAM beside SAM 2.1-tiny): every run, the PyTorch reference "
                        "included, is repeated on it in the same bench run; repeat the flag for more")
    p.add_argument("--reference", choices=["torch"], help="also time the PyTorch reference on the same weights")
    p.add_argument("--checkpoint", type=Path, help="for --reference with a checkpoint-made model set: the .pt file")
    p.add_argument("--out", type=Path, help="write report.json, report.csv and report.png here")
    p.add_argument("--single-run", help=argparse.SUPPRESS)
    return p


# ----------------------------------------------------------------------------- model set
def ensure_model_set(path: Path | None, log=print) -> Path:
    from engine.modelset import MANIFEST

    target = path or DEFAULT_MODEL
    if (target / MANIFEST).is_file():
        return target
    if path is not None and path != DEFAULT_MODEL:
        raise ModelSetError(f"model set {path} not found (create one with python -m engine.export --out {path})")
    log(f"no model set at {target}: exporting {DEFAULT_VARIANT} with seeded random weights (seed 0) "
        f"once; latency does not depend on the weights")
    from engine.export.build import build_model
    from engine.export.exporter import export_model_set
    from engine.variants import get_variant

    built = build_model(get_variant(DEFAULT_VARIANT), 1024, seed=0)
    export_model_set(built, target, log=log)
    return target


# ----------------------------------------------------------------------------- runs
def plan_runs(args: argparse.Namespace) -> list[RunSpec]:
    from engine.config import load_config

    base_backend = base_device = None
    base_precision = "f32"
    if args.config:
        cfg = load_config(args.config)
        base_backend, base_device, base_precision = cfg.backend.name, cfg.backend.device, cfg.backend.precision
    backends = (args.backend or base_backend or "openvino").split(",")
    precisions = (args.precision or base_precision).split(",")
    runs = []
    skipped = []
    base_tag, others = _compared_models(args)
    for b in (x.strip() for x in backends):
        if b not in ("onnxruntime", "openvino"):
            raise ConfigError(f"--backend {b!r} is not known; allowed: onnxruntime, openvino")
        device = args.device or (base_device if b == base_backend else None) or ("cpu" if b == "onnxruntime" else "CPU")
        for prec in (x.strip() for x in precisions):
            if prec not in ("f32", "bf16", "f16"):
                raise ConfigError(f"--precision {prec!r} is not known; allowed: f32, bf16, f16")
            if b == "onnxruntime" and prec != "f32" and len(precisions) > 1:
                skipped.append(f"onnxruntime {prec}")
                continue
            runs.append(RunSpec(b, device, prec, tag=base_tag))
            if args.static_model:
                runs.append(RunSpec(b, device, prec, str(args.static_model), "static set"))
            runs += [RunSpec(b, device, prec, str(path), tag) for path, tag in others]
    if skipped:
        print(f"skipping {', '.join(skipped)} (onnxruntime runs these models in f32 only)")
    if args.reference == "torch":  # each model's reference in a process of its own (EdgeTAM's and Meta's clash)
        runs.append(RunSpec("torch", "cpu", "f32", tag=base_tag))
        runs += [RunSpec("torch", "cpu", "f32", str(path), tag) for path, tag in others]
    return runs


def _compared_models(args: argparse.Namespace) -> tuple[str, list[tuple[Path, str]]]:
    """The label tags of --model and of each --compare-model: their variants (empty when nothing is compared)."""
    if not args.compare_model:
        return "", []
    from engine.modelset import ModelSet

    def tag(path: Path) -> str:
        m = ModelSet.load(path).manifest
        return f"{m.variant} {m.image_size}" + (" static" if m.static else "")

    base = tag(ensure_model_set(args.model))
    others = [(Path(p), tag(Path(p))) for p in args.compare_model]
    if len({base, *(t for _, t in others)}) != 1 + len(others):
        raise ConfigError("--compare-model sets must differ from --model and each other in variant, size or shapes")
    return base, others


def _video(args: argparse.Namespace, needed: int):
    from engine.synthetic import SyntheticSource
    from engine.video import open_video

    if args.video is None:
        return SyntheticSource(num_frames=needed)
    source = open_video(args.video)
    if source.num_frames is not None and source.num_frames < needed:
        raise ConfigError(f"--video has {source.num_frames} frames; --warmup {args.warmup} + --frames "
                          f"{args.frames} + the prompted frame need {needed}")
    return source


def _clicks(source, n: int) -> list[list[float]]:
    from engine.synthetic import SyntheticSource

    if isinstance(source, SyntheticSource):
        return [list(source.centre(k % 6, 0)) for k in range(n)]
    return [[source.width * (k + 1) / (n + 1), source.height / 2] for k in range(n)]


def _flops(ms, memory: tuple[int, int]) -> dict[str, float]:
    try:
        from engine.flops import count_flops
    except ImportError:
        return {}
    if ms.manifest.static is not None:  # fixed shapes: the work done whatever the slots hold
        shapes = {name: {t.name: t.shape for t in spec.inputs} for name, spec in ms.manifest.stages.items()}
    else:  # the measured memory (frames, pointers) and one click
        from engine.stages import random_inputs

        inputs = random_inputs(ms, memory_frames=max(memory[0], 1), pointers=memory[1], points=1)
        shapes = {name: {k: v.shape for k, v in d.items()} for name, d in inputs.items()}
    try:
        return {k: count_flops(ms.stage_path(k), v) for k, v in shapes.items()}
    except ImportError:
        return {}


def _measure(frames_iter, log_list, warmup: int, total: int, progress_desc: str, memory_probe):
    from tqdm import tqdm

    records = []
    bar = tqdm(total=total + 1, desc=progress_desc, unit="frame", leave=False)
    it = iter(frames_iter)
    while True:
        log_list.clear()
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        records.append({"total": time.perf_counter() - t0, "stages": list(log_list), "memory": memory_probe()})
        bar.update(1)
    bar.close()
    # record 0 is the prompted frame itself (its output is stored): not a tracked frame
    return records[1:warmup + 1], records[warmup + 1:]


def single_run(spec: RunSpec, args: argparse.Namespace, model_dir: Path) -> list[dict[str, Any]]:
    from engine.benchreport import summarise
    from engine.modelset import ModelSet

    if spec.model:
        model_dir = Path(spec.model)
    ms = ModelSet.load(model_dir)
    objects = _int_list(args.objects, "objects", 1, 64)
    mems = _int_list(args.memory_frames, "memory-frames", 1, int(ms.manifest.model["num_maskmem"]))
    needed = args.warmup + args.frames + 1
    t0 = time.perf_counter()
    if spec.runtime == "torch":
        engine_obj, describe, load_s = _torch_reference(ms, args)
    else:
        from engine.stages import StageSet

        stages = StageSet.load(ms, _stage_configs(spec, args))
        engine_obj, describe = stages, _summarise_backends(stages.describe())
        load_s = time.perf_counter() - t0
    run_name = spec.label
    if describe.get("runtime") == "mixed" and args.config:
        run_name = f"{args.config.stem} (per-stage placement)"
    results = []
    for n in objects:
        for m in mems:
            source = _video(args, needed)
            label = f"{run_name}, {n} obj, {m} mem"
            if spec.runtime == "torch":
                first, steady, prompt_s = _run_torch(engine_obj, source, n, m, args, label)
            else:
                first, steady, prompt_s = _run_engine(engine_obj, ms, source, n, m, args, label)
            memory_used = steady[-1]["memory"] if steady else (0, 0)
            flops = _flops(ms, memory_used)
            results.append({
                "label": run_name, "variant": ms.variant, "objects": n, "memory_frames": m,
                "backend": describe,
                "load_seconds": round(load_s, 3), "prompt_seconds": round(prompt_s, 3),
                "memory_in_steady_state": {"memory_frames": memory_used[0], "object_pointers": memory_used[1]},
                "first_frames": summarise(first, flops), "steady": summarise(steady, flops),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "int8_stages": [k for k, v in ((ms.manifest.provenance.get("quantization") or {}).get("stages")
                                               or {}).items() if v == "int8" and spec.runtime != "torch"],
            })
    return results


def _stage_configs(spec: RunSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The run's runtime/device/precision for every stage, except stages a --config places elsewhere."""
    from backends.base import BackendConfig
    from engine.config import load_config
    from engine.modelset import STAGES

    if not args.config:
        cfg = BackendConfig(name=spec.runtime, device=spec.device, precision=spec.precision, threads=args.threads)
        return dict.fromkeys(STAGES, cfg)
    config = load_config(args.config)

    def with_threads(c: BackendConfig) -> BackendConfig:
        return replace(c, threads=args.threads or c.threads)

    default = with_threads(replace(config.backend, name=spec.runtime, device=spec.device, precision=spec.precision))
    return {s: with_threads(config.stages[s]) if s in config.stages else default for s in STAGES}


def _summarise_backends(per_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One description when every stage runs alike, else 'mixed' with the per-stage details."""
    keys = ("runtime", "version", "device", "provider", "precision", "threads")
    first = next(iter(per_stage.values()))
    summary = {k: first.get(k) for k in keys}
    if any({k: d.get(k) for k in keys} != summary for d in per_stage.values()):
        summary = dict.fromkeys(keys, "mixed")
    summary["stages"] = per_stage
    return summary


def _run_engine(stages, ms, source, n: int, m: int, args, label: str):
    from engine.config import TrackerSettings
    from engine.profiling import ProfiledStages
    from engine.tracker import Tracker

    profiled = ProfiledStages(stages)
    static = ms.manifest.static
    # one prompted frame: a static set's cap on prompted frames changes nothing here
    tracker = Tracker(ms, profiled, TrackerSettings(memory_frames=m,
                                                    max_cond_frames=static.cond_frames if static else None))
    state = tracker.init_state(source)
    t0 = time.perf_counter()
    for k, click in enumerate(_clicks(source, n)):
        tracker.add_new_points_or_box(state, 0, k + 1, points=[click], labels=[1])
    prompt_s = time.perf_counter() - t0
    profiled.log = []
    gen = tracker.propagate_in_video(state, max_frame_num_to_track=args.warmup + args.frames)
    first, steady = _measure(gen, profiled.log, args.warmup, args.warmup + args.frames, label,
                             lambda: profiled.last_memory)
    return first, steady, prompt_s


def _torch_reference(ms, args):
    from engine.export.build import Calibration, build_model, require_export_deps
    from engine.export.reference import ReferenceTracker
    from engine.modelset import file_sha256
    from engine.variants import get_variant

    variant = get_variant(ms.variant)
    require_export_deps(variant)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = ms.manifest.provenance.get("weights", {})
    t0 = time.perf_counter()
    if weights.get("source") == "checkpoint":
        if args.checkpoint is None:
            raise ConfigError("this model set was exported from a checkpoint: pass --checkpoint with the same .pt "
                              "for --reference torch")
        if file_sha256(args.checkpoint) != weights.get("sha256"):
            raise ConfigError(f"--checkpoint {args.checkpoint} is not the checkpoint this model set was made from")
        built = build_model(variant, ms.manifest.image_size, checkpoint=args.checkpoint)
    else:
        overrides = weights.get("overrides") or {}
        if any(not isinstance(v, (int, float)) for v in overrides.values()):
            raise ConfigError(f"cannot rebuild the reference: the model set's weight overrides {overrides} "
                              f"are not plain values")
        cal = weights.get("calibration")
        built = build_model(variant, ms.manifest.image_size, seed=int(weights.get("seed", 0)),
                            param_overrides=overrides or None, calibration=Calibration(**cal) if cal else None)
    ref = ReferenceTracker(built)
    ref.profile()
    describe = {"runtime": "torch", "version": str(torch.__version__), "device": "CPU", "provider": "eager",
                "precision": "f32 (memory features bf16)", "threads": torch.get_num_threads()}
    return ref, describe, time.perf_counter() - t0


def _run_torch(ref, source, n: int, m: int, args, label: str):
    if m != 7:
        raise ConfigError("--reference torch runs the model as built (7 memory frames); sweep --memory-frames "
                          "without it")
    state = ref.init_state_with_engine_frames(source)
    t0 = time.perf_counter()
    for k, click in enumerate(_clicks(source, n)):
        ref.add_new_points_or_box(state, 0, k + 1, points=[click], labels=[1])
    prompt_s = time.perf_counter() - t0
    gen = ref.propagate_in_video(state, max_frame_num_to_track=args.warmup + args.frames)
    log = ref.stage_log
    first, steady = _measure(gen, log, args.warmup, args.warmup + args.frames, label, lambda: ref.last_memory)
    return first, steady, prompt_s


# ----------------------------------------------------------------------------- orchestration
def _child(spec: RunSpec, argv: list[str], workdir: Path) -> list[dict[str, Any]]:
    tag = "".join(c if c.isalnum() or c in ".-" else "_" for c in spec.tag)
    out = workdir / f"run-{spec.runtime}-{spec.device}-{spec.precision}-{tag}.json"
    cmd = [sys.executable, "-m", "engine.bench", *argv, "--single-run", json.dumps(asdict(spec)) + "@" + str(out)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr stays live: progress bars
    if proc.returncode != 0:
        error = out.with_suffix(".error")
        why = error.read_text() if error.is_file() else proc.stdout.strip()[-2000:]
        raise EngineError(f"the {spec.label} run failed: {why}")
    return json.loads(out.read_text())


def _strip_out(argv: list[str]) -> list[str]:
    clean, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        if a.startswith("--out="):
            continue
        clean.append(a)
    return clean


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be at least 1 and --warmup at least 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be at least 1")
    _int_list(args.objects, "objects", 1, 64)
    _int_list(args.memory_frames, "memory-frames", 1, 64)
    if args.model is None and args.config is not None:  # the config's own model set, as engine.track runs it
        from engine.config import load_config

        args.model = load_config(args.config).model
    if args.single_run:
        spec_json, _, out = args.single_run.rpartition("@")
        spec = RunSpec(**json.loads(spec_json))
        try:
            Path(out).write_text(json.dumps(single_run(spec, args, ensure_model_set(args.model))))
        except EngineError as exc:  # the parent reports it
            Path(out).with_suffix(".error").write_text(str(exc))
            raise
        return 0

    from engine.benchreport import format_table, run_label, write_chart, write_csv, write_json
    from engine.machine import machine_info
    from engine.modelset import ModelSet

    runs = plan_runs(args)
    if args.video is not None:
        from engine.video import open_video

        open_video(args.video).close()  # fail early on a bad path
    model_dir = ensure_model_set(args.model)
    ms = ModelSet.load(model_dir)
    if args.static_model:
        twin = ModelSet.load(args.static_model)
        if twin.manifest.static is None or ms.manifest.static is not None:
            raise ConfigError(f"--static-model must be a static set and --model a dynamic one: {args.static_model} "
                              f"is {'static' if twin.manifest.static else 'dynamic'}, {model_dir} is "
                              f"{'static' if ms.manifest.static else 'dynamic'}")
        if (twin.variant, twin.manifest.image_size) != (ms.variant, ms.manifest.image_size):
            raise ConfigError(f"--static-model {args.static_model} holds {twin.variant} at {twin.manifest.image_size}, "
                              f"--model {model_dir} {ms.variant} at {ms.manifest.image_size}")
    weights = ms.manifest.provenance.get("weights", {})
    what = ("random weights (seed {}); latency does not depend on the weights".format(weights.get("seed"))
            if weights.get("source") == "random" else f"checkpoint {weights.get('checkpoint')}")
    print(f"model set {model_dir}: {ms.variant} at {ms.manifest.image_size}x{ms.manifest.image_size}, {what}")
    print(f"method: one click per object on frame 0, {args.warmup} warm-up tracked frames, then {args.frames} "
          f"measured frames with the memory bank full")
    results: list[dict[str, Any]] = []
    if len(runs) == 1 and runs[0].runtime != "torch":
        results = single_run(runs[0], args, model_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for spec in runs:
                print(f"running {spec.label} ...", flush=True)
                results += _child(spec, _strip_out(argv), Path(tmp))
    from engine.roofline import PROBE_SIZE, fractions, probe

    rates = probe(args.threads)
    for r in results:
        precision = str(r["backend"].get("precision"))
        r["roofline"] = fractions(r["steady"], rates.get("bf16" if precision == "bf16" else "f32")
                                  if precision in ("f32", "bf16") or r["backend"]["runtime"] == "torch" else None,
                                  tuple(r.get("int8_stages", ())))
    report = {
        "machine": machine_info(),
        "roofline": {"probe": f"OpenVINO CPU MatMul {PROBE_SIZE}x{PROBE_SIZE}, best of 5, threads {args.threads}",
                     "gemm_gflop_per_s": rates},
        "model": {"variant": ms.variant, "image_size": ms.manifest.image_size, "weights": weights,
                  "path": str(model_dir), "static_path": str(args.static_model) if args.static_model else None,
                  "compared": [str(p) for p in args.compare_model]},
        "method": {"warmup_frames": args.warmup, "measured_frames": args.frames,
                   "video": args.video or "synthetic moving shapes", "threads": args.threads,
                   "clicks": "one positive click per object on frame 0"},
        "runs": results,
    }
    print(format_table(results))
    print(f"roofline: this machine's GEMM rate f32 {rates['f32']} GFLOP/s, bf16 {rates['bf16']} GFLOP/s")
    for r in results:
        roof = r["roofline"]
        if roof:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in roof["stage_fraction"].items())
            frame = (f"frame at the roofline {roof['frame_roofline_ms']:.0f} ms ({roof['frame_fraction']:.0%} "
                     f"achieved)" if roof["frame_roofline_ms"] else roof["not_judged"])
            print(f"  {run_label(r)}: {frame}; of the GEMM rate: {shares}")
    for r in results:
        d = r["backend"]
        print(f"  {r['label']}: {d.get('runtime')} {d.get('version')} on {d.get('device')} "
              f"load {r['load_seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(report, args.out / "report.json")
        write_csv(results, args.out / "report.csv")
        charted = write_chart(results, args.out / "report.png")
        print(f"wrote {args.out}/report.json, report.csv" + (", report.png" if charted else
                                                                " (no chart: matplotlib is not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
