"""Tracker behaviour beyond parity: API contract, errors, bounded memory, streaming, no torch at run time."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendConfig
from engine.config import TrackerSettings
from engine.errors import InputError
from engine.modelset import ModelSet
from engine.stages import StageSet
from engine.tracker import FrameResult, Tracker
from tests.conftest import TEST_SIZE
from tests.engine.fakes import FakeStages


def _frames(n, h=48, w=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture
def fake_tracker(modelset):
    return Tracker(modelset, FakeStages(modelset))


@pytest.fixture(scope="module")
def real_tracker(modelset):
    return Tracker(modelset, StageSet.load(modelset, BackendConfig(name="openvino", precision="f32")))


def test_result_unpacks_like_the_reference(fake_tracker):
    state = fake_tracker.init_state(_frames(4))
    r = fake_tracker.add_new_points_or_box(state, 0, 5, points=[[10, 10]], labels=[1])
    assert isinstance(r, FrameResult)
    frame_idx, obj_ids, masks = r
    assert frame_idx == 0 and obj_ids == [5] and masks.shape == (1, 48, 64) and masks.dtype == bool
    assert r.low_res_logits.shape == (1, TEST_SIZE // 4, TEST_SIZE // 4)


def test_image_encoder_runs_once_per_frame_whatever_the_object_count(modelset):
    stages = FakeStages(modelset)
    tracker = Tracker(modelset, stages)
    state = tracker.init_state(_frames(6))
    for obj in (1, 2, 3):
        tracker.add_new_points_or_box(state, 0, obj, points=[[10 * obj, 10]], labels=[1])
    stages.calls.clear()
    results = list(tracker.propagate_in_video(state))
    assert [r.frame_idx for r in results] == list(range(6))
    assert stages.calls["image_encoder"] == 5  # frame 0 is prompted (features cached), 1..5 encoded once
    assert stages.calls["memory_attention"] == 15 and stages.calls["mask_decoder"] == 15


def test_offline_memory_keeps_every_frame_as_meta_does(modelset):
    """The default: every tracked frame's output stays, at the advertised bytes per stored frame."""
    tracker = Tracker(modelset, FakeStages(modelset))
    n = 60
    state = tracker.init_state(np.zeros((n, 32, 32, 3), np.uint8))
    tracker.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
    for _ in tracker.propagate_in_video(state):
        pass
    assert state.stored_frames() == n
    per_frame = tracker.bytes_per_stored_frame()
    bank = state.memory_bytes() - sum(a.nbytes for a in vars(state.cached[1]).values())
    assert bank == n * per_frame
    # a correction far behind the last tracked frame still finds that frame's neighbours in memory
    mem = tracker.planner.plan(state.objects[1].bank, 5, n, reverse=True)
    assert mem.memory_frames == [0, 11, 10, 9, 8, 7, 6]


def test_window_setting_drops_frames_out_of_reach(modelset):
    tracker = Tracker(modelset, FakeStages(modelset), TrackerSettings(offline_memory="window"))
    n = 60
    state = tracker.init_state(np.zeros((n, 32, 32, 3), np.uint8))
    tracker.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
    for _ in tracker.propagate_in_video(state):
        pass
    assert state.stored_frames() == tracker.planner.window + 2
    mem = tracker.planner.plan(state.objects[1].bank, 5, n, reverse=True)
    assert mem.memory_frames == [0]  # the documented departure: the far frames were dropped


def test_memory_bank_is_bounded_over_a_long_video(modelset):
    tracker = Tracker(modelset, FakeStages(modelset), TrackerSettings(offline_memory="window"))
    n = 400
    state = tracker.init_state(np.zeros((n, 32, 32, 3), np.uint8))
    tracker.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
    sizes, last = [], -1
    for r in tracker.propagate_in_video(state):
        sizes.append((state.stored_frames(), state.memory_bytes()))
        last = r.frame_idx
    assert last == n - 1
    window = tracker.planner.window
    assert max(s for s, _ in sizes) <= window + 2  # prompt + window + the current frame
    assert sizes[-1] == sizes[100]  # flat after warm-up


