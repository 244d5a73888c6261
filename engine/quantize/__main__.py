"""python -m engine.quantize: an int8 or fp16 model set from a float one.

    python -m engine.quantize --model models/sam2.1_hiera_tiny --calibration clip.mp4 --point 420,250 \
        --stages image_encoder --out models/sam2.1_hiera_tiny_int8
    python -m engine.quantize --model models/sam2.1_hiera_tiny --precision fp16      # for GPUs

int8: tracks the calibration video from the prompts with the exact configuration (ONNX Runtime CPU f32,
float32 memory), keeps every stage's inputs, quantizes the chosen stages with NNCF (QDQ int8 ONNX, run by
ONNX Runtime and OpenVINO alike) and copies the others.
fp16: converts the chosen stages to float16 graphs with float32 inputs and outputs (engine/quantize/fp16.py),
which ONNX Runtime's CUDA and TensorRT providers need for fp16; no calibration.
Given a calibration video, it then tracks that clip again with the new set and records the mask IoU against
the exact run in the manifest: an in-sample figure; judge a set on other footage with `python -m
engine.fidelity`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli import peak_rss_mb, run_cli
from engine.errors import ConfigError, InputError, ModelSetError
from engine.modelset import CONSTANTS, MANIFEST, STAGES, Manifest, ModelSet, write_manifest
from engine.prompts import Prompt
from engine.quantize.calibrate import MIN_FRAMES
from engine.static import ATTENTION

DEFAULT_FRAMES = 32
PRECISIONS = ("int8", "fp16")


def parser() -> argparse.ArgumentParser:
    from engine.track import add_prompt_arguments

    p = argparse.ArgumentParser(prog="python -m engine.quantize",
                                description="An int8 (NNCF post-training quantization) or fp16 model set.")
    p.add_argument("--model", type=Path, required=True, help="the float model set to quantize")
    p.add_argument("--precision", choices=PRECISIONS, default="int8",
                   help="int8 (needs --calibration) or fp16 (float16 graphs for GPUs; default int8)")
    p.add_argument("--calibration", help="calibration video file or image folder (int8: required; fp16: the "
                                         "clip on which the in-sample fidelity is measured, optional)")
    add_prompt_arguments(p)
    p.add_argument("--frames", type=int,
                   help=f"frames to track for calibration, from the first prompted frame (default {DEFAULT_FRAMES}, "
                        f"at least {MIN_FRAMES})")
    p.add_argument("--stages", default=",".join(STAGES),
                   help="comma list of the stages to convert; the others are copied as they are (default: all)")
    p.add_argument("--overflow-fix", choices=("all", "first-layer", "off"), default="all",
                   help="int8: which layers' weights use 7 bits, so CPUs without VNNI (AVX2) cannot saturate "
                        "(default all: right on every CPU; first-layer: NNCF's default, one bit more elsewhere, "
                        "right only with VNNI or AMX)")
    p.add_argument("--out", type=Path, help="output model set (default: <model>_int8 or <model>_fp16)")
    p.add_argument("--force", action="store_true", help="replace the contents of a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _stages(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown or not chosen:
        raise ConfigError(f"--stages {text!r}: expected a comma list of {', '.join(STAGES)}")
    return chosen


def check_source(ms: ModelSet) -> None:
    """Refuse what this quantizer was not made for: a set that is int8 already, a variant it has no recipe for."""
    from engine.variants import VARIANTS

    done = ms.manifest.provenance.get("quantization")
    if done:
        low = [f"{s} {p}" for s, p in (done.get("stages") or {}).items() if p != "f32"]
        raise ModelSetError(f"{ms.root} is already quantized ({', '.join(low) or 'see its manifest'}, from "
                            f"{done.get('source_set')}); quantize the float model set it was made from")
    if ms.variant not in VARIANTS:
        raise ModelSetError(f"{ms.root} holds variant {ms.variant}, which this quantizer has no recipe for; "
                            f"it quantizes {', '.join(VARIANTS)}")


def _default_prompts(video: str) -> list[Prompt]:
    from engine.video import open_video

    source = open_video(video)
    try:
        w, h = source.width, source.height
    finally:
        source.close()
    return [Prompt(0, 1, points=[(w / 2, h / 2)], labels=[1])]


def measure_fidelity(source: ModelSet, quantized: Path, video: str, prompts: list[Prompt], frames: int,
                     progress: bool) -> dict[str, Any]:
    """Masks of the new set against the exact run over the calibration clip (forward from the prompts)."""
    from engine.fidelity import compare_runs
    from engine.quantize.calibrate import exact_tracker

    traces = compare_runs(exact_tracker(ModelSet.load(quantized)), exact_tracker(source), video, prompts,
                          reverse=False, max_frames=frames - 1, progress=progress)
    keys = ("frames", "min_iou", "min_iou_frame", "mean_iou", "presence_disagreements")
    per_object = {str(k): {key: _plain(t.summary(None)[key]) for key in keys} for k, t in traces.items()}
    return {"video": video, "frames": frames, "direction": "forward", "against": "the source set, ONNX Runtime CPU "
            "f32, float32 memory", "in_sample": True, "per_object": per_object}


def _plain(value: Any) -> Any:
    """numpy scalars as YAML-safe Python numbers."""
    return value.item() if hasattr(value, "item") else value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from engine.export.exporter import stage_spec, staged_output_dir
    from engine.quantize.calibrate import check_video, collect
    from engine.track import collect_prompts

    chosen = _stages(args.stages)
    int8 = args.precision == "int8"
    if int8:
        from engine.quantize.ptq import require_quantize_deps

        require_quantize_deps()
        if not args.calibration:
            raise ConfigError("--precision int8 needs --calibration: a video whose frames set the int8 ranges")
    ms = ModelSet.load(args.model, verify_checksums=True)
    check_source(ms)
    out = args.out or args.model.with_name(f"{args.model.name}_{args.precision}")
    if out.resolve() == args.model.resolve():
        raise ConfigError("--out must differ from --model: the float set is the new one's reference")
    # collect_prompts refuses an empty list; here none means the default click (int8) or no calibration (fp16)
    prompts = collect_prompts(args) if (getattr(args, "events", None) or args.prompts) else []
    if not args.calibration and (prompts or args.frames is not None):
        raise ConfigError("prompts and --frames describe the calibration clip: pass --calibration with them")
    args.frames = DEFAULT_FRAMES if args.frames is None else args.frames
    if args.calibration:
        check_video(args.calibration, args.frames)
        prompts = prompts or _default_prompts(args.calibration)
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    samples: dict = {}
    if int8:
        print(f"calibrating on {args.calibration}: {args.frames} frames from frame {min(p.frame for p in prompts)}")
        samples = collect(ms, args.calibration, prompts, args.frames, progress=not args.quiet)
        counts = {s: len(v) for s, v in samples.items()}
    with staged_output_dir(out, args.force) as tmp:
        stages = {}
        for name in ms.manifest.stages:  # a static set's memory-attention tiers follow memory_attention
            target = tmp / ms.manifest.stages[name].file
            if _logical(name, ms) in chosen:
                t1 = time.perf_counter()
                _convert(name, _logical(name, ms), ms.stage_path(name), target, args.precision, samples,
                         args.overflow_fix)
                print(f"  {name}: {target.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t1:.1f} s")
            else:
                shutil.copyfile(ms.stage_path(name), target)
            stages[name] = stage_spec(name, target)
        shutil.copyfile(ms.root / CONSTANTS, tmp / CONSTANTS)
        manifest = _manifest(ms, stages, chosen, args, prompts, counts)
        write_manifest(tmp / MANIFEST, manifest)
    if args.calibration:
        print("measuring the new set's masks against the exact run on the calibration clip ...")
        fidelity = measure_fidelity(ms, out, args.calibration, prompts, args.frames, progress=not args.quiet)
        manifest.provenance["quantization"]["fidelity"] = fidelity
        write_manifest(out / MANIFEST, manifest)
        for obj, f in fidelity["per_object"].items():
            print(f"object {obj}: min IoU {f['min_iou']:.4f} (frame {f['min_iou_frame']}), mean {f['mean_iou']:.4f} "
                  f"over {f['frames']} frames; presence disagrees on {f['presence_disagreements']}")
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s, peak memory {peak_rss_mb():.0f} MB")
    return 0


def _logical(stage: str, ms: ModelSet) -> str:
    """The stage a stage file belongs to: memory attention for each of a static set's tiers."""
    static = ms.manifest.static
    return ATTENTION if static is not None and stage in static.extra_stages else stage


