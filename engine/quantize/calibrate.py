"""Calibration data: every stage's inputs while the exact tracker follows the prompts through a video."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from backends.base import BackendConfig
from engine.errors import InputError
from engine.modelset import ModelSet
from engine.prompts import Prompt
from engine.static import ATTENTION

MIN_FRAMES = 16  # the memory bank is full from the 8th tracked frame; half the samples should see it full
EXACT_BACKEND = BackendConfig(name="onnxruntime", device="cpu", precision="f32")


class RecordingStages:
    """Stands in for a StageSet and keeps a copy of every call's inputs per stage file, as the file takes
    them (a static set's padded slots included). A static set's memory-attention call is kept for every
    tier it fits, not only the one it runs on, so each tier's file is calibrated on the whole clip."""

    def __init__(self, stages: Any) -> None:
        self.inner = stages
        self.samples: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in self.inner.modelset.manifest.stages}

    def run(self, name: str, inputs: Mapping[str, np.ndarray], keep: Collection[str] = ()) -> dict[str, np.ndarray]:
        """`keep` is a permission, not a demand: every output comes back as numpy here."""
        static = self.inner.modelset.manifest.static
        if static is None:
            stage, fed = name, inputs
        else:
            stage, fed = static.route(name, inputs)
            if name == ATTENTION:
                memories, pointers = int(inputs["memory"].shape[0]), int(inputs["obj_ptrs"].shape[0])
                for tier in static.tiers:
                    if tier.stage != stage and tier.fits(memories, pointers):
                        self._keep(tier.stage, static.pad(tier.stage, inputs))
        self._keep(stage, fed)
        return self.inner.stages[stage].run(fed)  # padded once, here: the loaded stage takes them as they are

    def _keep(self, stage: str, fed: Mapping[str, np.ndarray]) -> None:
        self.samples[stage].append({k: np.array(v, copy=True) for k, v in fed.items()})

    def __getattr__(self, name: str) -> Any:  # modelset, stages, backends, describe of the wrapped set
        return getattr(self.inner, name)


def exact_tracker(ms: ModelSet, stages: Any = None):
    """The reference for calibration and fidelity: ONNX Runtime CPU f32, float32 memory."""
    from engine.config import TrackerSettings
    from engine.stages import StageSet
    from engine.tracker import Tracker

    static = ms.manifest.static
    settings = TrackerSettings(memory_dtype="float32", max_cond_frames=static.cond_frames if static else None)
    return Tracker(ms, stages if stages is not None else StageSet.load(ms, EXACT_BACKEND), settings)


def check_video(video: str, frames: int) -> int:
    """The calibration video must exist and hold `frames` frames (at least MIN_FRAMES); returns its count."""
    from engine.video import open_video

    if frames < MIN_FRAMES:
        raise InputError(f"--frames {frames} is too few to calibrate: at least {MIN_FRAMES} are needed (the "
                         f"memory bank fills after 8 tracked frames)")
    source = open_video(video)  # a missing or unreadable video is an error naming it
    try:
        n = source.num_frames
    finally:
        source.close()
    if n is not None and n < frames:
        raise InputError(f"calibration video {video} has {n} frames; {frames} are needed (--frames; at least "
                         f"{MIN_FRAMES})")
    return n if n is not None else frames


def collect(ms: ModelSet, video: str, prompts: list[Prompt], frames: int,
            progress: bool = True) -> dict[str, list[dict[str, np.ndarray]]]:
    """Track `frames` frames from the first prompted frame and return each stage's inputs."""
    from engine.stages import StageSet
    from engine.track import apply_prompt

    recorder = RecordingStages(StageSet.load(ms, EXACT_BACKEND))
    tracker = exact_tracker(ms, recorder)
    state = tracker.init_state(video)
    for p in prompts:
        apply_prompt(tracker, state, p, state.video_hw)
    start = min(p.frame for p in prompts)
    if state.num_frames is not None and state.num_frames - start < frames:
        raise InputError(f"calibration video {video} has {state.num_frames - start} frames from the first prompted "
                         f"frame {start}; {frames} are needed")
    for _ in tracker.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=frames - 1,
                                        progress=progress):
        pass
    return recorder.samples
