"""What dropping frames costs SAM 2's masks: a live session that tracks every k-th frame against one that
tracks every frame, compared on the frames both tracked (IoU per object and frame, as engine.fidelity
reports it).

    python benchmarks/drop_cost.py --config benchmarks/live/fid512-ov-f32.yaml --out benchmarks/live/drop-cost

A source faster than the tracker is what `realtime: latest` turns into "every k-th frame": the memories
are then the tracked frames, in order, with k times the time between them. Both runs are live sessions
(stream mode), prompted with the same click on frame 0. With seeded random weights this is a proxy:
re-measure with your checkpoint before choosing latency over fidelity.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fidelity import ObjectTrace, mask_iou  # noqa: E402
from engine.live import CapturedFrame, LiveSession  # noqa: E402
from engine.tracker import Tracker  # noqa: E402
from engine.video import open_video  # noqa: E402

CLIPS = {  # name: (path under the data folder, the click on frame 0)
    "davis": ("davis-car-shadow/frames", (420, 250)),
    "bedroom": ("videos/bedroom.mp4", (480, 270)),
}


def run(tracker: Tracker, frames: list[np.ndarray], keep_every: int, click: tuple[int, int]) -> dict[int, object]:
    """frame index -> LiveResult, for the frames a session keeping every `keep_every`-th frame tracks."""
    session = LiveSession(tracker, name=f"every{keep_every}", held_frames=2)
    out = {}
    for i in range(0, len(frames), keep_every):
        result = session.track(CapturedFrame(i, time.time(), frames[i]))
        if i == 0:
            result = session.prompt(0, 1, points=[list(click)], labels=[1])
        out[i] = result
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--keep", default="2,4,8", help="keep every k-th frame, for each k")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    tracker = Tracker.from_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"config": str(args.config), "model": tracker.describe()["variant"], "clips": {}}
    for name, (rel, click) in CLIPS.items():
        source = open_video(args.data / rel)
        frames = [source.get(i) for i in range(source.num_frames)]
        t0 = time.perf_counter()
        full = run(tracker, frames, 1, click)
        per_k = {}
        for k in (int(v) for v in args.keep.split(",")):
            sub = run(tracker, frames, k, click)
            trace = ObjectTrace()
            for i, got in sub.items():
                if i == 0:
                    continue  # the prompted frame: the same in both
                want = full[i]
                trace.frames.append(i)
                trace.iou.append(mask_iou(got.objects[0].mask, want.objects[0].mask))
                trace.presence_agrees.append(got.objects[0].present == want.objects[0].present)
                trace.max_logit_diff.append(0.0)
                trace.p999_logit_diff.append(0.0)
                trace.coverage.append(float(want.objects[0].mask.mean()))
            s = trace.summary(None)
            per_k[k] = {key: s[key] for key in ("frames", "frames_with_a_mask", "min_iou", "min_iou_frame", "mean_iou",
                                                "last_iou", "presence_disagreements", "median_coverage")}
            print(f"{name}: every {k}th frame: {per_k[k]}", flush=True)
        report["clips"][name] = {"frames": len(frames), "click": click, "keep_every": per_k,
                                 "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "drop_cost.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
