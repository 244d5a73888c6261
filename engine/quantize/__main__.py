"""python -m engine.quantize: an int8 model set from a float one and a calibration video.

    python -m engine.quantize --model models/sam2.1_hiera_tiny --calibration clip.mp4 --point 420,250 \
        --stages image_encoder --out models/sam2.1_hiera_tiny_int8

Tracks the calibration video from the prompts with the exact configuration (ONNX Runtime CPU f32, float32
memory), keeps every stage's inputs, quantizes the chosen stages with NNCF (QDQ int8 ONNX, run by ONNX
Runtime and OpenVINO alike) and copies the others. Then it tracks the calibration clip again with the new
set and records the mask IoU against the exact run in the manifest: an in-sample figure; judge a set on
other footage with `python -m engine.fidelity`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli import peak_rss_mb, run_cli
from engine.errors import ConfigError, ModelSetError
from engine.modelset import CONSTANTS, MANIFEST, STAGES, Manifest, ModelSet, write_manifest
from engine.prompts import Prompt
from engine.quantize.calibrate import MIN_FRAMES

DEFAULT_FRAMES = 32


def parser() -> argparse.ArgumentParser:
    from engine.track import add_prompt_arguments

    p = argparse.ArgumentParser(prog="python -m engine.quantize",
                                description="Post-training int8 quantization of a model set (NNCF).")
    p.add_argument("--model", type=Path, required=True, help="the float model set to quantize")
    p.add_argument("--calibration", required=True, help="calibration video file or image folder")
    add_prompt_arguments(p)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames to track for calibration, from the first prompted frame (default {DEFAULT_FRAMES}, "
                        f"at least {MIN_FRAMES})")
    p.add_argument("--stages", default=",".join(STAGES),
                   help="comma list of the stages to make int8; the others are copied as they are (default: all)")
    p.add_argument("--out", type=Path, help="output model set (default: <model>_int8)")
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
        int8 = [s for s, p in (done.get("stages") or {}).items() if p == "int8"]
        raise ModelSetError(f"{ms.root} is already quantized ({', '.join(int8) or 'see its manifest'} int8, from "
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
    from engine.quantize.ptq import quantize_stage, require_quantize_deps
    from engine.track import collect_prompts

    chosen = _stages(args.stages)
    require_quantize_deps()
    ms = ModelSet.load(args.model, verify_checksums=True)
    check_source(ms)
    out = args.out or args.model.with_name(args.model.name + "_int8")
    if out.resolve() == args.model.resolve():
        raise ConfigError("--out must differ from --model: the float set is the quantized one's reference")
    check_video(args.calibration, args.frames)
    prompts = collect_prompts(args) or _default_prompts(args.calibration)
    t0 = time.perf_counter()
    print(f"calibrating on {args.calibration}: {args.frames} frames from frame {min(p.frame for p in prompts)}")
    samples = collect(ms, args.calibration, prompts, args.frames, progress=not args.quiet)
    with staged_output_dir(out, args.force) as tmp:
        stages = {}
        for name in STAGES:
            target = tmp / ms.manifest.stages[name].file
            if name in chosen:
                t1 = time.perf_counter()
                print(f"  quantizing {name} on {len(samples[name])} samples ...", flush=True)
                quantize_stage(ms.stage_path(name), samples[name], name, target)
                print(f"  {name}: {target.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t1:.1f} s")
            else:
                shutil.copyfile(ms.stage_path(name), target)
            stages[name] = stage_spec(name, target)
        shutil.copyfile(ms.root / CONSTANTS, tmp / CONSTANTS)
        manifest = _manifest(ms, stages, chosen, args, prompts, {s: len(v) for s, v in samples.items()})
        write_manifest(tmp / MANIFEST, manifest)
    print("measuring the new set's masks against the exact run on the calibration clip ...")
    fidelity = measure_fidelity(ms, out, args.calibration, prompts, args.frames, progress=not args.quiet)
    manifest.provenance["quantization"]["fidelity"] = fidelity
    write_manifest(out / MANIFEST, manifest)
    for obj, f in fidelity["per_object"].items():
        print(f"object {obj}: min IoU {f['min_iou']:.4f} (frame {f['min_iou_frame']}), mean {f['mean_iou']:.4f} "
              f"over {f['frames']} frames; presence disagrees on {f['presence_disagreements']}")
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s, peak memory {peak_rss_mb():.0f} MB")
    return 0


def _manifest(ms: ModelSet, stages: dict, chosen: list[str], args: argparse.Namespace, prompts: list[Prompt],
              counts: dict[str, int]) -> Manifest:
    import nncf

    m = ms.manifest
    quantization = {
        "tool": f"nncf {nncf.__version__}", "method": "post-training static quantization, QDQ int8 ONNX",
        "source_set": str(ms.root), "stages": {s: "int8" if s in chosen else "f32" for s in STAGES},
        "calibration": {"video": str(args.calibration), "frames": args.frames, "samples": counts,
                        "prompts": [{"frame": p.frame, "obj_id": p.obj_id, "points": [list(x) for x in p.points],
                                     "labels": list(p.labels), "box": list(p.box) if p.box else None,
                                     "mask": str(p.mask) if p.mask else None} for p in prompts]},
    }
    return Manifest(variant=m.variant, family=m.family, model=dict(m.model), stages=stages, static=m.static,
                    architecture=dict(m.architecture), provenance={**m.provenance, "quantization": quantization})


if __name__ == "__main__":
    sys.exit(run_cli(main))
