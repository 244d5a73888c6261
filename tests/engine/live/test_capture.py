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


def test_a_frame_size_change_is_an_error_and_a_reconnect():
    def opener():
        return IterReader([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)])

    cap = Capture(None, policy="every_frame", backoff=Backoff(5, 5), opener=opener).start()
    first = cap.next_frame(timeout=2)
    t0 = time.monotonic()
    while cap.state != "reconnecting" and time.monotonic() - t0 < 2:
        time.sleep(0.01)
    cap.stop()
    assert first.frame_id == 0 and "changed frame size from 8 x 8 to 8 x 9" in cap.last_error


@pytest.mark.parametrize("url", ["camera:x", "camera:"])
def test_a_malformed_camera_is_refused_at_once(url):
    with pytest.raises(InputError, match="camera:N"):
        Capture(url)


def test_an_unknown_policy_is_refused():
    with pytest.raises(InputError, match="latest, every_frame"):
        Capture("camera:0", policy="newest")
