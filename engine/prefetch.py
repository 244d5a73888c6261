"""The next frame's model input, prepared in a background thread while the stages run on this one.

Decoding a frame and resizing it as Meta's loader does (Pillow bicubic with antialiasing) takes 6-26 ms
of host time at 512-1024. On a GPU that is longer than the stages themselves, so propagation asks for
the frame it will track next before running the current one, and a worker thread decodes and resizes
it meanwhile. The input is the same array the serial path makes (the same function on the same
source); a frame that fails to decode raises when the tracker asks for it, as without prefetching.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from engine.preprocess import frame_to_input
from engine.video import FrameSource


class FramePrefetcher:
    """Every frame's model input comes from here. `request(i)` starts preparing frame i in the worker (a
    no-op unless `ahead`); `get(i)` returns it, prepared or made now."""

    def __init__(self, source: FrameSource, image_size: int, ahead: bool = True) -> None:
        self.source = source
        self.image_size = image_size
        self.ahead = ahead
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[int, Future] | None = None
        self.hits = 0  # frames that were ready (or in progress) when the tracker asked for them

    def _prepare(self, frame_idx: int) -> np.ndarray:
        return frame_to_input(self.source.get(frame_idx), self.image_size)

    def request(self, frame_idx: int) -> None:
        if not self.ahead or (self._pending is not None and self._pending[0] == frame_idx):
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-frame-prefetch")
        self._pending = (frame_idx, self._pool.submit(self._prepare, frame_idx))

    def get(self, frame_idx: int) -> np.ndarray:
        if self._pending is not None and self._pending[0] == frame_idx:
            _, future = self._pending
            self._pending = None
            self.hits += 1
            return future.result()
        return self._prepare(frame_idx)

    def close(self) -> None:
        self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
