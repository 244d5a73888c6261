"""Live sessions: prompts on held frames, and the semantics against Meta's stream mode.

Mechanics run on stand-in stages; what must equal the engine's own offline results (every_frame on a
file, a prompt on an older held frame) runs the real exported model.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from engine.bench.synthetic import SyntheticSource
from engine.config import parse_config
from engine.errors import InputError
from engine.live import Capture, CapturedFrame, FrameNotHeldError, LiveSession, ObjectLimitError
from engine.stages import StageSet
from engine.tracker import Tracker
from tests.engine.fakes import FakeStages


@pytest.fixture
def fake_tracker(modelset):
    return Tracker(modelset, FakeStages(modelset))


@pytest.fixture(scope="module")
def ort_tracker(modelset):
    cfg = parse_config({"backend": {"name": "onnxruntime", "device": "cpu"}})
    return Tracker(modelset, StageSet.load(modelset, cfg), cfg.tracker)


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    src = SyntheticSource(num_frames=n, height=h, width=w)
    return [src.get(i) for i in range(n)]


def _feed(session: LiveSession, frames, ids):
    return [session.track(CapturedFrame(i, time.time(), frames[k])) for k, i in enumerate(ids)]


def test_a_prompt_on_a_held_frame_tracks_from_the_next_frame(fake_tracker):
    s = LiveSession(fake_tracker, "cam", held_frames=3, max_objects=2)
    frames = _frames(8)
    results = _feed(s, frames, [10, 13, 17, 20])  # capture ids: frames between were dropped
    assert [r.objects for r in results] == [[], [], [], []] and s.held_frame_ids() == [13, 17, 20]
    answer = s.prompt(17, 1, points=[[20, 20]], labels=[1])
    assert answer.kind == "prompt" and answer.frame_id == 17 and answer.objects[0].obj_id == 1
    assert answer.objects[0].mask.shape == (48, 64)
    after = _feed(s, frames[4:], [22])[0]
    assert after.frame_id == 22 and [o.obj_id for o in after.objects] == [1]
    # the object's conditioning frame is the prompted one (stream index 2), its memory grows from there
    assert 2 in s.stream.state.objects[1].bank.cond and s.tracked == 5


def test_a_frame_no_longer_held_is_refused_naming_the_held_frames(fake_tracker):
    s = LiveSession(fake_tracker, "door", held_frames=2)
    _feed(s, _frames(4), [0, 1, 2, 3])
    with pytest.raises(FrameNotHeldError, match=r"frame 1 of source door is not held; held: frames 2 to 3"):
        s.prompt(1, 1, points=[[5, 5]], labels=[1])
    with pytest.raises(FrameNotHeldError, match="held: frames 2 to 3"):
        s.frame(0)
    empty = LiveSession(fake_tracker, "new")
    with pytest.raises(FrameNotHeldError, match="held: none yet"):
        empty.prompt(0, 1, points=[[5, 5]], labels=[1])


def test_object_limit_corrections_and_removal(fake_tracker):
    s = LiveSession(fake_tracker, "cam", held_frames=4, max_objects=1)
    frames = _frames(6)
    _feed(s, frames, [0, 1])
    s.prompt(1, 1, box=[5, 5, 30, 30])
    with pytest.raises(ObjectLimitError, match="already tracks 1 objects"):
        s.prompt(1, 2, points=[[5, 5]], labels=[1])
    _feed(s, frames[2:], [2, 3])
    # a correction on a tracked frame becomes a conditioning frame (add_all_frames_to_correct_as_cond)
    s.prompt(3, 1, points=[[10, 10]], labels=[0])
    _feed(s, frames[4:], [4])
    assert 3 in s.stream.state.objects[1].bank.cond  # stream index 3 = capture id 3
    with pytest.raises(InputError, match="a mask prompt cannot be combined"):
        s.prompt(4, 1, points=[[5, 5]], labels=[1], mask=np.ones((48, 64), bool))
    s.remove_object(1)
    assert s.obj_ids == [] and _feed(s, frames[5:], [5])[0].objects == []
    with pytest.raises(InputError, match="cannot remove object id 1: it does not exist"):
        s.remove_object(1)


def test_a_new_object_on_an_older_held_frame_is_decoded_from_that_frame(ort_tracker, clips):
    """A new object's prompt on a held frame is a first conditioning frame there: exactly what a session
    that had only that frame gives (its image, no memory), however many frames came after it."""
    files = sorted(clips["davis-small"].glob("*.jpg"))[:5]
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    s = LiveSession(ort_tracker, "cam", held_frames=5)
    _feed(s, frames, range(5))
    late = s.prompt(1, 1, points=[[120, 90]], labels=[1])
    fresh = LiveSession(ort_tracker, "fresh", held_frames=1)
    _feed(fresh, frames[1:2], [1])
    alone = fresh.prompt(1, 1, points=[[120, 90]], labels=[1])
    assert np.array_equal(late.objects[0].mask, alone.objects[0].mask)
    assert late.objects[0].score == pytest.approx(alone.objects[0].score, abs=1e-6)
    assert 0.02 < late.objects[0].mask.mean() < 0.98  # a mask, not an empty or full frame


def test_every_frame_on_a_folder_gives_engine_track_masks(ort_tracker, modelset_dir, clips, tmp_path):
    """`realtime: every_frame` on a recording: the live session's masks are engine.track's, frame for frame
    (a prompt on the first frame; the stream's bounded memory never drops what the rules select). The clip has
    16 frames: a stream does not know a video's length and spaces pointer positions over the model's 16
    pointers, as Meta's predictor does for videos of at least 16 frames (a shorter one moves logits ~1e-5)."""
    from engine.track import main as track_main

    folder = tmp_path / "clip"
    folder.mkdir()
    for f in sorted(clips["davis-small"].glob("*.jpg"))[:16]:
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = tmp_path / "ort.yaml"
    cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    assert track_main(["--config", str(cfg), "--video", str(folder), "--point", "120,90", "--out",
                       str(tmp_path / "out"), "--no-video", "--quiet"]) == 0
    cap = Capture(str(folder), policy="every_frame", loop=False, fps=500).start()
    s = LiveSession(ort_tracker, "rec")
    n = 0
    for frame in cap.frames(timeout=2):
        result = s.track(frame)
        if frame.frame_id == 0:
            result = s.prompt(0, 1, points=[[120, 90]], labels=[1])
        want = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{frame.frame_id:05d}.png")) == 1
        assert np.array_equal(result.objects[0].mask, want), f"frame {frame.frame_id}"
        n += 1
    assert n == 16 and cap.dropped == 0


def test_a_new_frame_size_carries_every_object_over_under_its_id(fake_tracker):
    """A camera switched to another profile: the session starts a new stream on the first frame of the new
    size, each object prompted there with its last mask, resized; tracking goes on with the same ids."""
    s = LiveSession(fake_tracker, "cam", held_frames=3, max_objects=4)
    big, small = _frames(4, 48, 64), _frames(4, 30, 40)
    _feed(s, big, [0, 1])
    s.prompt(1, 1, box=[5, 5, 40, 30])
    s.prompt(1, 2, points=[[30, 20]], labels=[1])
    before = _feed(s, big[2:], [2])[0]
    want = {o.obj_id: o.mask for o in before.objects}
    changed = _feed(s, small, [3])[0]  # the first frame of the new size
    assert s.size_changes == 1 and s.video_hw == (30, 40) and s.obj_ids == [1, 2]
    assert [o.obj_id for o in changed.objects] == [1, 2] and changed.objects[0].mask.shape == (30, 40)
    for o in changed.objects:  # the carried mask: the old one at the new size (nearest neighbour)
        import cv2

        resized = cv2.resize(want[o.obj_id].astype(np.uint8), (40, 30), interpolation=cv2.INTER_NEAREST) > 0
        assert o.mask.any() and np.array_equal(o.mask, resized)
    assert 0 in s.stream.state.objects[1].bank.temp_cond  # a conditioning frame of the new stream
    after = _feed(s, small[1:], [4, 5])
    assert all([o.obj_id for o in r.objects] == [1, 2] and r.objects[0].mask.shape == (30, 40) for r in after)
    assert s.held_frame_ids() == [3, 4, 5]
    with pytest.raises(FrameNotHeldError):  # frames of the old size are not held any more
        s.prompt(2, 1, points=[[5, 5]], labels=[1])


def test_an_object_with_no_mask_to_carry_is_dropped_and_said(modelset, caplog):
    absent = Tracker(modelset, FakeStages(modelset, present=False))  # every mask empty
    s = LiveSession(absent, "cam", held_frames=3)
    _feed(s, _frames(2, 48, 64), [0])
    s.prompt(0, 7, points=[[5, 5]], labels=[1])
    with caplog.at_level("WARNING", logger="engine.live"):
        result = _feed(s, _frames(2, 30, 40), [1])[0]
    assert s.obj_ids == [] and result.objects == [] and s.dropped_on_resize == [7]
    assert "objects [7] dropped (no mask to carry)" in caplog.text
