"""Promptable tracking of one live source: a `Stream` plus the frame ids people see.

A live source's frames are named by their capture `frame_id` (every decoded frame counts, dropped ones
too). The stream numbers the frames it tracked 0, 1, 2, ... in order, and SAM 2's memory rules run on
that numbering: the memories are the tracked frames, in order, whatever time lies between them.

The session holds the last `held_frames` tracked frames. A prompt names the frame it was made on (as
shown in a result or the preview); the session applies it on that frame, as Meta's predictor in stream
mode does (`add_all_frames_to_correct_as_cond`: a prompt on a frame already tracked is a conditioning
frame), and tracking goes on from the next frame that arrives. Frames tracked between the prompted frame
and now are not tracked again: a live result, once sent, stands. A frame no longer held is refused.

**A new frame size** (a camera switched to another stream profile) starts a new stream on the first
frame of the new size, and every object goes on under its id: its last non-empty mask, resized to the
new size (nearest neighbour), is its mask prompt on that frame, which becomes its conditioning frame.
Memory from before the change is left behind (its features are of another image geometry), and so are
the held frames: a prompt on one of them is refused as no longer held. An object that never had a
non-empty mask has nothing to carry and is dropped, which the session logs and counts.

**A detector** (an `engine.detect.AutoPrompter`) makes the session unattended: after each tracked frame
the identity policy may add objects, re-acquire or remove them on that frame. Results then carry each
object's label, detector score, origin and state, and the frame's events (entered, lost, reacquired,
expired, removed). A person's prompts and removals are told to the policy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from engine.errors import InputError
from engine.live.capture import CapturedFrame

if TYPE_CHECKING:
    from engine.detect.auto import AutoPrompter
from engine.outputs import coco_rle
from engine.tracker import FrameResult, Tracker

log = logging.getLogger("engine.live")


class FrameNotHeldError(InputError):
    """A prompt named a frame the session no longer holds (or never tracked)."""


class ObjectLimitError(InputError):
    """A prompt would add an object beyond the source's limit."""


@dataclass
class ObjectResult:
    obj_id: int
    present: bool  # the model's object score > 0
    score: float
    box: list[int] | None  # x0, y0, x1, y1 of the mask (inclusive), None when the mask is empty
    mask: np.ndarray  # H x W bool
    info: dict[str, Any] | None = None  # with a detector: label, det_score, origin, state, det_box

    def to_json(self) -> dict[str, Any]:
        out = {"obj_id": self.obj_id, "present": self.present, "score": round(self.score, 4), "box": self.box,
               "area": int(self.mask.sum()), "mask": coco_rle(self.mask)}
        if self.info is not None:
            out.update(self.info)
        return out


@dataclass
class LiveResult:
    """Every object's mask on one frame of a live source, with where the frame sits in time."""

    source: str
    frame_id: int
    captured_at: float  # wall clock (time.time()) when the frame was decoded
    result_at: float  # wall clock when this result was ready
    objects: list[ObjectResult]
    kind: str = "track"  # "track": a tracked frame; "prompt": the answer to a prompt on a held frame
    events: list[Any] = field(default_factory=list)  # engine.detect.identity.Event, with a detector
    _json: dict[str, Any] | None = field(default=None, repr=False)
    _text: str | None = field(default=None, repr=False)

    @property
    def latency_s(self) -> float:
        return self.result_at - self.captured_at

    # the tracker's FrameResult view, for writers shared with offline tracking (engine.track's outputs)
    @property
    def obj_ids(self) -> list[int]:
        return [o.obj_id for o in self.objects]

    @property
    def masks(self) -> np.ndarray:
        return np.stack([o.mask for o in self.objects]) if self.objects else np.zeros((0, 0, 0), bool)

    @property
    def object_scores(self) -> np.ndarray:
        return np.array([o.score for o in self.objects], np.float32)

    def to_json(self) -> dict[str, Any]:
        """The message every sink sends (computed once: RLE encoding is the costly part)."""
        if self._json is None:
            self._json = {"source": self.source, "kind": self.kind, "frame_id": self.frame_id,
                          "captured_at": round(self.captured_at, 6), "result_at": round(self.result_at, 6),
                          "latency_ms": round(1000 * self.latency_s, 2),
                          "objects": [o.to_json() for o in self.objects]}
            if self.events:
                self._json["events"] = [e.to_json() for e in self.events]
        return self._json

    def to_text(self) -> str:
        """to_json() as compact JSON text, made once for all the clients and sinks that send it."""
        if self._text is None:
            self._text = json.dumps(self.to_json(), separators=(",", ":"))
        return self._text


