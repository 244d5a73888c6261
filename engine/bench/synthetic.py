"""A deterministic synthetic clip (moving shapes on a textured background) for benchmarks and demos."""

from __future__ import annotations

import cv2
import numpy as np

from engine.video import FrameSource


class SyntheticSource(FrameSource):
    """Frames rendered on demand: the same pixels for the same index, nothing kept but a small cache."""

    def __init__(self, num_frames: int = 64, height: int = 480, width: int = 640, seed: int = 0) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.height, self.width = height, width
        rng = np.random.default_rng(seed)
        self._background = cv2.GaussianBlur(rng.integers(40, 200, (height, width, 3), dtype=np.uint8), (0, 0), 6)
        self._shapes = [(rng.uniform(0.15, 0.85, 2), rng.uniform(-0.01, 0.01, 2), rng.integers(20, 70),
                         tuple(int(c) for c in rng.integers(0, 255, 3))) for _ in range(6)]

    def centre(self, shape: int, index: int) -> tuple[int, int]:
        start, speed, _, _ = self._shapes[shape]
        pos = np.abs(((start + speed * index) % 2.0) - 1.0) * 0.7 + 0.15  # bounce inside the frame
        return int(pos[0] * self.width), int(pos[1] * self.height)

    def _load(self, index: int) -> np.ndarray:
        frame = self._background.copy()
        for k, (_, _, radius, colour) in enumerate(self._shapes):
            x, y = self.centre(k, index)
            if k % 2:
                cv2.circle(frame, (x, y), int(radius), colour, -1)
            else:
                cv2.rectangle(frame, (x - int(radius), y - int(radius)), (x + int(radius), y + int(radius)), colour, -1)
        return frame


def write_clip(path: str, num_frames: int = 150, fps: float = 15.0, height: int = 240, width: int = 320,
               seed: int = 0) -> None:
    """The synthetic clip as a video file (MPEG-4, which every OpenCV build decodes): the file source of
    configs/serve-example.yaml (examples/shapes.mp4), made with
    `python -c "from engine.bench.synthetic import write_clip; write_clip('examples/shapes.mp4')"`."""
    src = SyntheticSource(num_frames, height, width, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write {path}: OpenCV has no MPEG-4 encoder here")
    try:
        for i in range(num_frames):
            writer.write(cv2.cvtColor(src.get(i), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
