"""What every detector gives: boxes in frame pixels with a score and a class, and the box arithmetic the
detectors and the identity policy share (IoU, coverage, non-maximum suppression)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One object a detector found on a frame."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the frame's pixels
    score: float
    class_id: int
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4), "class_id": self.class_id,
                "label": self.label}


class Detector(Protocol):
    """A prompt source: an RGB frame (H x W x 3 uint8) in, detections out."""

    kind: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...

    def describe(self) -> dict[str, Any]: ...


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of boxes a [n, 4] and b [m, 4]: [n, m]."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [n, 4] and b [m, 4] (x0, y0, x1, y1): [n, m]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression within each class: the indices kept, best score first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    # boxes of different classes never overlap once shifted apart by more than the whole extent
    shift = (np.asarray(classes, np.float64) * (boxes.max() - boxes.min() + 1.0))[:, None]
    shifted = boxes + shift
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        overlap = box_iou(shifted[i:i + 1], shifted[order[1:]])[0]
        order = order[1:][overlap <= iou]
    return np.array(keep, np.int64)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box around a mask's pixels: x0, y0 inclusive, x1, y1 exclusive (pixel edges), None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def covered_share(mask: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """How much of a box a mask covers (0 to 1)."""
    h, w = mask.shape
    x0, y0 = int(np.clip(np.floor(box[0]), 0, w)), int(np.clip(np.floor(box[1]), 0, h))
    x1, y1 = int(np.clip(np.ceil(box[2]), 0, w)), int(np.clip(np.ceil(box[3]), 0, h))
    area = (x1 - x0) * (y1 - y0)
    return float(mask[y0:y1, x0:x1].sum()) / area if area > 0 else 0.0
