"""What a capture thread reads from: a camera or stream through OpenCV, a file or folder played at its
own rate, or a Python iterable of frames. `read()` returns the next RGB frame, or None when the source
has ended (a file played once) or stopped delivering (a stream: the capture reconnects)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.errors import FrameDecodeError, InputError
from engine.live.redact import redact_url
from engine.video import FrameSource, VideoFileSource, is_url, open_video

DEFAULT_FOLDER_FPS = 25.0  # a frame folder says nothing of its rate


class Reader:
    finite = False  # True: None from read() means the source is done (not: reconnect)
    fps: float | None = None
    channels = "RGB"  # the order read() gives; "BGR": converted where a frame is used (CapturedFrame.image)
    bad_frames = 0  # frames of a file or folder that could not be decoded and were skipped
    last_bad: str | None = None  # what the last of them said

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def camera_index(url: str) -> int:
    index = url.split(":", 1)[1]
    if not index.isdigit():
        raise InputError(f"source {url!r}: a camera is camera:N with N a number")
    return int(index)


def is_stream_url(url: str) -> bool:
    """A camera (camera:N) or a stream by URL, read live, as opposed to a file or folder played back."""
    return url.startswith("camera:") or is_url(url)


class OpenCvReader(Reader):
    """A camera (camera:N), an RTSP stream, an HTTP(S) MJPEG stream or an HLS playlist, through OpenCV's
    FFmpeg. Its own buffering is kept to one frame where the backend allows it. Frames come in OpenCV's BGR:
    the capture converts only those it hands on (most of a live source's frames are dropped unseen)."""

    channels = "BGR"

    def __init__(self, url: str, open_timeout_s: float = 10.0, decode_threads: int = 0) -> None:
        target: Any = camera_index(url) if url.startswith("camera:") else url
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000)]
        if decode_threads > 0:  # FFmpeg's decoding threads (0: its choice, one per core)
            params += [cv2.CAP_PROP_N_THREADS, int(decode_threads)]
        self.cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not self.cap.isOpened():
            raise InputError(f"cannot open {redact_url(url)}: no such camera, or the stream cannot be reached or "
                             f"decoded")
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or None

    def read(self) -> np.ndarray | None:
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        return bgr

    def close(self) -> None:
        self.cap.release()


class PacedReader(Reader):
    """Frames of a video file, a frame folder or an array, delivered at `fps` as a camera would; `loop`
    starts again at the end, otherwise the source ends.

    A frame that cannot be decoded (a truncated JPEG, a damaged stretch of a video) is skipped, counted in
    `bad_frames` and named in `last_bad`: it is never delivered as good, and playback goes on from the next
    frame (a reopen would start again at frame 0, and a file played once would never end). A whole pass
    without one good frame is an error, so a source that is all damage backs off instead of spinning.
    """

    def __init__(self, source: FrameSource, fps: float | None, loop: bool, owned: bool = True) -> None:
        self.source = source
        self.owned = owned  # a FrameSource the caller gave stays open for the next reconnect
        own = getattr(source, "fps", None) if isinstance(source, VideoFileSource) else None
        self.fps = float(fps or own or DEFAULT_FOLDER_FPS)
        self.loop = loop
        self.finite = not loop
        self.index = 0
        self._t0: float | None = None
        self._played = 0

    def read(self) -> np.ndarray | None:
        n = self.source.num_frames or 0
        failed_in_a_row = 0
        while True:
            if self.index >= n:
                if not self.loop:
                    return None
                self.index = 0
            if self._t0 is None:
                self._t0 = time.monotonic()
            due = self._t0 + self._played / self.fps
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            index = self.index
            self.index += 1
            self._played += 1  # a skipped frame keeps its slot in time, as a camera's lost frame would
            try:
                return self.source.get(index)
            except FrameDecodeError as exc:
                self.bad_frames += 1
                self.last_bad = str(exc)
                failed_in_a_row += 1
                if failed_in_a_row >= max(n, 1):
                    raise InputError(f"no frame of {n} could be decoded ({exc})") from exc

    def close(self) -> None:
        if self.owned:
            self.source.close()


class IterReader(Reader):
    """Frames from a Python iterable (a generator wrapping a camera SDK, a list): as fast as it yields."""

    finite = True

    def __init__(self, frames: Iterable[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(frames)

    def read(self) -> np.ndarray | None:
        return next(self._it, None)


def open_reader(url: Any, loop: bool = True, fps: float | None = None, decode_threads: int = 0) -> Reader:
    """camera:N, rtsp://, http(s):// (MJPEG, HLS) -> OpenCV; a video file or frame folder -> paced playback;
    anything iterable -> its frames."""
    if isinstance(url, (str, Path)):
        text = str(url)
        if isinstance(url, str) and is_stream_url(text):
            return OpenCvReader(text, decode_threads=decode_threads)
        return PacedReader(open_video(Path(text)), fps, loop)
    if isinstance(url, FrameSource):
        return PacedReader(url, fps, loop, owned=False)
    if isinstance(url, Iterable):
        return IterReader(url)
    raise InputError(f"cannot capture from {type(url).__name__}: give camera:N, a stream URL, a video file, a frame "
                     f"folder or an iterable of frames")
