"""A detector from its settings."""

from __future__ import annotations

from engine.detect.base import Detector
from engine.detect.settings import DetectorSettings


def build_detector(settings: DetectorSettings) -> Detector:
    """A new detector (the motion detector learns its scene: one per source, never shared)."""
    if settings.kind == "onnx":
        from engine.detect.onnx_detector import OnnxDetector

        return OnnxDetector(settings)
    if settings.kind == "hog-people":
        from engine.detect.hog import HogPeopleDetector

        return HogPeopleDetector(settings)
    from engine.detect.motion import MotionDetector

    return MotionDetector(settings)