def _box(mask: np.ndarray) -> list[int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


@dataclass
class _Held:
    index: int  # the stream's frame index
    captured_at: float


class LiveSession:
    """One live source's objects and memory. `track` and `prompt` may be called from different threads:
    they take `lock`, which sessions that share one tracker (one loaded stage set) must share."""

    def __init__(self, tracker: Tracker, name: str = "source", held_frames: int = 32, max_objects: int = 16,
                 lock: threading.RLock | None = None, auto: AutoPrompter | None = None) -> None:
        if held_frames < 1:
            raise InputError(f"held_frames must be at least 1, got {held_frames}")
        self.tracker = tracker
        self.name = name
        self.held_frames = held_frames
        self.max_objects = max_objects
        self.lock = lock or threading.RLock()
        self.stream = tracker.stream(held_frames=held_frames)
        self._held: OrderedDict[int, _Held] = OrderedDict()  # frame_id -> where the stream has it
        self.last: LiveResult | None = None
        self.tracked = 0
        self.size_changes = 0  # new frame sizes the session followed (objects carried over)
        self.dropped_on_resize: list[int] = []  # objects that had no mask to carry over
        self._last_masks: dict[int, np.ndarray] = {}  # obj_id -> its newest non-empty mask (H x W bool)
        self.auto = auto
        self._events: list[Any] = []  # a person's removals, sent with the next result

    @property
    def obj_ids(self) -> list[int]:
        return self.stream.obj_ids

    @property
    def video_hw(self) -> tuple[int, int] | None:
        return self.stream.state.video_hw if self.stream.source.height else None

    def held_frame_ids(self) -> list[int]:
        return list(self._held)

    def _held_text(self) -> str:
        ids = self.held_frame_ids()
        return f"frames {ids[0]} to {ids[-1]}" if ids else "none yet"

    def frame(self, frame_id: int) -> np.ndarray:
        """A held frame's image (what a prompt on it is made on)."""
        held = self._lookup(frame_id)
        try:
            return self.stream.source.get(held.index)
        except InputError:  # tracking moved on between the lookup and the read
            raise FrameNotHeldError(f"frame {frame_id} of source {self.name} is no longer held; held: "
                                    f"{self._held_text()}") from None

    def _lookup(self, frame_id: int) -> _Held:
        held = self._held.get(frame_id)
        if held is None:
            raise FrameNotHeldError(f"frame {frame_id} of source {self.name} is not held; held: {self._held_text()} "
                                    f"(the last {self.held_frames} tracked frames)")
        return held

    def _live_result(self, result: FrameResult, frame_id: int, captured_at: float, kind: str,
                     events: list[Any] | None = None) -> LiveResult:
        auto = self.auto
        objects = [ObjectResult(int(o), bool(s > 0), float(s), _box(m), m,
                                None if auto is None else auto.object_info(int(o), frame_id))
                   for o, m, s in zip(result.obj_ids, result.masks, result.object_scores, strict=True)]
        for o in objects:
            if o.box is not None:
                self._last_masks[o.obj_id] = o.mask
        events = self._events + list(events or [])
        self._events = []
        return LiveResult(self.name, frame_id, captured_at, time.time(), objects, kind, events)

    def _carry_over(self, image: np.ndarray) -> FrameResult:
        """The first frame of a new size: a new stream, each object prompted with its last mask, resized."""
        old_hw, new_hw = self.video_hw, image.shape[:2]
        carried = {o: self._last_masks.get(o) for o in self.stream.obj_ids}
        self.stream = self.tracker.stream(held_frames=self.held_frames)
        self._held.clear()
        self._last_masks.clear()
        self.size_changes += 1
        result = self.stream.track(image)
        dropped = [o for o, m in carried.items() if m is None]
        for obj_id, mask in carried.items():
            if mask is not None:
                resized = cv2.resize(mask.astype(np.uint8), (new_hw[1], new_hw[0]), interpolation=cv2.INTER_NEAREST)
                result = self.tracker.add_new_mask(self.stream.state, self.stream.frame_idx, obj_id, resized > 0)
        self.dropped_on_resize.extend(dropped)
        log.warning("source %s: the frame size changed from %d x %d to %d x %d; objects %s carried over as mask "
                    "prompts%s", self.name, old_hw[1], old_hw[0], new_hw[1], new_hw[0],
                    [o for o in carried if o not in dropped] or "none",
                    f", objects {dropped} dropped (no mask to carry)" if dropped else "")
        return result

    def track(self, frame: CapturedFrame) -> LiveResult:
        with self.lock:
            hw = self.video_hw
            if hw is not None and frame.image.shape[:2] != hw:
                result = self._carry_over(frame.image)
            else:
                result = self.stream.track(frame.image)
            self._held[frame.frame_id] = _Held(self.stream.frame_idx, frame.captured_at)
            while len(self._held) > self.held_frames:
                self._held.popitem(last=False)
            events = None
            if self.auto is not None:
                result, events = self.auto.after_track(frame.frame_id, frame.captured_at, frame.image, result,
                                                       self._prompt_box, self._forget)
            self.tracked += 1
            self.last = self._live_result(result, frame.frame_id, frame.captured_at, "track", events)
            return self.last

    def _prompt_box(self, obj_id: int, box: tuple[float, float, float, float]) -> FrameResult:
        """The policy's box prompt on the frame just tracked."""
        return self.tracker.add_new_points_or_box(self.stream.state, self.stream.frame_idx, obj_id, box=list(box))

    def _forget(self, obj_id: int) -> None:
        """The policy expired an object."""
        self.stream.remove_object(obj_id)
        self._last_masks.pop(obj_id, None)

    def prompt(self, frame_id: int, obj_id: int, points: Any = None, labels: Any = None, box: Any = None,
               mask: np.ndarray | None = None, clear_old_points: bool = True) -> LiveResult:
        """Add an object, or correct one, on a held frame: clicks (label 1 positive, 0 negative) and/or a
        box, or a mask (H x W, nonzero = object), in the frame's pixels."""
        with self.lock:
            held = self._lookup(frame_id)
            if obj_id not in self.stream.obj_ids and len(self.stream.obj_ids) >= self.max_objects:
                raise ObjectLimitError(f"source {self.name} already tracks {self.max_objects} objects "
                                       f"(limits.objects_per_source); remove one first")
            state = self.stream.state
            if mask is not None:
                if points is not None or box is not None:
                    raise InputError("a mask prompt cannot be combined with points or a box")
                result = self.tracker.add_new_mask(state, held.index, obj_id, mask)
            else:
                result = self.tracker.add_new_points_or_box(state, held.index, obj_id, points=points, labels=labels,
                                                            box=box, clear_old_points=clear_old_points)
            if self.auto is not None:
                self.auto.person_prompted(obj_id)
            return self._live_result(result, frame_id, held.captured_at, "prompt")

    def remove_object(self, obj_id: int) -> None:
        """A person removes an object; with a detector, nothing is admitted where it was for a while."""
        with self.lock:
            self.stream.remove_object(obj_id)
            self._last_masks.pop(obj_id, None)
            if self.auto is not None:
                # the policy's clock is the frames' (capture time; video time for files)
                frame_id, now = (self.last.frame_id, self.last.captured_at) if self.last else (-1, time.time())
                event = self.auto.person_removed(obj_id, now, frame_id)
                if event is not None:
                    self._events.append(event)