def _convert(name: str, kind: str, source: Path, target: Path, precision: str, samples: dict,
             overflow_fix: str = "all") -> None:
    if precision == "int8":
        from engine.quantize.ptq import quantize_stage

        if not samples[name]:
            raise InputError(f"the calibration clip gave no inputs of {name}'s shapes to calibrate it on; "
                              f"use a longer clip (--frames) or more prompts")
        print(f"  quantizing {name} on {len(samples[name])} samples ...", flush=True)
        quantize_stage(source, samples[name], kind, target, overflow_fix)
        return
    from engine.quantize.fp16 import convert_stage

    done = convert_stage(source, target)
    if done["clipped"]:  # weights beyond fp16's range would be inf; they are saturated and said so
        print(f"  {name}: {done['clipped']} weights beyond fp16's range were clipped to +-65504")


def _manifest(ms: ModelSet, stages: dict, chosen: list[str], args: argparse.Namespace, prompts: list[Prompt],
              counts: dict[str, int]) -> Manifest:
    m = ms.manifest
    if args.precision == "int8":
        import nncf

        tool = f"nncf {nncf.__version__}"
        method = (f"post-training static quantization, QDQ int8 ONNX, overflow fix (7-bit weights) on "
                  f"{args.overflow_fix} layers")
    else:
        import onnx

        tool, method = f"engine.quantize.fp16 (onnx {onnx.__version__})", ("float16 weights and activations, "
                                                                             "float32 graph inputs and outputs")
    quantization: dict[str, Any] = {
        "tool": tool, "method": method, "precision": args.precision,
        "source_set": str(ms.root), "stages": {s: args.precision if _logical(s, ms) in chosen else "f32" for s in m.stages},
    }
    if args.precision == "int8":
        quantization["overflow_fix"] = args.overflow_fix
    if args.calibration:
        quantization["calibration"] = {
            "video": str(args.calibration), "frames": args.frames, "samples": counts,
            "prompts": [{"frame": p.frame, "obj_id": p.obj_id, "points": [list(x) for x in p.points],
                         "labels": list(p.labels), "box": list(p.box) if p.box else None,
                         "mask": str(p.mask) if p.mask else None} for p in prompts]}
    return Manifest(variant=m.variant, family=m.family, model=dict(m.model), stages=stages, static=m.static,
                    architecture=dict(m.architecture), provenance={**m.provenance, "quantization": quantization})


if __name__ == "__main__":
    sys.exit(run_cli(main))
