"""Frame sources: a folder of images, a video file, numpy arrays, a live iterator. Frames load lazily,
with a small cache, so a long video never sits in memory whole."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from engine.errors import FrameDecodeError, InputError
from engine.preprocess import check_frame

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class FrameSource:
    """Random access to RGB uint8 frames; `num_frames` is None for live sources."""

    num_frames: int | None
    height: int
    width: int
    cache_size = 4

    def __init__(self) -> None:
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError("a live source has no length")
        return self.num_frames

    def _load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def get(self, index: int) -> np.ndarray:
        if self.num_frames is not None and not 0 <= index < self.num_frames:
            raise InputError(f"frame index {index} is outside the video (0 to {self.num_frames - 1})")
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        frame = check_frame(self._load(index), f"frame {index}")
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(f"frame {index} is {frame.shape[1]} x {frame.shape[0]}, but the video is "
                             f"{self.width} x {self.height}: frames must not change size")
        self._cache[index] = frame
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        self._cache.clear()


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


class ImageFolderSource(FrameSource):
    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=_natural_key)
        if not self.files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.folder}")
        self.num_frames = len(self.files)
        first = self._load(0)
        self.height, self.width = first.shape[:2]

    def _load(self, index: int) -> np.ndarray:
        path = self.files[index]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise FrameDecodeError(f"cannot read image {path} (frame {index}): missing, corrupt or not an image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class VideoFileSource(FrameSource):
    """A video file through OpenCV; sequential reads are cheap, a backward step seeks."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(f"cannot open video {self.path}: not a video OpenCV can decode")
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self._next = 0
        ok, first = self._cap.read()
        if not ok or first is None:
            raise InputError(f"cannot decode the first frame of {self.path}: the file is empty or corrupt")
        self._next = 1
        self.height, self.width = first.shape[:2]
        self.num_frames = max(count, 1)
        self._cache[0] = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)

    def _load(self, index: int) -> np.ndarray:
        if index != self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, img = self._cap.read()
        if not ok or img is None:
            raise FrameDecodeError(f"cannot decode frame {index} of {self.path} (the header promises "
                             f"{self.num_frames} frames): the file is truncated or corrupt")
        self._next = index + 1
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        super().close()
        self._cap.release()


class ArraySource(FrameSource):
    """Frames already in memory: an N x H x W x 3 array or a sequence of H x W x 3 arrays."""

    def __init__(self, frames) -> None:
        super().__init__()
        self.frames = frames
        self.num_frames = len(frames)
        if self.num_frames == 0:
            raise InputError("the frame array is empty")
        first = check_frame(np.asarray(frames[0]), "frame 0")
        self.height, self.width = first.shape[:2]

    def _load(self, index: int) -> np.ndarray:
        return np.asarray(self.frames[index])


class LiveSource(FrameSource):
    """Frames pushed one at a time (camera, stream, generator); only recent frames are kept."""

    def __init__(self, height: int | None = None, width: int | None = None) -> None:
        super().__init__()
        self.num_frames = None
        self.height = height or 0
        self.width = width or 0
        self.count = 0

    def push(self, frame: np.ndarray) -> int:
        frame = check_frame(frame, f"frame {self.count}")
        if self.count == 0 and not self.height:
            self.height, self.width = frame.shape[:2]
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(f"frame {self.count} is {frame.shape[1]} x {frame.shape[0]}, but the stream is "
                             f"{self.width} x {self.height}: frames must not change size")
        index = self.count
        self._cache[index] = frame
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.count += 1
        return index

    def _load(self, index: int) -> np.ndarray:
        raise InputError(f"frame {index} of a live source is no longer available (only the last "
                         f"{self.cache_size} frames are kept)")


def open_video(video) -> FrameSource:
    """A path (folder or video file), a FrameSource, a numpy array N x H x W x 3 or a list of frames."""
    if isinstance(video, FrameSource):
        return video
    if isinstance(video, (str, Path)):
        path = Path(video)
        if path.is_dir():
            return ImageFolderSource(path)
        if not path.exists():
            raise InputError(f"video not found: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{path} is a single image; give a folder of frames or a video file")
        return VideoFileSource(path)
    if isinstance(video, np.ndarray):
        if video.ndim != 4:
            raise InputError(f"a frame array must be N x H x W x 3, got shape {video.shape}")
        return ArraySource(video)
    if isinstance(video, (list, tuple)):
        return ArraySource(video)
    raise InputError(f"cannot read frames from {type(video).__name__}; give a path, a folder, a numpy array "
                     f"or a FrameSource (use tracker.stream() for live iterators)")

