"""One capture thread per live source: it decodes continuously and hands the tracker the newest frame.

A tracker is slower than a camera (SAM 2.1-tiny at 1024 takes seconds a frame on a small CPU). Reading
one frame per tracked frame, as a plain `cap.read()` loop does, returns the oldest buffered frame, so
the lag grows until a buffer overflows. Here a thread reads as fast as the source delivers and keeps
only what the policy asks for:

- `latest` (live sources): the newest frame and its capture time; a frame replaced before the tracker
  took it is a drop, counted. Latency stays within one tracking time plus one source interval.
- `every_frame` (recordings): a small bounded queue; the reader waits for the tracker, so every frame is
  tracked in order and the results are `engine.track`'s.

A source that fails or ends is reopened with exponential backoff (a file played `once` stops instead);
frame ids go on counting across reconnects, so a prompt on a held frame keeps its meaning. The wait
starts again from its initial value only after an open that delivered frames for `Backoff.stable_s`: a
source that opens and fails at once is retried less and less often, not at the initial rate forever.

A source may change its frame size (a camera switched to another stream profile, usually seen as a
reconnect): frames of the new size are delivered as they come, counted in `size_changes`, and the
session that tracks them carries its objects over (engine.live.session). Errors and logs name a source
by its URL without credentials (engine.live.redact).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.live.plan import LivePlan
from engine.live.readers import Reader, camera_index, open_reader
from engine.live.redact import redact, redact_url

log = logging.getLogger("engine.live")

POLICIES = ("latest", "every_frame")
STATES = ("connecting", "live", "reconnecting", "stopped")


@dataclass(frozen=True)
class CapturedFrame:
    """A decoded frame with its place in the source: `frame_id` counts every frame the source gave (drops
    included), `captured_at` is the wall-clock time it was decoded (time.time()).

    `pixels` are as the decoder gave them; `image` is the frame in RGB. OpenCV decodes cameras and streams to
    BGR, and under `latest` most frames are dropped unseen, so the conversion (1.6 ms of CPU a 960 x 540
    frame, a third of what the capture costs) is made on first use of `image`, once, for the frames tracked."""

    frame_id: int
    captured_at: float
    pixels: np.ndarray  # H x W x 3 uint8, in `channels` order
    channels: str = "RGB"

    @cached_property
    def image(self) -> np.ndarray:
        """H x W x 3 RGB uint8."""
        if self.channels == "RGB":
            return self.pixels
        import cv2

        return cv2.cvtColor(self.pixels, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Backoff:
    """Waits between reopen attempts: initial, doubled after each failure, at most `max_s`; back to the
    initial wait after an open that delivered frames for at least `stable_s` seconds."""

    initial_s: float = 0.5
    max_s: float = 10.0
    stable_s: float = 10.0

    def delays(self) -> Iterator[float]:
        d = self.initial_s
        while True:
            yield d
            d = min(d * 2, self.max_s)


class Capture:
    """A live source read in its own thread. `next_frame()` gives the tracker what the policy keeps;
    `frames()` iterates them (the source a Python user hands to `Tracker.stream()`)."""

    def __init__(self, url: Any, policy: str = "latest", loop: bool = True, fps: float | None = None,
                 backoff: Backoff = Backoff(), queue_frames: int = 4, name: str | None = None,
                 opener: Callable[[], Reader] | None = None, retry_first_open: bool = True,
                 plan: LivePlan | None = None) -> None:
        if policy not in POLICIES:
            raise InputError(f"capture policy {policy!r} is not one of {', '.join(POLICIES)}")
        if isinstance(url, str) and url.startswith("camera:"):
            camera_index(url)  # a malformed camera name is an error now, not a reconnect loop
        self.retry_first_open = retry_first_open  # False: a source that never opens stops (a CLI run)
        self.url = url
        self.name = name or redact_url(url)
        self.policy = policy
        self.backoff = backoff
        self.plan = plan or LivePlan()  # how the capture thread shares the CPU with the tracker (engine.live.plan)
        self._open = opener or (lambda: open_reader(url, loop=loop, fps=fps, decode_threads=self.plan.decode_threads))
        self.state = "connecting"
        self.last_error: str | None = None
        self.frames_in = 0  # frames decoded, across reconnects: the next frame id
        self.dropped = 0  # latest: frames replaced before the tracker took them
        self.reconnects = 0
        self.size_changes = 0  # times the source's frame size changed (a new stream profile)
        self.bad_frames = 0  # frames of a file or folder that could not be decoded, skipped
        self.hw: tuple[int, int] | None = None
        self.source_fps: float | None = None  # what the source says of its rate, once opened
        self._cond = threading.Condition()
        self._latest: CapturedFrame | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_frames))
        self._stop = threading.Event()
        self._arrivals: deque[float] = deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._listeners: list[Callable[[], None]] = []
        self._bad_seen = 0

    # ------------------------------------------------------------------ control
    def start(self) -> Capture:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.state = "stopped"

    def on_frame(self, callback: Callable[[], None]) -> None:
        """Called (from the capture thread) after each frame, so a scheduler can wake up."""
        self._listeners.append(callback)

    @property
    def fps_in(self) -> float:
        a = list(self._arrivals)
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else 0.0

    @property
    def ended(self) -> bool:
        return self.state == "stopped"

    # ------------------------------------------------------------------ consumer side
    def next_frame(self, timeout: float | None = None) -> CapturedFrame | None:
        """The frame to track next: the newest one not yet taken (latest), or the next in order
        (every_frame). None when nothing arrived within `timeout` or the source has stopped."""
        if self.policy == "every_frame":
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:  # in slices, so a source that stops ends the wait
                try:
                    return self._queue.get(timeout=0.1) if timeout != 0 else self._queue.get_nowait()
                except queue.Empty:
                    if timeout == 0 or self.ended or (deadline is not None and time.monotonic() >= deadline):
                        return None
        with self._cond:
            if self._latest is None and timeout != 0:
                self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set() or self.ended,
                                    timeout=timeout)
            frame, self._latest = self._latest, None
            return frame

    def has_frame(self) -> bool:
        if self.policy == "every_frame":
            return not self._queue.empty()
        return self._latest is not None

    def frames(self, timeout: float = 1.0) -> Iterator[CapturedFrame]:
        """Frames as the policy keeps them, until the source stops (or forever for a live one)."""
        if not self._thread.is_alive() and self.state == "connecting":
            self.start()
        while not self._stop.is_set():
            frame = self.next_frame(timeout)
            if frame is not None:
                yield frame
            elif self.ended and not self.has_frame():
                return

    # ------------------------------------------------------------------ capture thread
    def _deliver(self, image: np.ndarray, channels: str = "RGB") -> None:
        frame = CapturedFrame(self.frames_in, time.time(), image, channels)
        self.frames_in += 1
        self._arrivals.append(time.monotonic())
        if self.policy == "every_frame":
            while not self._stop.is_set():  # wait for the tracker: no frame is lost
                try:
                    self._queue.put(frame, timeout=0.2)
                    break
                except queue.Full:
                    continue
        else:
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
                self._cond.notify_all()
        for callback in self._listeners:
            callback()

    def _run(self) -> None:
        self.plan.lower_this_thread()  # before opening: FFmpeg's decoding threads inherit the priority
        delays = self.backoff.delays()
        opened = False
        while not self._stop.is_set():
            reader = None
            first_at = last_at = None  # when this open delivered its first and last frame
            self._bad_seen = 0  # of this reader's skipped frames, those already counted
            try:
                reader = self._open()
                self.source_fps = reader.fps or self.source_fps
                opened = True
                self.state = "live"
                while not self._stop.is_set():
                    image = reader.read()
                    self._count_bad(reader)
                    if image is None:
                        break
                    self._check_size(image)
                    self._deliver(image, reader.channels)
                    last_at = time.monotonic()
                    first_at = first_at or last_at
                if self._stop.is_set():
                    break
                if reader.finite:  # a file played once (a looped file rewinds inside its reader)
                    log.info("source %s ended", self.name)
                    break
                self.last_error = "the stream stopped delivering frames"
            except Exception as exc:  # noqa: BLE001 - any failure of a source means: reopen it
                self.last_error = redact(str(exc) or type(exc).__name__)
                log.warning("source %s: %s", self.name, self.last_error)
            finally:
                if reader is not None:
                    self._count_bad(reader)
                    reader.close()
            if first_at is not None and last_at - first_at >= self.backoff.stable_s:
                delays = self.backoff.delays()  # it ran well for a while: this is a new failure, start over
            if self._stop.is_set() or (not opened and not self.retry_first_open):
                break
            self.state = "reconnecting"
            self.reconnects += 1
            if self._stop.wait(next(delays)):
                break
        self.state = "stopped"
        with self._cond:
            self._cond.notify_all()
        for callback in self._listeners:
            callback()

    def _check_size(self, image: np.ndarray) -> None:
        hw = image.shape[:2]
        if self.hw is not None and hw != self.hw:
            self.size_changes += 1
            log.warning("source %s: the frame size changed from %d x %d to %d x %d", self.name, self.hw[1],
                        self.hw[0], hw[1], hw[0])
        self.hw = hw

    def _count_bad(self, reader: Reader) -> None:
        """A file reader skips frames it cannot decode; they are counted here and said in last_error."""
        if reader.bad_frames > self._bad_seen:
            self.bad_frames += reader.bad_frames - self._bad_seen
            self._bad_seen = reader.bad_frames
            self.last_error = f"skipped a frame that cannot be decoded: {redact(reader.last_bad or '?')}"
            log.warning("source %s: %s", self.name, self.last_error)
