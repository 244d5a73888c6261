"""python -m engine.fidelity: how far a fast configuration's masks drift from the exact run's.

    python -m engine.fidelity --candidate configs/openvino-cpu-bf16.yaml --video clip.mp4 --point 420,250 \\
        --direction both --min-iou 0.98 --out fidelity/

Runs the candidate config and the exact config (the same model set on f32 with float32 memory, by
default) over the clip with the same prompts, frame by frame side by side, and reports per object the
IoU of their masks (min, mean, last, the first frame below the threshold), how often they disagree on
the object being present, and the low-res logit differences. Writes fidelity.json and fidelity.png
(IoU over frames) under --out; exits 1, naming the frame, when --min-iou is not met.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli import run_cli
from engine.config import EngineConfig, load_config, parse_config
from engine.errors import ConfigError, EngineError
from engine.modelset import MANIFEST, ModelSet
from engine.prompts import Prompt
from engine.track import add_prompt_arguments, apply_prompt, collect_prompts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.fidelity", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", type=Path, required=True, help="the configuration to judge (YAML)")
    p.add_argument("--exact", type=Path,
                   help="the reference configuration (default: the candidate's model set on OpenVINO CPU f32, "
                        "or ONNX Runtime CPU when OpenVINO is absent, with float32 memory)")
    p.add_argument("--model", type=Path, help="model set for both (default: each config's own; the default exact "
                   "config takes the candidate's)")
    p.add_argument("--video", required=True, help="video file or image folder")
    add_prompt_arguments(p)
    p.add_argument("--direction", choices=("forward", "reverse", "both"), default="forward",
                   help="forward from the first prompted frame, backward from the last, or both (default forward)")
    p.add_argument("--max-frames", type=int, help="track at most this many frames after the start")
    p.add_argument("--min-iou", type=float, help="fail (exit 1) when any object-frame's IoU is below this")
    p.add_argument("--out", type=Path, help="write fidelity.json and fidelity.png here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def float_source(ms: ModelSet) -> Path:
    """The float set a quantized (int8/fp16) set was made from, which its exact run must use; else the set."""
    done = ms.manifest.provenance.get("quantization")
    if not done:
        return ms.root
    source = Path(done.get("source_set") or "")
    if not (source / MANIFEST).is_file():
        raise ConfigError(f"{ms.root} is a quantized copy of {done.get('source_set')!r}, which is not there: pass "
                          f"--exact with a config of the float set it was made from")
    return source


def exact_config(model: Path) -> EngineConfig:
    from backends.registry import available_backends

    name = "openvino" if available_backends().get("openvino") else "onnxruntime"
    backend = {"name": name, "device": "CPU" if name == "openvino" else "cpu"}
    if name == "openvino":
        backend["precision"] = "f32"
    return parse_config({"model": str(model), "backend": backend, "tracker": {"memory_dtype": "float32"}},
                        source="<exact: f32, float32 memory>")


@dataclass
class ObjectTrace:
    frames: list[int] = field(default_factory=list)
    iou: list[float | None] = field(default_factory=list)  # None: both masks empty on that frame
    presence_agrees: list[bool] = field(default_factory=list)
    max_logit_diff: list[float] = field(default_factory=list)
    p999_logit_diff: list[float] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)  # the exact run's share of the frame

    def summary(self, threshold: float | None) -> dict[str, Any]:
        scored = [(f, v) for f, v in zip(self.frames, self.iou, strict=True) if v is not None]
        values = [v for _, v in scored]
        worst = min(scored, key=lambda fv: fv[1]) if scored else (None, None)
        below = next((f for f, v in scored if threshold is not None and v < threshold), None)
        present = [c for c, agree in zip(self.coverage, self.presence_agrees, strict=True) if c > 0 and agree]
        return {"frames": len(self.frames), "frames_with_a_mask": len(scored),
                "min_iou": worst[1], "min_iou_frame": worst[0],
                "mean_iou": float(np.mean(values)) if values else None,
                "last_iou": values[-1] if values else None, "first_frame_below": below,
                "presence_disagreements": int(sum(not a for a in self.presence_agrees)),
                "max_logit_diff": max(self.max_logit_diff, default=0.0),
                "p999_logit_diff": max(self.p999_logit_diff, default=0.0),
                "median_coverage": float(np.median(present)) if present else 0.0}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """IoU of two boolean masks; None when both are empty."""
    union = np.count_nonzero(a | b)
    return None if union == 0 else np.count_nonzero(a & b) / union


def compare_runs(candidate, exact, video: str, prompts: list[Prompt], reverse: bool, max_frames: int | None,
                 progress: bool) -> dict[int, ObjectTrace]:
    """Both trackers over the clip, frame by frame side by side (each keeps its own state)."""
    states = []
    for tracker in (candidate, exact):
        state = tracker.init_state(video)
        for p in prompts:
            apply_prompt(tracker, state, p, state.video_hw)
        states.append(state)
    start = max(p.frame for p in prompts) if reverse else min(p.frame for p in prompts)
    kwargs = {"start_frame_idx": start, "reverse": reverse, "max_frame_num_to_track": max_frames}
    runs = [t.propagate_in_video(s, **kwargs) for t, s in zip((candidate, exact), states, strict=True)]
    if progress:
        from tqdm import tqdm

        n = states[1].num_frames
        total = (start + 1 if reverse else n - start) if max_frames is None else max_frames + 1
        runs[1] = tqdm(runs[1], total=total, desc=f"fidelity {'reverse' if reverse else 'forward'}", unit="frame")
    traces: dict[int, ObjectTrace] = {}
    for got, want in zip(*runs, strict=True):
        for k, obj_id in enumerate(want.obj_ids):
            t = traces.setdefault(obj_id, ObjectTrace())
            diff = np.abs(got.low_res_logits[k].astype(np.float64) - want.low_res_logits[k])
            t.frames.append(want.frame_idx)
            t.iou.append(mask_iou(got.masks[k], want.masks[k]))
            t.presence_agrees.append(bool((got.object_scores[k] > 0) == (want.object_scores[k] > 0)))
            t.max_logit_diff.append(float(diff.max()))
            t.p999_logit_diff.append(float(np.quantile(diff, 0.999)))
            t.coverage.append(float(want.masks[k].mean()))
    return traces


def _plot(report: dict[str, Any], traces: dict[str, dict[int, ObjectTrace]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for direction, per_obj in traces.items():
        for obj_id, t in per_obj.items():
            pts = [(f, v) for f, v in zip(t.frames, t.iou, strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*sorted(pts), strict=True), label=f"object {obj_id}, {direction}", lw=1.2)
    if report.get("min_iou_threshold") is not None:
        ax.axhline(report["min_iou_threshold"], color="red", lw=0.8, ls="--", label="--min-iou")
    ax.set_xlabel("frame")
    ax.set_ylabel("IoU with the exact run")
    ax.set_title(f"{report['candidate']} vs {report['exact']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.min_iou is not None and not 0.0 <= args.min_iou <= 1.0:
        raise ConfigError(f"--min-iou must lie between 0 and 1, got {args.min_iou}")
    prompts = collect_prompts(args)
    from engine.tracker import Tracker
    from engine.video import open_video

    open_video(args.video).close()  # a bad video fails before the models load
    cand_cfg = load_config(args.candidate)
    model = args.model or cand_cfg.model
    if model is None:
        raise ConfigError(f"config {args.candidate} names no model set: add `model:` or pass --model")
    candidate = Tracker.from_config(cand_cfg, model=model)
    exact_cfg = load_config(args.exact) if args.exact else exact_config(float_source(candidate.modelset))
    # an --exact config's own model set counts (e.g. a dynamic set judging a static one's masks)
    exact = Tracker.from_config(exact_cfg, model=args.model or exact_cfg.model or model)
    c, e = candidate.modelset.manifest, exact.modelset.manifest
    if e.provenance.get("quantization"):
        raise ConfigError(f"the exact run's model set {exact.modelset.root} is itself quantized "
                          f"({e.provenance['quantization'].get('precision', 'int8')}); judge against a float set")
    if (c.variant, c.image_size) != (e.variant, e.image_size):
        raise EngineError(f"the candidate runs {c.variant} at {c.image_size}, the exact config {e.variant} at "
                          f"{e.image_size}; compare like with like")
    directions = ["forward", "reverse"] if args.direction == "both" else [args.direction]
    traces = {d: compare_runs(candidate, exact, args.video, prompts, d == "reverse", args.max_frames,
                              not args.quiet) for d in directions}
    report: dict[str, Any] = {
        "candidate": str(args.candidate), "exact": str(args.exact or exact_cfg.source), "video": args.video,
        "model": candidate.describe(), "exact_model": exact.describe(), "min_iou_threshold": args.min_iou,
        "directions": {d: {str(o): t.summary(args.min_iou) for o, t in per.items()} for d, per in traces.items()},
        "frames": {d: {str(o): {"frame": t.frames, "iou": t.iou, "presence_agrees": t.presence_agrees,
                                "max_logit_diff": t.max_logit_diff, "p999_logit_diff": t.p999_logit_diff,
                                "coverage": t.coverage} for o, t in per.items()} for d, per in traces.items()},
    }
    failures = []
    for d, per in report["directions"].items():
        if not per:
            print(f"{d:>7}: no frame to track (propagation {d} from the "
                  f"{'last' if d == 'reverse' else 'first'} prompted frame has nothing to do; prompt a later "
                  f"frame to judge both directions)", file=sys.stderr)
        for obj_id, s in per.items():
            iou = "n/a" if s["min_iou"] is None else f"{s['min_iou']:.4f} (frame {s['min_iou_frame']})"
            print(f"{d:>7} object {obj_id}: min IoU {iou}, mean {s['mean_iou'] or 0:.4f}, last "
                  f"{s['last_iou'] or 0:.4f}; presence disagrees on {s['presence_disagreements']} of {s['frames']} "
                  f"frames; logit diff max {s['max_logit_diff']:.3g}, p99.9 {s['p999_logit_diff']:.3g}; "
                  f"median coverage {s['median_coverage']:.0%}")
            if not 0.05 <= s["median_coverage"] <= 0.6:
                print(f"  note: the exact masks cover {s['median_coverage']:.0%} of the frame (median); IoU says "
                      f"little about flooded or vanishing masks", file=sys.stderr)
            if s["first_frame_below"] is not None:
                failures.append(f"{d} object {obj_id}: IoU first below {args.min_iou} on frame "
                                f"{s['first_frame_below']} (min {iou})")
            elif args.min_iou is not None and s["presence_disagreements"]:
                failures.append(f"{d} object {obj_id}: presence disagrees on {s['presence_disagreements']} frames")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fidelity.json").write_text(json.dumps(report, indent=1))
        plotted = _plot(report, traces, args.out / "fidelity.png")
        print(f"wrote {args.out / 'fidelity.json'}" + (f", {args.out / 'fidelity.png'}" if plotted else
                                                       " (no plot: matplotlib is not installed)"))
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
