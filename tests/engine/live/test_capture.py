"""Capture threads: the newest frame without backlog, every frame in order, reconnects, states."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.errors import InputError
from engine.live import Backoff, Capture
from engine.live.readers import IterReader, PacedReader, Reader
from engine.video import ArraySource


def _frames(n: int, hw=(24, 32)) -> list[np.ndarray]:
    return [np.full((*hw, 3), i % 256, np.uint8) for i in range(n)]


def _timed(frames, interval: float):
    for f in frames:
        time.sleep(interval)
        yield f


def test_latest_keeps_only_the_newest_frame_and_counts_drops():
    source = _timed(_frames(400), 0.002)  # ~500 fps, far faster than the consumer below
    cap = Capture(None, policy="latest", opener=lambda: IterReader(source)).start()
    taken, ages = [], []
    for frame in cap.frames(timeout=0.5):
        ages.append(time.time() - frame.captured_at)
        taken.append(frame.frame_id)
        time.sleep(0.03)  # a tracker at ~30 fps
    assert cap.state == "stopped" and cap.frames_in == 400
    assert taken == sorted(set(taken)) and len(taken) < 100  # in order, most frames skipped
    assert cap.dropped == cap.frames_in - len(taken)
    # about one source interval old when taken (plus scheduling slack on a busy machine), however long it
    # runs; a read-per-frame loop would hand out frames ever older: ~0.03 s more each (1.5 s by the end)
    assert max(ages) < 0.1, ages


def test_every_frame_gives_every_frame_in_order():
    cap = Capture(None, policy="every_frame", queue_frames=2, opener=lambda: IterReader(_frames(50))).start()
    got = []
    for frame in cap.frames(timeout=0.5):
        got.append((frame.frame_id, int(frame.image[0, 0, 0])))
        time.sleep(0.002)
    assert got == [(i, i) for i in range(50)] and cap.dropped == 0


class _Flaky(Reader):
    """Fails to open `fail` times, then gives `n` frames and stops delivering (a stream that drops)."""

    opens = 0

    def __init__(self, fail: int, n: int) -> None:
        type(self).opens += 1
        if type(self).opens <= fail:
            raise ConnectionError(f"connection refused (attempt {type(self).opens})")
        self.left = n

    def read(self):
        if self.left == 0:
            return None
        self.left -= 1
        return np.zeros((8, 8, 3), np.uint8)


def test_a_failing_source_reconnects_with_backoff_and_keeps_counting_frame_ids():
    _Flaky.opens = 0
    states = set()
    cap = Capture(None, policy="every_frame", backoff=Backoff(0.01, 0.04), opener=lambda: _Flaky(2, 5))
    cap.on_frame(lambda: states.add(cap.state))
    cap.start()
    ids = []
    t0 = time.monotonic()
    while len(ids) < 12 and time.monotonic() - t0 < 5:
        f = cap.next_frame(timeout=0.5)
        if f is not None:
            ids.append(f.frame_id)
    cap.stop()
    assert ids == list(range(12))  # ids go on across reconnects: a prompt on a held frame keeps its meaning
    assert cap.reconnects >= 4 and "live" in states
    assert cap.last_error in ("connection refused (attempt 2)", "the stream stopped delivering frames")
    assert cap.state == "stopped"


def test_a_source_that_never_opens_stops_when_asked_not_to_retry():
    def refuse():
        raise ConnectionError("no route to camera")

    cap = Capture(None, opener=refuse, retry_first_open=False).start()
    assert list(cap.frames(timeout=0.2)) == []
    assert cap.state == "stopped" and cap.last_error == "no route to camera" and cap.reconnects == 0


def test_backoff_doubles_up_to_its_maximum():
    d = Backoff(0.5, 3.0).delays()
    assert [next(d) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_file_is_played_at_its_rate_once_or_looped():
    frames = _frames(10)
    once = Capture(None, policy="every_frame", opener=lambda: PacedReader(ArraySource(frames), 100.0, False)).start()
    t0 = time.monotonic()
    got = [f.frame_id for f in once.frames(timeout=0.5)]
    took = time.monotonic() - t0
    assert got == list(range(10)) and once.state == "stopped"
    assert 0.08 < took < 1.0  # 10 frames at 100 fps: about 0.1 s, not as fast as it decodes
    looped = Capture(None, policy="every_frame", opener=lambda: PacedReader(ArraySource(frames), 1000.0, True)).start()
    it = looped.frames(timeout=0.5)
    values = [int(next(it).image[0, 0, 0]) for _ in range(25)]
    looped.stop()
    assert values == [i % 10 for i in range(25)]


def test_a_new_frame_size_is_delivered_and_counted():
    """A camera switched to another stream profile: its frames come through at the new size (the session
    carries the objects over); before, every reopen failed on the new size, forever."""
    sizes = iter([(8, 8), (8, 8), (9, 8)])

    class Profile(Reader):  # a stream: one frame per connection, at the size the camera has now
        def __init__(self) -> None:
            self.frames = [np.zeros((*next(sizes), 3), np.uint8)]

        def read(self):
            return self.frames.pop() if self.frames else None

    cap = Capture(None, policy="every_frame", backoff=Backoff(0.01, 0.01), opener=Profile).start()
    got = []
    for f in cap.frames(timeout=0.3):
        got.append(f.image.shape[:2])
        if len(got) == 3:
            break
    cap.stop()
    assert got == [(8, 8), (8, 8), (9, 8)] and cap.size_changes == 1 and cap.hw == (9, 8)


class _OpensThenFails(Reader):
    """Opens, gives one frame and stops (a camera that accepts the connection, then drops it)."""

    opened_at: list[float] = []

    def __init__(self, frames: int = 1, interval: float = 0.0) -> None:
        type(self).opened_at.append(time.monotonic())
        self.left, self.interval = frames, interval

    def read(self):
        if self.left == 0:
            return None
        self.left -= 1
        time.sleep(self.interval)
        return np.zeros((8, 8, 3), np.uint8)


def _open_gaps(backoff: Backoff, reader, opens: int) -> list[float]:
    _OpensThenFails.opened_at = []
    cap = Capture(None, backoff=backoff, opener=reader).start()
    t0 = time.monotonic()
    while len(_OpensThenFails.opened_at) < opens and time.monotonic() - t0 < 10:
        cap.next_frame(timeout=0.05)
    cap.stop()
    t = _OpensThenFails.opened_at
    return [b - a for a, b in zip(t, t[1:], strict=False)][:opens - 1]


def test_a_source_that_opens_and_fails_at_once_backs_off_more_and_more(report):
    gaps = _open_gaps(Backoff(0.02, 0.32, stable_s=5), _OpensThenFails, 6)
    report(f"a source that opens and fails at once, Backoff(0.02, 0.32): waits {[round(g, 3) for g in gaps]} s")
    # waits 0.02, 0.04, 0.08, 0.16, 0.32: an open that delivered for less than stable_s is no reset
    assert gaps[-1] > 6 * gaps[0] and gaps[-1] >= 0.3, gaps


def test_a_source_that_ran_well_for_a_while_starts_its_backoff_again():
    gaps = _open_gaps(Backoff(0.02, 0.32, stable_s=0.05), lambda: _OpensThenFails(frames=8, interval=0.01), 5)
    # each open delivered frames for ~0.08 s >= stable_s: every failure is a new one, waited 0.02 s
    assert all(0.08 <= g < 0.25 for g in gaps), gaps


def test_a_corrupt_frame_of_a_file_is_skipped_and_a_file_played_once_ends(tmp_path):
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"{i:03d}.jpg")
    (tmp_path / "003.jpg").write_bytes((tmp_path / "003.jpg").read_bytes()[:40])  # truncated
    cap = Capture(str(tmp_path), policy="every_frame", loop=False, fps=200).start()
    got = [int(f.image[0, 0, 0]) for f in cap.frames(timeout=1.0)]
    assert cap.state == "stopped" and cap.reconnects == 0  # not a reopen from frame 0, and it ends
    assert len(got) == 5 and cap.bad_frames == 1 and cap.frames_in == 5
    assert [round(v / 40) for v in got] == [0, 1, 2, 4, 5]  # the damaged frame is never delivered as good
    assert "003.jpg" in cap.last_error and "skipped" in cap.last_error


def test_errors_and_names_carry_no_credentials():
    def refuse():
        raise InputError("cannot open rtsp://admin:hunter2@10.0.0.7/s1: connection refused")

    cap = Capture("rtsp://admin:hunter2@10.0.0.7/s1", opener=refuse, retry_first_open=False).start()
    assert list(cap.frames(timeout=0.2)) == []
    assert "hunter2" not in cap.last_error and "rtsp://***@10.0.0.7/s1" in cap.last_error
    assert "hunter2" not in cap.name


@pytest.mark.parametrize("url", ["camera:x", "camera:"])
def test_a_malformed_camera_is_refused_at_once(url):
    with pytest.raises(InputError, match="camera:N"):
        Capture(url)


def test_an_unknown_policy_is_refused():
    with pytest.raises(InputError, match="latest, every_frame"):
        Capture("camera:0", policy="newest")


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="per-thread priority is a Linux feature")
def test_a_capture_thread_runs_below_the_trackers_priority():
    """The live plan: a capture thread lowers its own priority (and the decoding threads it starts inherit it),
    so it fills the inference threads' gaps instead of preempting them; the tracker's thread keeps its own."""
    import os
    import threading

    from engine.live.plan import LivePlan

    seen = {}

    class Probe(Reader):
        finite = True

        def __init__(self) -> None:
            seen["capture"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            self.left = 1

        def read(self):
            self.left -= 1
            return np.zeros((8, 8, 3), np.uint8) if self.left >= 0 else None

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for nice in (5, 0):
        cap = Capture(None, opener=Probe, plan=LivePlan(capture_nice=nice)).start()
        list(cap.frames(timeout=0.5))
        assert seen["capture"] == min(mine + nice, 19), nice
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_a_streams_decoding_threads_are_asked_of_ffmpeg(monkeypatch):
    import cv2

    from engine.live import readers

    opened = {}

    class FakeCapture:
        def __init__(self, target, api, params):
            opened["params"] = dict(zip(params[::2], params[1::2], strict=True))

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return True

        def set(self, *a):
            return True

        def get(self, prop):
            return 25.0

    monkeypatch.setattr(readers.cv2, "VideoCapture", FakeCapture)
    readers.open_reader("rtsp://cam/s", decode_threads=1)
    assert opened["params"][cv2.CAP_PROP_N_THREADS] == 1
    readers.open_reader("rtsp://cam/s", decode_threads=0)  # 0: FFmpeg's own choice, nothing asked
    assert cv2.CAP_PROP_N_THREADS not in opened["params"]


def test_a_bgr_frame_is_converted_once_when_used():
    """Cameras decode to BGR; the conversion waits for the frame's first use (most are dropped unseen)."""
    from engine.live import CapturedFrame

    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    frame = CapturedFrame(0, 0.0, bgr, "BGR")
    rgb = frame.image
    assert rgb[0, 0].tolist() == [0, 0, 200] and frame.image is rgb  # converted once, then kept
    assert CapturedFrame(1, 0.0, bgr).image is bgr  # already RGB: the same array
