"""Frame sources: a folder of images, a video file, numpy arrays, a live iterator. Frames load lazily,
with a small cache, so a long video never sits in memory whole."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

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
        # the tracker's prefetch thread reads the next frame while the caller may read one (overlays):
        # decoders and the cache are not thread-safe, so reads take turns
        self._lock = threading.RLock()

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError("a live source has no length")
        return self.num_frames

    def _load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def get(self, index: int) -> np.ndarray:
        if self.num_frames is not None and not 0 <= index < self.num_frames:
            raise InputError(f"frame index {index} is outside the video (0 to {self.num_frames - 1})")
        with self._lock:
            return self._get(index)

    def _get(self, index: int) -> np.ndarray:
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
    """A folder of frames, decoded with Pillow as Meta's JPEG-folder loader does (so both see the same
    pixels). A file Pillow cannot decode completely (truncated, broken data stream) is a FrameDecodeError
    naming the file and the frame, never a partly grey frame."""

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
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except FileNotFoundError as exc:
            raise FrameDecodeError(f"cannot read image {path} (frame {index}): the file is missing") from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            # Pillow reports truncated files and broken data streams as OSError; it never guesses pixels
            raise FrameDecodeError(f"cannot decode image {path} (frame {index}): {exc}; the file is truncated, "
                                   f"corrupt or not an image") from exc


class VideoFileSource(FrameSource):
    """A video file through OpenCV.

    Forward reads decode sequentially. Reading backwards (reverse propagation) decodes a chunk of frames
    forward from one seek and serves it from memory, so each frame costs about one decode instead of a
    seek (which decodes from the previous key frame: a whole GOP) per frame. Frames are exactly those a
    forward decode returns. The chunk's size follows `chunk_bytes`.
    """

    chunk_bytes = 256 << 20

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        url = isinstance(path, str) and is_url(path)
        self.path = path if url else Path(path)  # a URL stays a string: Path would fold its "//"
        if not url and not self.path.is_file():
            raise InputError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(f"cannot open video {self.path}: not a video OpenCV can decode"
                             + (" (or the URL cannot be reached)" if url else ""))
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if url and count <= 0:
            self._cap.release()
            raise InputError(f"{path} does not say how many frames it has (a live stream?): track live "
                             f"streams with engine.track or tracker.stream(), video files offline")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.decoded = 0  # frames decoded, and seeks made: what reading has cost so far
        self.seeks = 0
        self._next = 0
        first = self._read(0)
        self.height, self.width = first.shape[:2]
        self.num_frames = max(count, 1)
        self._cache[0] = first
        self.chunk_frames = int(np.clip(self.chunk_bytes // first.nbytes, 8, 512))
        self._chunk: dict[int, np.ndarray] = {}

    def _read(self, index: int) -> np.ndarray:
        """Decode the frame at the decoder's position, which must be `index`."""
        ok, img = self._cap.read()
        self.decoded += 1
        if not ok or img is None:
            raise FrameDecodeError(f"cannot decode frame {index} of {self.path} (the header promises "
                                   f"{getattr(self, 'num_frames', '?')} frames): the file is truncated or corrupt")
        self._next = index + 1
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def _seek(self, index: int) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self.seeks += 1
        self._next = index

    def _load(self, index: int) -> np.ndarray:
        if index in self._chunk:
            return self._chunk[index]
        if index < self._next:  # backwards: decode the chunk that ends here, forward from one seek
            start = max(0, index - self.chunk_frames + 1)
            self._chunk = {}
            self._seek(start)
            for i in range(start, index + 1):
                self._chunk[i] = self._read(i)
            return self._chunk[index]
        if index - self._next > self.chunk_frames:  # far ahead: seek rather than decode what lies between,
            self._seek(index - self.chunk_frames + 1)  # to a chunk's length before it, as a reverse pass reads
        if index > self._next:  # a gap (a reverse pass starting at the end): keep what it decodes
            self._chunk = {}
            while self._next < index:
                i = self._next
                frame = self._read(i)
                if i > index - self.chunk_frames:
                    self._chunk[i] = frame
        return self._read(index)

    def close(self) -> None:
        super().close()
        self._chunk = {}
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

    def __init__(self, height: int | None = None, width: int | None = None, held_frames: int = 4) -> None:
        super().__init__()
        if held_frames < 1:
            raise InputError(f"a live source must hold at least 1 frame, got {held_frames}")
        self.cache_size = held_frames
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
        with self._lock:  # a reader (a preview, a prompt) may be looking a held frame up meanwhile
            index = self.count
            self._cache[index] = frame
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            self.count += 1
        return index

    def _load(self, index: int) -> np.ndarray:
        held = list(self._cache)
        raise InputError(f"frame {index} of a live source is no longer held (the last {self.cache_size} frames "
                         f"are kept; held now: {held[0] if held else '-'} to {held[-1] if held else '-'})")


def is_url(video: str) -> bool:
    """A video given by URL (http://, https://, file://, rtsp://, ...) rather than a local path."""
    return "://" in video


def open_video(video) -> FrameSource:
    """A path (folder or video file), a URL of a video file, a FrameSource, a numpy array N x H x W x 3
    or a list of frames."""
    if isinstance(video, FrameSource):
        return video
    if isinstance(video, str) and is_url(video):
        return VideoFileSource(video)
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

