"""A clip with ground truth for unattended tracking: shapes enter, cross, leave the frame and come back,
and one appears mid-video, on a still textured background (a fixed camera, as the `motion` detector
needs). Every object's box on every frame is known, so identity can be scored (motmetrics: IDF1, ID
switches, fragmentation) by tests/engine/detect and benchmarks/identity.py.

The script of the default clip (256 x 192, 56 frames):
- frames 0-2: the empty scene;
- A (red, 36 x 48) enters from the left on frame 3, crosses the frame, leaves on the right around frame 38,
  is away frames 39-44, and comes back the same way it left;
- B (blue ellipse, 40 x 52) enters from the right on frame 3 and crosses A's lane (they overlap around
  frame 25);
- C (green, 32 x 32) rises from the bottom edge from frame 22 on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.video import FrameSource


@dataclass(frozen=True)
class Actor:
    name: str
    size: tuple[int, int]  # w, h
    colour: tuple[int, int, int]
    ellipse: bool


ACTORS = (Actor("A", (36, 48), (220, 50, 40), False), Actor("B", (40, 52), (40, 90, 230), True),
          Actor("C", (32, 32), (40, 210, 70), False))


def _position(name: str, t: int, width: int, height: int) -> tuple[float, float] | None:
    """The actor's top-left corner on frame t (None: not in the scene yet)."""
    if name == "A":
        if t < 3:
            return None
        if t < 45:  # rightwards, out of the frame from about frame 38
            return -36 + 8 * (t - 3), 20
        return width - 8 * (t - 45), 20  # back leftwards in the same lane
    if name == "B":
        return (width - 5 * (t - 3), 50) if t >= 3 else None
    if name == "C":
        return (100, height - 4 * (t - 22)) if t >= 22 else None
    raise ValueError(name)


class IdentityClip(FrameSource):
    def __init__(self, num_frames: int = 56, height: int = 192, width: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.num_frames, self.height, self.width = num_frames, height, width
        self.fps = 10.0
        rng = np.random.default_rng(seed)
        self._background = cv2.GaussianBlur(rng.integers(60, 160, (height, width, 3), dtype=np.uint8), (0, 0), 4)

    def boxes(self, t: int, min_visible: float = 0.5) -> dict[str, tuple[float, float, float, float]]:
        """Each actor's box clipped to the frame, for actors with at least `min_visible` of their area in it."""
        out = {}
        for a in ACTORS:
            pos = _position(a.name, t, self.width, self.height)
            if pos is None:
                continue
            x0, y0 = pos
            x1, y1 = x0 + a.size[0], y0 + a.size[1]
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            if (cx1 - cx0) * (cy1 - cy0) >= min_visible * a.size[0] * a.size[1]:
                out[a.name] = (float(cx0), float(cy0), float(cx1), float(cy1))
        return out

    def _load(self, index: int) -> np.ndarray:
        frame = self._background.copy()
        for a in ACTORS:
            pos = _position(a.name, index, self.width, self.height)
            if pos is None:
                continue
            x0, y0 = int(pos[0]), int(pos[1])
            w, h = a.size
            if a.ellipse:
                cv2.ellipse(frame, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), 0, 0, 360, a.colour, -1)
            else:
                cv2.rectangle(frame, (x0, y0), (x0 + w - 1, y0 + h - 1), a.colour, -1)
        return frame

    def write_frames(self, folder: Path) -> Path:
        """The clip as a JPEG folder (quality 95) that engine.track reads."""
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(self.num_frames):
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(self.get(i), cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        return folder


def score_identity(frames: list[dict], clip: IdentityClip, every: int, boxes: str = "detection") -> dict[str, float]:
    """motmetrics (IDF1, ID switches, fragmentation, MOTA) over the frames the detector ran on: truth = the
    clip's boxes; hypotheses = each object's box under its id: `detection`, the box of the detection the
    engine matched to it on that frame (what seeded weights can be judged on: their masks do not follow the
    shapes), or `mask`, the box around its mask (for a trained checkpoint). `frames` as masks.json has them."""
    import motmetrics as mm

    from engine.detect.base import box_iou, mask_box
    from engine.postprocess import rle_decode

    acc = mm.MOTAccumulator(auto_id=True)
    for f in frames:
        t = f["frame"]
        if t % every:
            continue
        truth = clip.boxes(t)
        hyp: dict[int, list[float]] = {}
        for o in f["objects"]:
            if boxes == "detection" and o.get("det_box"):
                hyp[o["obj_id"]] = o["det_box"]
            elif boxes == "mask":
                from engine.outputs import rle_from_string

                seg = o["segmentation"]
                b = mask_box(rle_decode({"size": seg["size"], "counts": rle_from_string(seg["counts"])}))
                if b is not None:
                    hyp[o["obj_id"]] = list(b)
        names, ids = sorted(truth), sorted(hyp)
        gt = np.array([truth[n] for n in names], float).reshape(-1, 4)
        hy = np.array([hyp[h] for h in ids], float).reshape(-1, 4)
        # motmetrics' distance, 1 - IoU, no match past 0.5 (its own iou_matrix uses an API NumPy 2 removed)
        dist = 1.0 - box_iou(gt, hy)
        dist[dist > 0.5] = np.nan
        acc.update([ord(n) for n in names], ids, dist)  # numeric truth ids: motmetrics wants numbers
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches", "num_fragmentations", "mota",
                                                        "num_false_positives", "num_misses"], name="run")
    return {k: float(summary[k].iloc[0]) for k in summary.columns}


def ids_per_actor(frames: list[dict], clip: IdentityClip, every: int) -> dict[str, dict[int, int]]:
    """For each actor, the ids whose matched detection overlapped it (IoU > 0.5), with the first frame."""
    from engine.detect.base import box_iou

    seen: dict[str, dict[int, int]] = {}
    for f in frames:
        t = f["frame"]
        if t % every:
            continue
        for name, gt in clip.boxes(t).items():
            for o in f["objects"]:
                if o.get("det_box") and box_iou(np.array(gt), np.array(o["det_box"]))[0, 0] > 0.5:
                    seen.setdefault(name, {}).setdefault(o["obj_id"], t)
    return seen
