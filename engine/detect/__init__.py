"""Detectors as a prompt source, and the identity policy that turns their boxes into kept objects.

- `settings`: the `detector:` section (engine config, or a deployment's source).
- `base`: `Detection` and box arithmetic; `onnx_detector`, `hog`, `motion`: the detectors.
- `identity`: the identity policy (numpy and scipy, no model).
- `auto`: a detector and the policy driving one source's tracking.
"""

from engine.detect.auto import AutoPrompter
from engine.detect.base import Detection, Detector
from engine.detect.build import build_detector
from engine.detect.identity import Event, IdentityPolicy, ObjectView
from engine.detect.settings import DetectorSettings, IdentitySettings, parse_detector

__all__ = ["AutoPrompter", "Detection", "Detector", "DetectorSettings", "Event", "IdentityPolicy",
           "IdentitySettings", "ObjectView", "build_detector", "parse_detector"]
