"""SAMURAI's policy without a model: its Kalman filter, its mask choice, its memory rule, bounded memory on
a 10,000-frame stream, and its config keys."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import TrackerSettings, parse_config
from engine.errors import ConfigError
from engine.memory import FrameOutput, ObjectMemory
from engine.policies.samurai import BoxKalman, SamuraiPolicy, SamuraiSettings, Track, to_xyah, to_xyxy
from engine.state import ObjectState


class Rules:
    num_maskmem = 7
    max_obj_ptrs_in_encoder = 16
    pred_obj_scores = True
    soft_no_obj_ptr = True
    fixed_no_obj_ptr = True
    use_multimask_token_for_obj_ptr = True
    image_size = 64


def test_the_filter_follows_a_box_moving_at_constant_speed():
    kf = BoxKalman()
    mean, cov = kf.initiate(to_xyah([10, 10, 30, 50]))
    for step in range(1, 30):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, to_xyah([10 + 3 * step, 10, 30 + 3 * step, 50]))
    predicted, _ = kf.predict(mean, cov)
    assert to_xyxy(predicted) == pytest.approx([10 + 3 * 30, 10, 30 + 3 * 30, 50], abs=0.5)
    assert predicted[4] == pytest.approx(3.0, abs=0.05)  # its x velocity, pixels a frame
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)


def _outputs(boxes: list[tuple[int, int, int, int]], ious: list[float], score: float = 1.0) -> dict:
    masks = np.full((1, 4, 16, 16), -5.0, np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes, 1):
        masks[0, k, y0:y1, x0:x1] = 5.0
    return {"masks": masks, "iou": np.array([[0.0, *ious]], np.float32),
            "obj_ptr": np.arange(4 * 8, dtype=np.float32).reshape(1, 4, 8), "object_score": np.array([[score]])}


def test_once_stable_the_candidate_nearest_the_filter_s_box_wins_over_a_higher_predicted_iou():
    policy = SamuraiPolicy(Rules(), SamuraiSettings(stable_frames_threshold=2, kf_score_weight=0.5), 64)
    obj = ObjectState(1)
    no_ptr = np.zeros(8, np.float32)
    near, far = (2, 2, 6, 6), (9, 9, 15, 15)
    for _ in range(3):  # the track settles on the box near the corner
        d = policy.select(_outputs([near, far, far], [0.9, 0.5, 0.5]), True, obj, no_ptr)
        assert d.candidate == 1
    d = policy.select(_outputs([far, near, far], [0.8, 0.6, 0.6]), True, obj, no_ptr)
    assert d.candidate == 2 and d.kf_score > 0.5 and obj.policy_state.overruled == 1  # Meta's rule: candidate 1
    assert np.allclose(d.obj_ptr, np.arange(16, 24) / (1 + np.exp(-1.0)))  # its token's pointer, scaled by sigmoid(score)


def test_an_object_below_the_appearing_threshold_has_an_empty_mask():
    policy = SamuraiPolicy(Rules(), SamuraiSettings(min_obj_score_logits=-1.0), 64)
    obj = ObjectState(1)
    present = policy.select(_outputs([(2, 2, 6, 6)] * 3, [0.9, 0.5, 0.5], score=-0.5), True, obj, np.zeros(8))
    absent = policy.select(_outputs([(2, 2, 6, 6)] * 3, [0.9, 0.5, 0.5], score=-1.5), True, obj, np.zeros(8))
    assert (present.low_res > 0).any() and not (absent.low_res > 0).any()  # Meta's rule would empty both


def _bank(scores: dict[int, tuple[float, float, float | None]]) -> ObjectMemory:
    bank = ObjectMemory()
    for t, (iou, obj, kf) in scores.items():
        bank.non_cond[t] = FrameOutput(np.zeros((4, 4), np.float32), np.zeros(8, np.float32), obj,
                                       maskmem=np.zeros(1), iou=iou, kf_score=kf)
    return bank


def test_memory_keeps_the_newest_frames_that_pass_every_threshold_and_always_the_last():
    policy = SamuraiPolicy(Rules(), SamuraiSettings(memory_bank_iou_threshold=0.5,
                                                    memory_bank_obj_score_threshold=0.0,
                                                    memory_bank_kf_score_threshold=0.2), 64)
    good, bad_iou, absent, bad_kf = (0.9, 1.0, None), (0.4, 1.0, None), (0.9, -1.0, None), (0.9, 1.0, 0.1)
    scores = {t: good for t in range(1, 30)}
    scores.update({29: bad_iou, 27: absent, 25: bad_kf, 24: (0.9, 1.0, 0.5)})
    frames = policy.memory_frames(_bank(scores), 30)
    assert frames == [22, 23, 24, 26, 28, 29]  # the newest candidates and frame 29 (the previous): six memories
    # the reference scans back to frame 2: frame 1 is never a candidate (only as the previous frame)
    assert policy.memory_frames(_bank({1: good, 2: good}), 3) == [2]
    assert policy.memory_frames(_bank({1: good}), 2) == [1]


def test_samurai_keys_are_checked_and_need_the_policy():
    cfg = parse_config({"tracker": {"policy": "samurai", "samurai": {"kf_score_weight": 0.5}}})
    assert cfg.tracker.policy == "samurai" and cfg.tracker.samurai.kf_score_weight == 0.5
    with pytest.raises(ConfigError, match="tracker.samurai.kf_score_weight"):
        parse_config({"tracker": {"policy": "samurai", "samurai": {"kf_score_weight": 2}}})
    with pytest.raises(ConfigError, match="tracker.samurai.stable_frame"):
        parse_config({"tracker": {"policy": "samurai", "samurai": {"stable_frame": 3}}})
    with pytest.raises(ConfigError, match="need tracker.policy: samurai"):
        parse_config({"tracker": {"samurai": {"kf_score_weight": 0.5}}})
    with pytest.raises(ConfigError, match="tracker.policy"):
        parse_config({"tracker": {"policy": "samurai2"}})


def test_a_samurai_stream_over_10000_frames_keeps_memory_flat(modelset):
    """The stream's memory under this policy (which can reach back past Meta's window) stays bounded: the
    stage models are stand-ins with the real shapes; everything else is the real code."""
    from engine.tracker import Tracker
    from tests.engine.fakes import FakeStages

    tracker = Tracker(modelset, FakeStages(modelset), TrackerSettings(policy="samurai"))
    stream = tracker.stream()
    frames = [np.full((48, 64, 3), v, np.uint8) for v in range(0, 250, 10)]
    stored = []
    for i in range(10_000):
        stream.track(frames[i % len(frames)])
        if i == 10:
            stream.add_new_points_or_box(1, box=[5, 5, 40, 40])
        if i % 1000 == 999:
            stored.append((stream.state.stored_frames(), stream.memory_bytes()))
    assert len(set(stored[1:])) == 1, stored  # flat after the first thousand
    assert isinstance(stream.state.objects[1].policy_state, Track)
