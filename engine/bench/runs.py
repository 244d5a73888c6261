"""One bench run: a model set on one runtime (or PyTorch), tracked and timed stage by stage."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.bench.plan import RunSpec, int_list
from engine.bench.reference import torch_reference
from engine.cli import peak_rss_mb
from engine.errors import ConfigError
from engine.modelset import STAGES


def _video(args: argparse.Namespace, needed: int):
    from engine.bench.synthetic import SyntheticSource
    from engine.video import open_video

    if args.video is None:
        return SyntheticSource(num_frames=needed)
    source = open_video(args.video)
    if source.num_frames is not None and source.num_frames < needed:
        raise ConfigError(f"--video has {source.num_frames} frames; --warmup {args.warmup} + --frames "
                          f"{args.frames} + the prompted frame need {needed}")
    return source


def _clicks(source, n: int) -> list[list[float]]:
    from engine.bench.synthetic import SyntheticSource

    if isinstance(source, SyntheticSource):
        return [list(source.centre(k % 6, 0)) for k in range(n)]
    return [[source.width * (k + 1) / (n + 1), source.height / 2] for k in range(n)]


def _flops(ms, memory: tuple[int, int]) -> dict[str, float]:
    try:
        from engine.bench.flops import count_flops
    except ImportError:
        return {}
    static = ms.manifest.static
    if static is not None:  # fixed shapes: the work done whatever the slots hold, in the tier that ran
        files = {name: name for name in STAGES} | {"memory_attention": static.tier_for(*memory).stage}
        shapes = {name: {t.name: t.shape for t in ms.manifest.stages[f].inputs} for name, f in files.items()}
    else:  # the measured memory (frames, pointers) and one click
        from engine.stages import random_inputs

        files = {name: name for name in STAGES}
        inputs = random_inputs(ms, memory_frames=max(memory[0], 1), pointers=memory[1], points=1)
        shapes = {name: {k: v.shape for k, v in d.items()} for name, d in inputs.items()}
    try:
        return {k: count_flops(ms.stage_path(files[k]), v) for k, v in shapes.items()}
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
    from engine.bench.report import summarise
    from engine.modelset import ModelSet

    if spec.model:
        model_dir = Path(spec.model)
    ms = ModelSet.load(model_dir)
    objects = int_list(args.objects, "objects", 1, 64)
    mems = int_list(args.memory_frames, "memory-frames", 1, int(ms.manifest.model["num_maskmem"]))
    needed = args.warmup + args.frames + 1
    t0 = time.perf_counter()
    if spec.runtime == "torch":
        engine_obj, describe, load_s = torch_reference(ms, args)
    else:
        from engine.stages import StageSet

        stage_configs = _stage_configs(spec, args)
        stages = StageSet.load(ms, stage_configs)
        engine_obj, describe = stages, _summarise_backends(stages.describe())
        load_s = time.perf_counter() - t0
    run_name = spec.label
    if describe.get("runtime") == "mixed" and args.config:
        run_name = f"{args.config.stem} (per-stage placement)"
    stage_precision = (ms.manifest.provenance.get("quantization") or {}).get("stages") or {}
    converted = {} if spec.runtime == "torch" else {k: v for k, v in stage_precision.items() if v != "f32"}
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
                "int8_stages": [k for k, v in converted.items() if v == "int8"],
                "converted_stages": converted,  # int8 or fp16 stages of a quantized set (not the PyTorch run's)
            })
            if spec.runtime != "torch" and n == 1 and m == int(ms.manifest.model["num_maskmem"]):
                results[-1]["alone_baseline"] = str(_record_alone(ms, stage_configs, results[-1], args))
    return results


def _record_alone(ms, stage_configs: dict[str, Any], result: dict[str, Any], args) -> Path:
    """What engine.serve compares its live stage times with (engine.baselines): one object, full bank."""
    from engine.baselines import record

    per_call = {name: s["per_call"]["median_ms"] for name, s in result["steady"]["stages"].items()
                if name in STAGES and s["per_call"]["median_ms"] == s["per_call"]["median_ms"]}
    video = args.video or "a synthetic clip"
    return record(ms, stage_configs, per_call, how=f"engine.bench: 1 object, full memory bank, {args.frames} "
                                                   f"frames after {args.warmup}, {video}")


def _stage_configs(spec: RunSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The run's runtime/device/precision for every stage, except stages a --config places elsewhere."""
    from backends.base import BackendConfig
    from engine.config import load_config

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