def test_errors(fake_tracker):
    state = fake_tracker.init_state(_frames(3))
    with pytest.raises(InputError, match="outside the video"):
        fake_tracker.add_new_points_or_box(state, 3, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(InputError, match="frame_idx must be an integer"):
        fake_tracker.add_new_points_or_box(state, 1.5, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(InputError, match="outside the 64 x 48 frame"):
        fake_tracker.add_new_points_or_box(state, 0, 1, points=[[100, 1]], labels=[1])
    with pytest.raises(InputError, match="needs points"):
        fake_tracker.add_new_points_or_box(state, 0, 1)
    with pytest.raises(InputError, match="no object has a prompt"):
        list(fake_tracker.propagate_in_video(state))
    with pytest.raises(InputError, match="unknown object id 7"):
        fake_tracker.clear_all_prompts_in_frame(state, 0, 7)
    with pytest.raises(InputError, match="cannot remove object id 9"):
        fake_tracker.remove_object(state, 9, strict=True)
    with pytest.raises(InputError, match="box must come first"):
        fake_tracker.add_new_points_or_box(state, 0, 1, box=[1, 1, 5, 5], clear_old_points=False)


def test_nan_from_a_stage_is_reported(modelset):
    class NanStages(FakeStages):
        def run(self, name, inputs, keep=()):
            out = super().run(name, inputs, keep)
            if name == "mask_decoder":
                out["masks"][:] = np.nan
            return out

    tracker = Tracker(modelset, NanStages(modelset))
    state = tracker.init_state(_frames(2))
    with pytest.raises(InputError, match="stage mask_decoder returned NaN or Inf in masks"):
        tracker.add_new_points_or_box(state, 0, 1, points=[[1, 1]], labels=[1])


def test_remove_clear_and_reset(fake_tracker):
    state = fake_tracker.init_state(_frames(5))
    fake_tracker.add_new_points_or_box(state, 0, 1, points=[[10, 10]], labels=[1])
    fake_tracker.add_new_points_or_box(state, 2, 2, points=[[20, 20]], labels=[1])
    ids, updated = fake_tracker.remove_object(state, 1)
    assert ids == [2] and updated[0].obj_ids == [2]
    r = fake_tracker.clear_all_prompts_in_frame(state, 2, 2)
    assert r.obj_ids == [2] and not r.masks.any()
    with pytest.raises(InputError, match="has no prompt on any frame"):
        list(fake_tracker.propagate_in_video(state))
    fake_tracker.reset_state(state)
    assert state.obj_ids == []


def test_object_added_after_tracking_began(real_tracker):
    frames = _frames(5, 64, 64)
    state = real_tracker.init_state(frames)
    real_tracker.add_new_points_or_box(state, 0, 1, points=[[20, 20]], labels=[1])
    first = list(real_tracker.propagate_in_video(state, max_frame_num_to_track=2))
    assert [r.obj_ids for r in first] == [[1]] * 3
    r = real_tracker.add_new_points_or_box(state, 2, 2, points=[[40, 40]], labels=[1])
    assert r.obj_ids == [1, 2]
    later = list(real_tracker.propagate_in_video(state, start_frame_idx=2))
    assert [r.frame_idx for r in later] == [2, 3, 4] and all(r.obj_ids == [1, 2] for r in later)


def test_float32_memory_is_close_to_bfloat16(modelset):
    frames = _frames(4, 64, 64)
    out = {}
    for dtype in ("bfloat16", "float32"):
        tracker = Tracker(modelset, StageSet.load(modelset, BackendConfig(name="onnxruntime")),
                          TrackerSettings(memory_dtype=dtype))
        state = tracker.init_state(frames)
        tracker.add_new_points_or_box(state, 0, 1, points=[[30, 30]], labels=[1])
        out[dtype] = [r.low_res_logits for r in tracker.propagate_in_video(state)]
        assert state.objects[1].bank.cond[0].maskmem.dtype == (np.uint16 if dtype == "bfloat16" else np.float32)
    diff = max(np.abs(a - b).max() for a, b in zip(out["bfloat16"], out["float32"], strict=True))
    assert 0 < diff < 1.0


def test_stream_tracks_and_takes_prompts_any_time(modelset):
    tracker = Tracker(modelset, FakeStages(modelset))
    stream = tracker.stream()
    frames = _frames(30, 32, 32)
    assert stream.track(frames[0]).obj_ids == []
    stream.add_new_points_or_box(1, points=[[5, 5]], labels=[1])
    sizes = []
    for i in range(1, 30):
        if i == 10:
            stream.add_new_points_or_box(2, box=[2, 2, 20, 20])  # a new object mid-stream
        if i == 15:
            stream.add_new_points_or_box(1, points=[[8, 8]], labels=[0])  # a correction
        r = stream.track(frames[i])
        sizes.append(stream.state.stored_frames())
        assert r.frame_idx == i
    assert r.obj_ids == [1, 2] and r.masks.shape == (2, 32, 32)
    assert 14 in stream.state.objects[1].bank.cond  # a correction on the current frame (14) conditions tracking


def test_stream_memory_stays_flat(modelset):
    tracker = Tracker(modelset, FakeStages(modelset))
    stream = tracker.stream()
    frame = np.zeros((32, 32, 3), np.uint8)
    stream.track(frame)
    stream.add_new_points_or_box(1, points=[[5, 5]], labels=[1])
    sizes = []
    for _ in range(300):
        stream.track(frame)
        sizes.append((stream.state.stored_frames(), stream.memory_bytes(), len(stream.state.objects[1].tracked)))
    assert sizes[50] == sizes[-1]


def test_stream_prompt_before_any_frame(fake_tracker):
    with pytest.raises(InputError, match="no frame yet"):
        fake_tracker.stream().add_new_points_or_box(1, points=[[1, 1]], labels=[1])


def test_no_torch_at_run_time(modelset_dir):
    code = f"""
import sys, numpy as np
from backends.base import BackendConfig
from engine.modelset import ModelSet
from engine.stages import StageSet
from engine.tracker import Tracker
ms = ModelSet.load({str(modelset_dir)!r})
tracker = Tracker(ms, StageSet.load(ms, BackendConfig(name="onnxruntime")))
state = tracker.init_state(np.zeros((2, 32, 32, 3), np.uint8))
tracker.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
list(tracker.propagate_in_video(state))
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sam2', 'torchvision'))
print('IMPORTED', bad)
sys.exit(1 if bad else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_from_config(modelset_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime}}\ntracker: {{memory_frames: 3}}\n")
    tracker = Tracker.from_config(cfg)
    assert tracker.planner.recent == 2 and tracker.describe()["stages"]["image_encoder"]["runtime"] == "onnxruntime"
    assert isinstance(tracker.modelset, ModelSet)


class _FailingDecoder(FakeStages):
    """Stand-in stages whose mask decoder fails `fail` times (a device lost mid-prompt)."""

    def __init__(self, modelset, fail: int) -> None:
        super().__init__(modelset)
        self.fail = fail

    def run(self, name, inputs, keep=()):
        if name == "mask_decoder" and self.fail > 0:
            self.fail -= 1
            raise RuntimeError("device lost")
        return super().run(name, inputs, keep)


def test_a_prompt_that_fails_in_the_model_leaves_the_state_as_it_was(modelset):
    """A new object whose first prompt fails is not left without a conditioning frame (every later frame
    would fail on it); a failed correction keeps the object's earlier prompt and output."""
    stages = _FailingDecoder(modelset, fail=1)
    stream = Tracker(modelset, stages).stream()
    frame = np.full((48, 64, 3), 90, np.uint8)
    stream.track(frame)
    with pytest.raises(RuntimeError, match="device lost"):
        stream.add_new_points_or_box(1, points=[[10, 10]], labels=[1])
    assert stream.obj_ids == []
    assert stream.track(frame).obj_ids == []  # tracking goes on
    stream.add_new_points_or_box(2, box=[5, 5, 40, 30])
    before = stream.state.objects[2]
    kept = (dict(before.points), dict(before.bank.temp_cond))
    stages.fail = 1
    with pytest.raises(RuntimeError, match="device lost"):
        stream.add_new_points_or_box(2, points=[[20, 20]], labels=[0])
    assert (before.points, before.bank.temp_cond) == kept
    assert stream.track(frame).obj_ids == [2]
