"""Identity side by side on the ground-truth clip (engine.bench.identity_clip), the same detector and model
set for three policies:

1. ours (engine.detect.identity): new objects join the running session, memory is never reset;
2. Grounded-SAM-2's "continuous ID" way: every N frames the predictor is reset, every detection is added
   again, and ids carry over by mask IoU (0.8, as its demo) with the masks before the reset;
3. Roboflow Inference's SAM 2 video block: every N frames the old prompts are cleared and the detections
   prompted again, ids in prompt order.

    python benchmarks/identity.py --model models/fid512 --config configs/openvino-cpu.yaml \\
        --out benchmarks/identity/

Scored with motmetrics on the frames the detector ran on. `--boxes detection` (default) scores the box of the
detection each policy gave an id to: with seeded random weights the masks do not follow the shapes, so
only that says whether ids were kept; with a trained checkpoint, `--boxes mask` scores the masks' boxes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from engine.bench.identity_clip import IdentityClip, score_identity
from engine.config import load_config
from engine.detect import AutoPrompter, build_detector, parse_detector
from engine.live import CapturedFrame, LiveSession
from engine.tracker import Tracker


def _objects(result, det_boxes: dict[int, list[float]] | None = None) -> list[dict]:
    from engine.outputs import coco_rle

    det_boxes = det_boxes or {}
    return [{"obj_id": int(o), "segmentation": coco_rle(m), "det_box": det_boxes.get(int(o))}
            for o, m in zip(result.obj_ids, result.masks, strict=True)]


def ours(tracker: Tracker, clip: IdentityClip, settings) -> list[dict]:
    session = LiveSession(tracker, held_frames=1, max_objects=255, auto=AutoPrompter(settings))
    frames = []
    for t in range(clip.num_frames):
        r = session.track(CapturedFrame(t, t / clip.fps, clip.get(t)))
        frames.append({"frame": t, "objects": [{"obj_id": o.obj_id, "segmentation": o.to_json()["mask"],
                                                "det_box": o.info["det_box"]} for o in r.objects]})
    return frames


def reset_every(tracker: Tracker, clip: IdentityClip, settings, carry: str) -> list[dict]:
    """carry 'mask': Grounded-SAM-2 (ids by mask IoU >= 0.8 with the masks before the reset); 'order':
    Roboflow (old prompts cleared, ids in prompt order)."""
    detector = build_detector(settings)
    stream, names, prev = None, {}, {}  # names: the stream's object -> the id reported
    next_id = 1
    frames = []
    for t in range(clip.num_frames):
        image = clip.get(t)
        if t % settings.every == 0:
            dets = detector.detect(image)
            stream = tracker.stream(held_frames=1)
            result = stream.track(image)
            for k, d in enumerate(dets, 1):
                result = stream.add_new_points_or_box(k, box=list(d.box))
            masks = dict(zip(result.obj_ids, result.masks, strict=True))
            if carry == "order":
                names = {k: k for k in masks}
            else:
                old = list(prev)
                iou = np.array([[float((masks[k] & prev[o]).sum()) / max(float((masks[k] | prev[o]).sum()), 1.0)
                                 for o in old] for k in masks]).reshape(len(masks), len(old))
                names = {}
                if iou.size:
                    rows, cols = linear_sum_assignment(iou, maximize=True)
                    names = {list(masks)[i]: old[j] for i, j in zip(rows, cols, strict=True) if iou[i, j] >= 0.8}
                for k in masks:
                    if k not in names:
                        names[k] = max(next_id, max(prev, default=0) + 1)
                        next_id = names[k] + 1
            boxes = {names[k]: list(d.box) for k, d in enumerate(dets, 1)}
        else:
            result = stream.track(image) if stream is not None else None
            boxes = {}
        if result is None:
            frames.append({"frame": t, "objects": []})
            continue
        renamed = type(result)(result.frame_idx, [names.get(o, o) for o in result.obj_ids], result.masks,
                               result.low_res_logits, result.object_scores)
        prev = dict(zip(renamed.obj_ids, renamed.masks, strict=True))
        frames.append({"frame": t, "objects": _objects(renamed, boxes)})
    return frames


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--config", type=Path, default=Path("configs/openvino-cpu.yaml"))
    p.add_argument("--every", type=int, default=4, help="the detector (and the resets) every N frames")
    p.add_argument("--boxes", choices=["detection", "mask"], default="detection")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    tracker = Tracker.from_config(load_config(args.config), model=args.model)
    clip = IdentityClip()
    settings = parse_detector({"kind": "motion", "every": args.every}, None, "bench")
    rows = []
    for name, run in (("ours (engine.detect.identity)", lambda: ours(tracker, clip, settings)),
                      ("Grounded-SAM-2 style: reset + re-add, ids by mask IoU",
                       lambda: reset_every(tracker, clip, settings, "mask")),
                      ("Roboflow style: prompts cleared + re-prompted", lambda: reset_every(tracker, clip, settings,
                                                                                            "order"))):
        t0 = time.perf_counter()
        frames = run()
        seconds = time.perf_counter() - t0
        m = score_identity(frames, clip, args.every, args.boxes)
        ids = sorted({o["obj_id"] for f in frames for o in f["objects"]})
        rows.append({"policy": name, **m, "ids_used": len(ids), "seconds": round(seconds, 1)})
    print(f"{clip.num_frames} frames, 3 actors, motion detector every {args.every} frames, {args.model} "
          f"(seeded weights: a proxy), boxes scored: {args.boxes}")
    print(f"{'policy':<56} {'IDF1':>6} {'ID sw':>6} {'frag':>5} {'MOTA':>6} {'ids':>4} {'s':>6}")
    for r in rows:
        print(f"{r['policy']:<56} {r['idf1']:>6.3f} {r['num_switches']:>6.0f} {r['num_fragmentations']:>5.0f} "
              f"{r['mota']:>6.3f} {r['ids_used']:>4} {r['seconds']:>6.1f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "identity.json").write_text(json.dumps({"every": args.every, "model": str(args.model),
                                                            "boxes": args.boxes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
