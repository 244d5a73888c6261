"""The next frame is prepared while the stages run on this one, and the model sees the same input."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from engine.config import TrackerSettings, parse_config
from engine.errors import ConfigError, FrameDecodeError
from engine.tracker import Tracker
from engine.video import ArraySource
from tests.engine.fakes import FakeStages

N = 8


def _frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (N, 48, 64, 3), dtype=np.uint8)


class RecordingStages(FakeStages):
    def __init__(self, modelset) -> None:
        super().__init__(modelset)
        self.images: list[np.ndarray] = []

    def run(self, name, inputs, keep=()):
        if name == "image_encoder":
            self.images.append(inputs["image"].copy())
        return super().run(name, inputs, keep)


@pytest.mark.parametrize("reverse", [False, True])
def test_the_model_sees_the_same_frames_with_and_without_prefetching(modelset, reverse):
    seen = {}
    for prefetch in (False, True):
        stages = RecordingStages(modelset)
        tracker = Tracker(modelset, stages, TrackerSettings(prefetch_frames=prefetch))
        state = tracker.init_state(_frames())
        start = N - 1 if reverse else 0
        tracker.add_new_points_or_box(state, start, 1, points=[[10, 10]], labels=[1])
        results = list(tracker.propagate_in_video(state, reverse=reverse))
        assert [r.frame_idx for r in results] == (list(range(N - 1, -1, -1)) if reverse else list(range(N)))
        seen[prefetch] = stages.images
        if prefetch:  # every tracked frame after the first was asked for ahead
            assert state.inputs.hits == N - 1 and state.next_frame is None
    assert len(seen[True]) == len(seen[False]) >= N  # reverse: frame 0 (warmed by init_state) is encoded again
    for a, b in zip(seen[False], seen[True], strict=True):
        assert np.array_equal(a, b)


class SlowSource(ArraySource):
    """Frame t (after the first) starts loading while frame t - 1's stages run: its memory encoder waits for it."""

    def __init__(self, frames) -> None:
        super().__init__(frames)
        self.started = {i: threading.Event() for i in range(N)}
        self.threads: dict[int, str] = {}

    def _load(self, index):
        self.threads[index] = threading.current_thread().name
        self.started[index].set()
        return super()._load(index)


def test_the_next_frame_loads_while_this_frame_is_tracked(modelset):
    source = SlowSource(_frames())
    overlapped = []

    class Waiting(FakeStages):
        tracking: int | None = None  # the frame whose stages run now

        def run(self, name, inputs, keep=()):
            c = Waiting.tracking
            if name == "memory_encoder" and c is not None and 1 <= c < N - 1:
                overlapped.append(source.started[c + 1].wait(timeout=10))  # frame c + 1 is being loaded
            return super().run(name, inputs, keep)

    tracker = Tracker(modelset, Waiting(modelset))
    state = tracker.init_state(source)
    tracker.add_new_points_or_box(state, 0, 1, points=[[10, 10]], labels=[1])
    for r in tracker.propagate_in_video(state):
        Waiting.tracking = r.frame_idx + 1
    assert len(overlapped) == N - 2 and all(overlapped)
    assert all(source.threads[i].startswith("sam2-frame-prefetch") for i in range(1, N))


def test_a_frame_that_cannot_be_decoded_fails_when_it_is_tracked(modelset):
    class Broken(ArraySource):
        def _load(self, index):
            if index == 5:
                raise FrameDecodeError("cannot decode frame 5 (test)")
            return super()._load(index)

    tracker = Tracker(modelset, FakeStages(modelset))
    state = tracker.init_state(Broken(_frames()))
    tracker.add_new_points_or_box(state, 0, 1, points=[[10, 10]], labels=[1])
    done = []
    with pytest.raises(FrameDecodeError, match="frame 5"):
        for r in tracker.propagate_in_video(state):
            done.append(r.frame_idx)
    assert done == [0, 1, 2, 3, 4]


def test_prefetch_setting():
    assert parse_config({"tracker": {"prefetch_frames": False}}).tracker.prefetch_frames is False
    assert parse_config({}).tracker.prefetch_frames is True
    with pytest.raises(ConfigError, match="'tracker.prefetch_frames': value 1 is not allowed"):
        parse_config({"tracker": {"prefetch_frames": 1}})
    assert replace(TrackerSettings(), prefetch_frames=False).prefetch_frames is False
