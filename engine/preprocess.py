"""Frames and prompts into model space: Meta's frame loading (Pillow bicubic) and PyTorch-compatible
resizing of masks and logits in numpy/OpenCV."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from engine.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def check_frame(frame: np.ndarray, where: str = "frame") -> np.ndarray:
    """An RGB uint8 frame H x W x 3 (grayscale H x W is promoted); anything else is an InputError."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{where}: expected a numpy array H x W x 3 (RGB, uint8), got {type(frame).__name__}")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InputError(f"{where}: expected shape H x W x 3 (RGB), got {frame.shape}")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.size and float(np.nanmax(frame)) <= 1.0:
            frame = frame * 255.0
        if np.issubdtype(frame.dtype, np.floating) and not np.all(np.isfinite(frame)):
            raise InputError(f"{where}: contains NaN or Inf")
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def _normalise_table() -> np.ndarray:
    """[3, 256] float32: the model input of each 8-bit value per channel, with the reference's arithmetic
    (value / 255 in float64, rounded to float32, minus the float32 mean, divided by the float32 std), so a
    table look-up gives bit-for-bit what Meta's frame loader gives."""
    scaled = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
    return ((scaled[None, :] - IMAGENET_MEAN[:, None]) / IMAGENET_STD[:, None]).astype(np.float32)


_NORMALISE = _normalise_table()
_LUTS = [np.ascontiguousarray(row.reshape(1, 256)) for row in _NORMALISE]


def resize_frame(frame: np.ndarray, image_size: int) -> np.ndarray:
    """RGB uint8 H x W x 3 -> S x S x 3 uint8 with Pillow's bicubic filter, as Meta's JPEG-folder loader
    (`Image.resize((S, S))`: bicubic, antialiased when shrinking, aspect ratio not kept). Pillow, not a
    re-implementation: its filter support and integer rounding are what the reference's pixels are."""
    if frame.shape[0] == image_size and frame.shape[1] == image_size:
        return frame
    return np.asarray(Image.fromarray(frame, "RGB").resize((image_size, image_size), Image.Resampling.BICUBIC))


def frame_to_input(frame: np.ndarray, image_size: int) -> np.ndarray:
    """RGB uint8 H x W x 3 -> 1 x 3 x S x S float32, equal to the frame tensor Meta's `init_state` builds
    from a JPEG folder: Pillow bicubic resize to S x S, /255, ImageNet mean/std, NCHW."""
    small = resize_frame(check_frame(frame), image_size)
    out = np.empty((1, 3, image_size, image_size), np.float32)
    for c, plane in enumerate(cv2.split(small)):  # OpenCV's look-up is 5x numpy's gather on strided planes
        out[0, c] = cv2.LUT(plane, _LUTS[c])
    return out


@lru_cache(maxsize=32)
def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two source indices and the weight of the second, per output index, of torch's bilinear resize
    (align_corners=False), with torch's rounding: a float32 scale, the source index computed in float64
    and rounded to float32."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    src = np.maximum((np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(f32), f32(0.0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    return i0, i1, frac


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear, align_corners=False, as torch.nn.functional.interpolate (no antialiasing). 2-D float32.

    OpenCV is exact for whole-number upscales (its weights are then dyadic fractions) and fastest; other
    ratios blend the two source taps per axis, since OpenCV's weights differ there by ~1e-4.
    """
    x = x.astype(np.float32, copy=False)
    if x.shape == tuple(out_hw):
        return x
    (h, w), (oh, ow) = x.shape, out_hw
    if oh % h == 0 and ow % w == 0 and oh // h in (2, 4, 8) and ow // w in (2, 4, 8):
        return cv2.resize(x, (ow, oh), interpolation=cv2.INTER_LINEAR)
    r0, r1, fr = _bilinear_taps(h, oh)
    rows = x[r0] * (1 - fr)[:, None] + x[r1] * fr[:, None]
    c0, c1, fc = _bilinear_taps(w, ow)
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


@lru_cache(maxsize=32)
def _aa_weights(in_size: int, out_size: int) -> np.ndarray:
    """Row-stochastic out x in matrix of torch's antialiased bilinear resize: a triangle filter whose
    support widens with the downscale factor (plain bilinear taps when upscaling). The arithmetic follows
    torch's CPU kernel in float32, so that thresholded masks agree pixel for pixel."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    support = scale if scale >= 1.0 else f32(1.0)
    invscale = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
    w = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        center = f32(np.float64(scale) * (i + 0.5))
        lo = max(int(np.float64(center) - support + 0.5), 0)
        hi = min(int(np.float64(center) + support + 0.5), in_size)
        j = np.arange(lo, hi)
        x = ((j.astype(f32) - center).astype(np.float64) + 0.5) * np.float64(invscale)
        taps = np.clip(f32(1.0) - np.abs(x.astype(f32)), f32(0.0), None).astype(f32)
        total = taps.sum(dtype=f32)
        if total > 0:
            w[i, lo:hi] = taps / total
    return w


