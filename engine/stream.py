"""Live tracking on a tracker: frames pushed one by one, prompts on the current frame (engine.live adds
held frames and capture threads on top)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.errors import InputError
from engine.state import FrameResult, InferenceState
from engine.video import LiveSource


class _Planner(Protocol):
    window: int


class Tracker(Protocol):
    """What a stream needs of a tracker (engine.tracker.Tracker): its public step and prompts. A protocol,
    so this module does not import the tracker, which builds streams."""

    planner: _Planner

    def step(self, state: InferenceState, frame_idx: int, reverse: bool = False) -> FrameResult: ...

    def add_new_points_or_box(self, state: InferenceState, frame_idx: int, obj_id: int, points=None, labels=None,
                              clear_old_points: bool = True, normalize_coords: bool = True,
                              box=None) -> FrameResult: ...

    def add_new_mask(self, state: InferenceState, frame_idx: int, obj_id: int, mask: np.ndarray) -> FrameResult: ...

    def remove_object(self, state: InferenceState, obj_id: int, strict: bool = False,
                      need_output: bool = True) -> tuple[list[int], list[FrameResult]]: ...


class Stream:
    """Live tracking: push frames one by one; prompts apply to the current frame at any time.

    Corrections on a frame that was already tracked become conditioning frames (SAM 2's
    add_all_frames_to_correct_as_cond), so they keep steering the object instead of leaving memory after
    six frames. Memory stays bounded: tracked frames older than the rules can select are dropped (a
    stream never goes back, so its masks are still those of Meta's predictor run with that flag).
    """

    def __init__(self, tracker: Tracker, held_frames: int = LiveSource.cache_size) -> None:
        self.tracker = tracker
        self.source = LiveSource(held_frames=held_frames)
        self.state = InferenceState(self.source)
        self.state.correct_as_cond = True
        self.state.bounded = True
        self.frame_idx = -1

    def _current(self) -> int:
        if self.frame_idx < 0:
            raise InputError("no frame yet: call track(frame) first, then prompt on it")
        return self.frame_idx

    def track(self, frame: np.ndarray) -> FrameResult:
        """Add the next frame and return every object's mask on it."""
        self.frame_idx = self.source.push(frame)
        result = self.tracker.step(self.state, self.frame_idx)
        window = self.tracker.planner.window
        for obj in self.state.objects.values():
            for t in [t for t in obj.tracked if t < self.frame_idx - window]:
                del obj.tracked[t]
        return result

    def add_new_points_or_box(self, obj_id: int, points=None, labels=None, box=None,
                              clear_old_points: bool = True) -> FrameResult:
        return self.tracker.add_new_points_or_box(self.state, self._current(), obj_id, points=points, labels=labels,
                                                  clear_old_points=clear_old_points, box=box)

    def add_new_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        return self.tracker.add_new_mask(self.state, self._current(), obj_id, mask)

    def remove_object(self, obj_id: int) -> None:
        self.tracker.remove_object(self.state, obj_id, strict=True, need_output=False)

    @property
    def obj_ids(self) -> list[int]:
        return self.state.obj_ids

    def memory_bytes(self) -> int:
        return self.state.memory_bytes()
