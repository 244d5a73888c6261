"""The identity policy: which detections become objects, and how objects keep their ids. numpy and scipy
only; no model runs here (engine.detect.auto feeds it a tracker's masks and a detector's boxes).

The rules, per tracked frame (`observe`):

1. **Presence.** An object whose object score stays at or below 0 for `lost_after_s` is `lost`; lost for
   `expire_after_s` more, it is `expired` and removed (its id is never given again). A lost object that SAM 2
   finds again by itself (score above 0) is `reacquired` without a prompt: its memory did the work.
2. **Matching** (frames the detector ran on). A detection and an object overlap by the larger of: the IoU
   of the detection with the box around the object's mask, and the intersection over the smaller box of
   the detection and the object's last detection, where it was or moved on at its velocity (a
   constant-velocity guess, as SORT makes; it carries an object through frames where its mask is poor, and
   through a detector that merges it with another as they cross). A detection near the object's last one
   (the re-acquisition rule below) just passes, so an object the detector missed for a while, or that
   turned, is still found; any real overlap wins over it. The velocity is read from the box edges
   the frame does not cut (an object entering shows its leading edge); a detection that changed size
   inside the frame (a merge, a split) moves the box but not the velocity. Pairs overlapping at least `match_iou` are
   assigned one to one (scipy's linear_sum_assignment), maximising the overlap plus the share of the
   detection that the object's mask covers plus the IoU with the guessed box (which decides between two
   objects inside one merged detection).
3. **Re-acquisition.** An unmatched detection of a lost object's class, whose centre lies within the lost
   object's last box grown by `reacquire_distance` of its width and height each way, and whose size is
   within a factor `reacquire_size` of it, re-acquires that object (one to one, nearest first): its old
   id comes back with the detection's box as a prompt on this frame.
4. **Admission.** An unmatched detection that is of a wanted class, that no object's mask covers
   (`cover` of its box, by an object it overlaps), and that is not where a person removed an object in
   the last `removed_block_s`, becomes a new object with the next id, prompted with its box on this frame.
   Past `max_objects` (lost ones count), it is counted in `over_cap` instead.
5. **Correction** (off by default: `correct`). A matched object whose mask's box overlaps its detection
   less than `correct_iou` is prompted again with the detection's box, keeping its id.

Memory is never reset and no other object is prompted again: a prompt touches one object on one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from engine.detect.base import Detection, box_area, box_intersection, box_iou, covered_share, mask_box
from engine.detect.settings import IdentitySettings

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Event:
    kind: str  # entered | lost | reacquired | expired | corrected | removed
    obj_id: int
    frame_id: int
    time: float
    label: str | None = None
    box: Box | None = None
    by: str = "detector"  # detector | memory (SAM 2 found it again) | person | policy

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "obj_id": self.obj_id, "frame_id": self.frame_id, "time": round(self.time, 6),
                "label": self.label, "box": None if self.box is None else [round(v, 1) for v in self.box],
                "by": self.by}


@dataclass
class ObjectRecord:
    """What the policy knows of one object."""

    obj_id: int
    origin: str  # detector | person
    label: str | None = None
    class_id: int | None = None
    det_score: float | None = None
    state: str = "tracking"  # tracking | lost
    det_box: Box | None = None  # the detection matched to it last
    det_time: float | None = None  # when
    velocity: tuple[float, float] | None = None  # of its detection, pixels a second (smoothed); None: unknown
    box: Box | None = None  # where it was last seen: its mask's box, or its detection's
    below_since: float | None = None  # when its score fell to 0 or below
    lost_at: float | None = None
    matched_frame: int | None = None  # the frame its detection was last matched on

    def info(self) -> dict[str, Any]:
        return {"origin": self.origin, "label": self.label, "det_score": self.det_score, "state": self.state}

    def predicted(self, now: float, horizon_s: float) -> Box | None:
        """Its last detection moved on at its velocity (for at most `horizon_s`)."""
        if self.det_box is None or self.det_time is None:
            return None
        dt = min(max(now - self.det_time, 0.0), horizon_s)
        vx, vy = self.velocity or (0.0, 0.0)
        dx, dy = vx * dt, vy * dt
        b = self.det_box
        return b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy

    def matched(self, det: Detection, frame_id: int, now: float, hw: tuple[int, int] | None = None,
                gap_s: float = float("inf")) -> None:
        """This detection is the object's now. Unseen by the detector for more than `gap_s`, its old motion
        says nothing: the velocity starts again."""
        if self.det_time is not None and now - self.det_time > gap_s:
            self.velocity = None
        elif self.det_box is not None and self.det_time is not None and now > self.det_time:
            shift = _shift(self.det_box, det.box, hw)
            if shift is not None:
                v = (shift[0] / (now - self.det_time), shift[1] / (now - self.det_time))
                self.velocity = v if self.velocity is None else (0.5 * self.velocity[0] + 0.5 * v[0],
                                                                 0.5 * self.velocity[1] + 0.5 * v[1])
        self.det_score, self.det_box, self.box = det.score, det.box, det.box
        self.det_time, self.matched_frame = now, frame_id


def _axis_shift(a0: float, a1: float, b0: float, b1: float, limit: float | None) -> float | None:
    """How far a box moved along one axis, from its edges that are not cut by the frame: both edges when it
    kept its size, else the one edge inside the frame on both (an object entering or leaving); None when
    its size changed inside the frame (a merge, a split: no motion to read)."""
    size_a, size_b = a1 - a0, b1 - b0
    if size_a > 0 and 1 / 1.5 <= size_b / size_a <= 1.5:
        return ((b0 + b1) - (a0 + a1)) / 2.0
    low_cut = a0 <= 0.5 or b0 <= 0.5
    high_cut = limit is not None and (a1 >= limit - 0.5 or b1 >= limit - 0.5)
    if low_cut and not high_cut:
        return b1 - a1
    if high_cut and not low_cut:
        return b0 - a0
    return None


def _shift(a: Box, b: Box, hw: tuple[int, int] | None) -> tuple[float, float] | None:
    dx = _axis_shift(a[0], a[2], b[0], b[2], None if hw is None else hw[1])
    dy = _axis_shift(a[1], a[3], b[1], b[3], None if hw is None else hw[0])
    return None if dx is None or dy is None else (dx, dy)


@dataclass(frozen=True)
class ObjectView:
    """An object on the frame just tracked: its mask (H x W bool) and object score."""

    mask: np.ndarray
    score: float


@dataclass(frozen=True)
class BoxPrompt:
    obj_id: int
    box: Box
    reason: str  # entered | reacquired | corrected


@dataclass
class Decision:
    prompts: list[BoxPrompt] = field(default_factory=list)
    remove: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    over_cap: int = 0


@dataclass
class _Block:
    box: Box
    until: float


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _intersection_over_smaller(a: np.ndarray, b: Box) -> np.ndarray:
    """For boxes a [n, 4] and one box b: intersection over the smaller of the two areas."""
    bb = np.array(b, np.float64).reshape(1, 4)
    inter = box_intersection(a, bb)[:, 0]
    smaller = np.minimum(box_area(a), box_area(bb)[0])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def _size(box: Box) -> float:
    return float(np.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)))


class IdentityPolicy:
    def __init__(self, settings: IdentitySettings, classes: tuple[str | int, ...] | None = None,
                 first_id: int = 1) -> None:
        self.settings = settings
        self.classes = None if classes is None else {str(c) for c in classes}
        self.objects: dict[int, ObjectRecord] = {}
        self.next_id = first_id
        self.blocks: list[_Block] = []
        self.over_cap = 0  # detections refused by the cap, all told
        self._hw: tuple[int, int] | None = None
        self.admitted = 0

    # ------------------------------------------------------------------ a person's actions
    def person_prompted(self, obj_id: int) -> None:
        """A person added or corrected this object (a click, a box, a mask)."""
        rec = self.objects.get(obj_id)
        if rec is None:
            self.objects[obj_id] = ObjectRecord(obj_id, "person")
        else:
            rec.state, rec.below_since, rec.lost_at = "tracking", None, None
        self.next_id = max(self.next_id, obj_id + 1)

    def person_removed(self, obj_id: int, now: float, frame_id: int) -> Event | None:
        """A person removed this object: nothing is admitted where it was for `removed_block_s`."""
        rec = self.objects.pop(obj_id, None)
        if rec is None:
            return None
        if rec.box is not None and self.settings.removed_block_s > 0:
            self.blocks.append(_Block(rec.box, now + self.settings.removed_block_s))
        return Event("removed", obj_id, frame_id, now, rec.label, rec.box, by="person")

    def new_id(self) -> int:
        obj_id = self.next_id
        self.next_id += 1
        return obj_id

    # ------------------------------------------------------------------ per frame
    def wanted(self, det: Detection) -> bool:
        return self.classes is None or det.label in self.classes or str(det.class_id) in self.classes

    def observe(self, frame_id: int, now: float, views: dict[int, ObjectView],
                detections: list[Detection] | None, hw: tuple[int, int] | None = None) -> Decision:
        """The frame just tracked (every object's view) and, on frames the detector ran, its detections:
        what to prompt, what to remove, and what happened. `hw`: the frame's size (where boxes are cut)."""
        out = Decision()
        self._hw = hw
        self._sync(views)
        boxes = {o: mask_box(v.mask) for o, v in views.items()}
        self._presence(frame_id, now, views, boxes, out)
        if detections is not None:
            dets = [d for d in detections if self.wanted(d)]
            self.blocks = [b for b in self.blocks if b.until > now]
            rest = self._match(frame_id, now, views, boxes, dets, out)
            rest = self._reacquire(frame_id, now, rest, out)
            self._admit(frame_id, now, rest, out)
        return out

    def _sync(self, views: dict[int, ObjectView]) -> None:
        for obj_id in views:
            if obj_id not in self.objects:  # prompted by a person (the page, the API, a prompts file)
                self.person_prompted(obj_id)
        for obj_id in [o for o in self.objects if o not in views]:  # removed elsewhere (e.g. nothing to carry)
            del self.objects[obj_id]

    def _presence(self, frame_id: int, now: float, views: dict[int, ObjectView], boxes: dict[int, Box | None],
                  out: Decision) -> None:
        s = self.settings
        for obj_id, view in views.items():
            rec = self.objects[obj_id]
            if view.score > 0 and boxes[obj_id] is not None:
                rec.box = boxes[obj_id]
                rec.below_since = None
                if rec.state == "lost":
                    rec.state, rec.lost_at = "tracking", None
                    out.events.append(Event("reacquired", obj_id, frame_id, now, rec.label, rec.box, by="memory"))
                continue
            if rec.below_since is None:
                rec.below_since = now
            if rec.state == "tracking" and now - rec.below_since >= s.lost_after_s:
                rec.state, rec.lost_at = "lost", now
                out.events.append(Event("lost", obj_id, frame_id, now, rec.label, rec.box, by="memory"))
            elif rec.state == "lost" and rec.lost_at is not None and now - rec.lost_at >= s.expire_after_s:
                out.remove.append(obj_id)
                out.events.append(Event("expired", obj_id, frame_id, now, rec.label, rec.box, by="policy"))
        for obj_id in out.remove:
            self.objects.pop(obj_id, None)

    def _overlaps(self, now: float, dets: list[Detection], ids: list[int],
                  boxes: dict[int, Box | None]) -> tuple[np.ndarray, ...]:
        d = np.array([x.box for x in dets], np.float64).reshape(-1, 4)
        mask_iou = np.zeros((len(dets), len(ids)))
        prev = np.zeros((len(dets), len(ids)))
        prev_iou = np.zeros((len(dets), len(ids)))
        for j, obj_id in enumerate(ids):
            if boxes.get(obj_id) is not None:
                mask_iou[:, j] = box_iou(d, np.array(boxes[obj_id]))[:, 0]
            rec = self.objects[obj_id]
            guess = rec.predicted(now, self.settings.expire_after_s)
            if guess is not None:
                prev[:, j] = np.maximum(_intersection_over_smaller(d, guess),
                                        _intersection_over_smaller(d, rec.det_box))
                prev_iou[:, j] = box_iou(d, np.array(guess))[:, 0]
                # near where the detector saw it last (grown as for re-acquisition): just enough to match, so
                # any real overlap wins; it carries an object the detector missed for a while, or that turned
                near = np.array([self._near(x.box, rec.det_box) for x in dets])
                prev[:, j] = np.where(near & (prev[:, j] < self.settings.match_iou), self.settings.match_iou,
                                      prev[:, j])
        return mask_iou, np.maximum(mask_iou, prev), prev_iou

    def _near(self, box: Box, last: Box) -> bool:
        """A box whose centre lies within `last` grown by `reacquire_distance` of its size each way, and whose
        size is within a factor `reacquire_size` of it."""
        s = self.settings
        cx, cy = _centre(box)
        w, h = last[2] - last[0], last[3] - last[1]
        g = s.reacquire_distance
        inside = last[0] - g * w <= cx <= last[2] + g * w and last[1] - g * h <= cy <= last[3] + g * h
        ratio = _size(box) / max(_size(last), 1e-6)
        return inside and 1 / s.reacquire_size <= ratio <= s.reacquire_size

    def _match(self, frame_id: int, now: float, views: dict[int, ObjectView], boxes: dict[int, Box | None],
               dets: list[Detection], out: Decision) -> list[Detection]:
        s = self.settings
        ids = [o for o, r in self.objects.items() if r.state == "tracking" and o in views]
        if not dets or not ids:
            return dets
        mask_iou, overlap, prev_iou = self._overlaps(now, dets, ids, boxes)
        cover = np.array([[covered_share(views[o].mask, d.box) for o in ids] for d in dets])
        # the IoU with the guessed box breaks ties of a detection that holds two objects (a merge)
        gain = np.where(overlap >= s.match_iou, overlap + cover + prev_iou, -1e6)
        rows, cols = linear_sum_assignment(gain, maximize=True)
        taken = set()
        for i, j in zip(rows, cols, strict=True):
            if gain[i, j] < 0:
                continue
            taken.add(i)
            det, rec = dets[i], self.objects[ids[j]]
            if rec.label is None or rec.origin == "person":
                rec.label, rec.class_id = det.label, det.class_id
            rec.matched(det, frame_id, now, self._hw, gap_s=s.lost_after_s)
            if s.correct and mask_iou[i, j] < s.correct_iou:
                out.prompts.append(BoxPrompt(rec.obj_id, det.box, "corrected"))
                out.events.append(Event("corrected", rec.obj_id, frame_id, now, rec.label, det.box))
        # a second detection of an object already matched (its mask covers it) is that object, not a new one
        dup = {i for i in range(len(dets)) if i not in taken
               and any(overlap[i, j] >= s.match_iou and cover[i, j] >= s.cover for j in range(len(ids)))}
        return [d for i, d in enumerate(dets) if i not in taken and i not in dup]

    def _reacquire(self, frame_id: int, now: float, dets: list[Detection], out: Decision) -> list[Detection]:
        lost = [r for r in self.objects.values() if r.state == "lost" and r.box is not None]
        if not dets or not lost:
            return dets
        cost = np.full((len(dets), len(lost)), np.inf)
        for i, det in enumerate(dets):
            cx, cy = _centre(det.box)
            for j, rec in enumerate(lost):
                same_class = rec.label is None or rec.label == det.label
                if same_class and self._near(det.box, rec.box):
                    ox, oy = _centre(rec.box)
                    cost[i, j] = np.hypot(cx - ox, cy - oy) / max(_size(rec.box), 1e-6)
        finite = np.where(np.isfinite(cost), cost, 1e9)
        rows, cols = linear_sum_assignment(finite)
        used = set()
        for i, j in zip(rows, cols, strict=True):
            if not np.isfinite(cost[i, j]):
                continue
            used.add(i)
            det, rec = dets[i], lost[j]
            rec.state, rec.lost_at, rec.below_since = "tracking", None, None
            rec.matched(det, frame_id, now, self._hw)
            rec.velocity = None  # it was away: its old motion says nothing now
            out.prompts.append(BoxPrompt(rec.obj_id, det.box, "reacquired"))
            out.events.append(Event("reacquired", rec.obj_id, frame_id, now, rec.label, det.box))
        return [d for i, d in enumerate(dets) if i not in used]

    def _blocked(self, det: Detection) -> bool:
        cx, cy = _centre(det.box)
        return any(b.box[0] <= cx <= b.box[2] and b.box[1] <= cy <= b.box[3] for b in self.blocks)

    def _admit(self, frame_id: int, now: float, dets: list[Detection], out: Decision) -> None:
        for det in dets:
            if self._blocked(det):
                continue
            if len(self.objects) >= self.settings.max_objects:
                out.over_cap += 1
                continue
            obj_id = self.new_id()
            rec = self.objects[obj_id] = ObjectRecord(obj_id, "detector", det.label, det.class_id)
            rec.matched(det, frame_id, now, self._hw)
            self.admitted += 1
            out.prompts.append(BoxPrompt(obj_id, det.box, "entered"))
            out.events.append(Event("entered", obj_id, frame_id, now, det.label, det.box))
        self.over_cap += out.over_cap
