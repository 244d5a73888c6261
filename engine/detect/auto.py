"""A detector and the identity policy driving one source's tracking: after each tracked frame, the
detector runs (every `every`-th frame, or when asked), the policy decides, and its box prompts go to the
running session on that same frame. Used alike by engine.track (files and streams), engine.serve and
engine.batch; the tracker core knows nothing of it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from engine.detect.base import Detector
from engine.detect.build import build_detector
from engine.detect.identity import Event, IdentityPolicy, ObjectView
from engine.detect.settings import DetectorSettings
from engine.state import FrameResult


class AutoPrompter:
    def __init__(self, settings: DetectorSettings, detector: Detector | None = None) -> None:
        self.settings = settings
        self.detector = detector if detector is not None else build_detector(settings)
        self.policy = IdentityPolicy(settings.identity, settings.classes)
        self.frames = 0  # tracked frames seen
        self.runs = 0  # detector runs
        self.detections = 0  # detections they gave (before the policy)
        self.detector_s = 0.0
        self.events = Counter()
        self._requested = False

    def request(self) -> None:
        """Run the detector on the next tracked frame, whatever the schedule (the API's on-demand run)."""
        self._requested = True

    def due(self) -> bool:
        return self._requested or self.frames % self.settings.every == 0

    def after_track(self, frame_id: int, now: float, image: np.ndarray, result: FrameResult,
                    prompt_box: Callable[[int, tuple[float, float, float, float]], FrameResult],
                    remove: Callable[[int], None]) -> tuple[FrameResult, list[Event]]:
        """The frame just tracked: run the detector if due, apply the policy's prompts and removals through
        `prompt_box` (a box prompt for one object on this frame; the frame's result with every object) and
        `remove`; the frame's result after them, and the events."""
        dets = None
        if self.due():
            self._requested = False
            t0 = time.perf_counter()
            dets = self.detector.detect(image)
            self.detector_s += time.perf_counter() - t0
            self.runs += 1
            self.detections += len(dets)
        self.frames += 1
        views = {int(o): ObjectView(m, float(s))
                 for o, m, s in zip(result.obj_ids, result.masks, result.object_scores, strict=True)}
        decision = self.policy.observe(frame_id, now, views, dets, image.shape[:2])
        for obj_id in decision.remove:
            remove(obj_id)
        if decision.remove:
            keep = [i for i, o in enumerate(result.obj_ids) if o not in decision.remove]
            result = replace(result, obj_ids=[result.obj_ids[i] for i in keep], masks=result.masks[keep],
                             low_res_logits=result.low_res_logits[keep], object_scores=result.object_scores[keep],
                             video_logits=None if result.video_logits is None else result.video_logits[keep])
        for p in decision.prompts:
            result = prompt_box(p.obj_id, p.box)
        self.events.update(e.kind for e in decision.events)
        return result, decision.events

    def person_prompted(self, obj_id: int) -> None:
        self.policy.person_prompted(obj_id)

    def person_removed(self, obj_id: int, now: float, frame_id: int) -> Event | None:
        event = self.policy.person_removed(obj_id, now, frame_id)
        if event is not None:
            self.events[event.kind] += 1
        return event

    def object_info(self, obj_id: int, frame_id: int) -> dict[str, Any]:
        """What results carry about an object: its class label, detector score, origin and state, and the
        detection matched to it on this frame (when the detector ran and found it)."""
        rec = self.policy.objects.get(obj_id)
        if rec is None:
            return {"origin": "person", "label": None, "det_score": None, "state": "tracking", "det_box": None}
        info = rec.info()
        info["det_box"] = (None if rec.matched_frame != frame_id or rec.det_box is None
                           else [round(v, 1) for v in rec.det_box])
        return info

    def status(self) -> dict[str, Any]:
        return {"kind": self.settings.kind, "every": self.settings.every, "runs": self.runs,
                "detections": self.detections, "detector_ms_mean": round(1000 * self.detector_s / self.runs, 2)
                if self.runs else None, "detector_s": round(self.detector_s, 3),
                "admitted": self.policy.admitted, "over_cap": self.policy.over_cap,
                "events": dict(self.events)}
