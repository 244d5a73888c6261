"""`motion`: moving things on a fixed camera, by OpenCV's MOG2 background subtraction.

The background model learns from the frames the detector sees (every `every`-th tracked frame), so a
thing that stops becomes background after about `history` of them; SAM 2 keeps tracking it meanwhile.
The first frame seen is the background; a thing already in it leaves a ghost
until learned away. Blobs smaller than `min_area` of the frame are noise."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from engine.detect.base import Detection
from engine.detect.settings import DetectorSettings


class MotionDetector:
    kind = "motion"

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self._mog = cv2.createBackgroundSubtractorMOG2(history=settings.history,
                                                       varThreshold=settings.var_threshold, detectShadows=False)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._hw: tuple[int, int] | None = None

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self._hw is not None and image.shape[:2] != self._hw:  # a new frame size: learn the scene again
            self.__init__(self.settings)
        first = self._hw is None
        self._hw = image.shape[:2]
        # a fixed rate from the first frame: MOG2's own starts fast (1/frames seen), which learns a thing that
        # enters in the first seconds into the background within a few frames
        fg = self._mog.apply(image, learningRate=1.0 / self.settings.history)
        if first:  # the first frame is the background: nothing has moved yet
            return []
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_pixels = self.settings.min_area * image.shape[0] * image.shape[1]
        found = []
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < max(min_pixels, 1):
                continue
            fill = area / float(w * h)  # a solid blob scores near 1, a scatter of noise low
            found.append(Detection((float(x), float(y), float(x + w), float(y + h)), round(fill, 4), 0, "motion"))
        found = [d for d in found if d.score >= min(self.settings.score_threshold, 1.0)]
        found.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        return found[: self.settings.max_detections]

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"kind": self.kind, "history": s.history, "var_threshold": s.var_threshold, "min_area": s.min_area}
