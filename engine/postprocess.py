"""Hole filling, resizing to the video, thresholds and run-length encoding."""

from __future__ import annotations

import cv2
import numpy as np

from engine.preprocess import resize_bilinear


def fill_holes(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Background components (logit <= 0, 8-connected) of at most `max_area` pixels become 0.1,
    as SAM 2's fill_holes_in_mask_scores (which needs a CUDA extension the reference skips on CPU)."""
    if max_area <= 0:
        return logits
    background = (logits <= 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
    if count <= 1:
        return logits
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[0] = False  # label 0 is the foreground
    if not small.any():
        return logits
    out = logits.copy()
    out[small[labels]] = 0.1
    return out


def to_video_logits(low_res: np.ndarray, video_hw: tuple[int, int]) -> np.ndarray:
    return resize_bilinear(low_res, video_hw)


def rle_encode(mask: np.ndarray) -> dict:
    """COCO run-length encoding (column-major counts, uncompressed), as pycocotools' frPyObjects expects."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, bool)
    pos, value = 0, False
    for n in rle["counts"]:
        flat[pos:pos + n] = value
        pos += n
        value = not value
    return flat.reshape((h, w), order="F")
