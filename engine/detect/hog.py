"""`hog-people`: OpenCV's HOG + linear SVM people detector (Dalal and Triggs). Its weights ship inside
OpenCV, so nothing is downloaded. It finds upright, whole people about 64 x 128 pixels and larger; frames
wider than `max_width` are shrunk first (HOG's cost grows with the pixels)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from engine.detect.base import Detection, nms
from engine.detect.settings import DetectorSettings
from engine.errors import ConfigError


def hog_people() -> Any:
    """OpenCV's HOG people detector, wherever this OpenCV build keeps it."""
    for where in (cv2, getattr(cv2, "xobjdetect", None)):
        if where is not None and hasattr(where, "HOGDescriptor"):
            hog = where.HOGDescriptor()
            hog.setSVMDetector(where.HOGDescriptor_getDefaultPeopleDetector())
            return hog
    raise ConfigError(f"detector kind hog-people needs OpenCV's HOG people detector, which this OpenCV "
                      f"({cv2.__version__}, {cv2.__file__}) lacks: OpenCV 5 moved it to the contrib build. "
                      f"pip uninstall opencv-python-headless && pip install opencv-contrib-python-headless")


class HogPeopleDetector:
    kind = "hog-people"

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self._hog = hog_people()

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        scale = min(1.0, self.settings.max_width / float(w))
        small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                      interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8),
                                                    scale=self.settings.hog_scale)
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, np.float64).reshape(-1, 4) / scale
        scores = np.asarray(weights, np.float64).reshape(-1)
        boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]])
        wanted = scores >= self.settings.score_threshold
        boxes, scores = boxes[wanted], scores[wanted]
        keep = nms(boxes, scores, np.zeros(len(scores)), self.settings.nms_iou)[: self.settings.max_detections]
        return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), 0, "person") for i in keep]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "opencv": cv2.__version__, "max_width": self.settings.max_width,
                "scale": self.settings.hog_scale}