def resize_antialias(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear with antialias=True, align_corners=False, as torch's interpolate. 2-D float32."""
    if x.shape == tuple(out_hw):
        return x.astype(np.float32, copy=False)
    wh = _aa_weights(x.shape[0], out_hw[0])
    ww = _aa_weights(x.shape[1], out_hw[1])
    return (wh @ x.astype(np.float32, copy=False) @ ww.T).astype(np.float32)


def prompt_points(
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    video_hw: tuple[int, int],
    image_size: int,
    normalize_coords: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and/or a box in video pixels -> (coords [P,2] in model pixels, labels [P] int32).

    A box becomes two points labelled 2 and 3, placed before the clicks (as SAM 2 does).
    """
    h, w = video_hw
    if (points is None) != (labels is None):
        raise InputError("points and labels must be given together")
    if points is None and box is None:
        raise InputError("a prompt needs points (with labels) or a box")
    pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32)
    lbl = np.zeros((0,), np.int32) if labels is None else np.asarray(labels)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points must have shape N x 2 (x, y), got {pts.shape}")
    lbl = lbl.reshape(-1)
    if lbl.shape[0] != pts.shape[0]:
        raise InputError(f"{pts.shape[0]} points but {lbl.shape[0]} labels")
    if lbl.size and not np.all(np.isin(lbl, (0, 1))):
        raise InputError(f"labels must be 1 (positive) or 0 (negative), got {sorted(set(lbl.tolist()))}")
    if not np.all(np.isfinite(pts)):
        raise InputError("points contain NaN or Inf")
    lbl = lbl.astype(np.int32)
    if box is not None:
        b = np.asarray(box, np.float32).reshape(-1)
        if b.shape != (4,) or not np.all(np.isfinite(b)):
            raise InputError(f"box must be x0, y0, x1, y1, got {np.asarray(box).tolist()}")
        if b[2] <= b[0] or b[3] <= b[1]:
            raise InputError(f"box {b.tolist()} is empty: x1 must exceed x0 and y1 must exceed y0")
        pts = np.concatenate([b.reshape(2, 2), pts], 0)
        lbl = np.concatenate([np.array([2, 3], np.int32), lbl])
    if normalize_coords:
        bad = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if np.any(bad):
            raise InputError(f"prompt coordinates {pts[bad].tolist()} lie outside the {w} x {h} frame")
        pts = pts / np.array([w, h], np.float32) * image_size
    else:
        pts = pts * image_size
    return pts.astype(np.float32), lbl


def prompt_mask(mask: np.ndarray, video_hw: tuple[int, int], image_size: int) -> np.ndarray:
    """A video-size mask -> S x S float32 of 0/1, resized as SAM 2's add_new_mask does."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] in (1, 3, 4):
        m = m[..., 0]
    if m.ndim != 2:
        raise InputError(f"mask must be 2-D (H x W), got shape {m.shape}")
    if m.shape != tuple(video_hw):
        raise InputError(f"mask is {m.shape[1]} x {m.shape[0]}, the video is {video_hw[1]} x {video_hw[0]}")
    m = (m > 0).astype(np.float32)
    if m.shape != (image_size, image_size):
        m = (resize_antialias(m, (image_size, image_size)) >= 0.5).astype(np.float32)
    return m
