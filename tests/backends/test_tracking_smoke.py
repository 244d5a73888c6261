"""One small tracking run per CPU runtime (the quick tier's end-to-end check): a click, four frames of the
DAVIS clip, masks that cover part of the frame, and both runtimes agreeing on them."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import parse_config
from engine.stages import StageSet
from engine.tracker import Tracker
from tests.conftest import require_data

BACKENDS = {"onnxruntime": {"name": "onnxruntime", "device": "cpu"},
            "openvino": {"name": "openvino", "device": "CPU", "precision": "f32"}}


def _track(modelset, backend: dict) -> list[np.ndarray]:
    cfg = parse_config({"backend": backend, "tracker": {"memory_dtype": "float32"}})
    tracker = Tracker(modelset, StageSet.load(modelset, cfg), cfg.tracker)
    frames = require_data() / "davis-car-shadow" / "frames"
    state = tracker.init_state(str(frames))
    tracker.add_new_points_or_box(state, 0, 1, points=[[420, 250]], labels=[1])
    return [r.masks[0] for r in tracker.propagate_in_video(state, max_frame_num_to_track=3)]


@pytest.fixture(scope="module")
def masks(modelset):
    return {name: _track(modelset, backend) for name, backend in BACKENDS.items()}


@pytest.mark.parametrize("runtime", list(BACKENDS))
def test_tracks_four_frames(masks, runtime):
    got = masks[runtime]
    assert len(got) == 4
    for m in got:
        assert 0.01 < m.mean() < 0.99  # a mask, neither empty nor the whole frame


def test_the_runtimes_agree(masks):
    for a, b in zip(masks["onnxruntime"], masks["openvino"], strict=True):
        assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.98
