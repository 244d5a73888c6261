"""Run one scripted session on the engine and on the PyTorch reference, and compare frame by frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Step:
    kind: str  # points | box | mask | propagate
    frame: int = 0
    obj: int = 1
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    video: str  # "davis" or "bedroom"
    steps: tuple[Step, ...]
    image_size: int = 512


@dataclass
class FrameRecord:
    step: int
    frame: int
    obj_ids: list[int]
    masks: np.ndarray  # [n, H, W] bool
    low_res: np.ndarray  # [n, h4, w4]
    scores: np.ndarray  # [n]


def _frames(video: str, data) -> Any:
    return str(data / "davis-car-shadow" / "frames") if video == "davis" else str(data / "videos" / "bedroom.mp4")


def run_engine(tracker, scenario: Scenario, data, mask_of) -> list[FrameRecord]:
    state = tracker.init_state(_frames(scenario.video, data))
    records = []
    for i, step in enumerate(scenario.steps):
        if step.kind == "propagate":
            for r in tracker.propagate_in_video(state, **step.args):
                records.append(FrameRecord(i, r.frame_idx, r.obj_ids, r.masks, r.low_res_logits, r.object_scores))
            continue
        if step.kind == "mask":
            r = tracker.add_new_mask(state, step.frame, step.obj, mask_of(step.args["mask"]))
        else:
            r = tracker.add_new_points_or_box(state, step.frame, step.obj, **step.args)
        records.append(FrameRecord(i, r.frame_idx, r.obj_ids, r.masks, r.low_res_logits, r.object_scores))
    return records


def run_reference(ref, scenario: Scenario, data, mask_of) -> list[FrameRecord]:
    state = ref.init_state(_frames(scenario.video, data))
    records = []
    for i, step in enumerate(scenario.steps):
        if step.kind == "propagate":
            for frame, ids, video_res, low, scores in ref.propagate_in_video(state, **step.args):
                records.append(FrameRecord(i, frame, ids, video_res > 0, low, scores))
            continue
        if step.kind == "mask":
            frame, ids, video_res = ref.add_new_mask(state, step.frame, step.obj, mask_of(step.args["mask"]))
        else:
            frame, ids, video_res = ref.add_new_points_or_box(state, step.frame, step.obj, **step.args)
        low = _consolidated_low_res(state, frame)
        vr = video_res[:, 0].float().numpy()
        records.append(FrameRecord(i, frame, list(ids), vr > 0, low, np.full(len(ids), np.nan, np.float32)))
    return records


def _consolidated_low_res(state, frame: int) -> np.ndarray:
    lows = []
    for obj_idx in range(len(state["obj_ids"])):
        out = None
        for d in (state["temp_output_dict_per_obj"][obj_idx], state["output_dict_per_obj"][obj_idx]):
            out = out or d["cond_frame_outputs"].get(frame) or d["non_cond_frame_outputs"].get(frame)
        lows.append(np.full((256, 256), -1024.0, np.float32) if out is None else out["pred_masks"][0, 0].float().numpy())
    return np.stack(lows)


@dataclass
class Comparison:
    frames: int
    min_iou: float
    max_logit_diff: float
    worst: str
    present: int  # object-frames the reference called present
    absent: int


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def compare(engine: list[FrameRecord], reference: list[FrameRecord]) -> Comparison:
    assert len(engine) == len(reference), (len(engine), len(reference))
    min_iou, max_diff, worst = 1.0, 0.0, ""
    present = absent = 0
    for e, r in zip(engine, reference, strict=True):
        assert (e.step, e.frame, e.obj_ids) == (r.step, r.frame, r.obj_ids), (e.step, e.frame, r.step, r.frame)
        for k in range(len(e.obj_ids)):
            v = iou(e.masks[k], r.masks[k])
            d = float(np.max(np.abs(e.low_res[k].astype(np.float64) - r.low_res[k])))
            if v < min_iou:
                min_iou, worst = v, f"step {e.step} frame {e.frame} obj {e.obj_ids[k]}"
            max_diff = max(max_diff, d)
            if not np.isnan(r.scores[k]):
                present += int(r.scores[k] > 0)
                absent += int(r.scores[k] <= 0)
                assert (e.scores[k] > 0) == (r.scores[k] > 0), (e.frame, e.scores[k], r.scores[k])
    return Comparison(len(engine), min_iou, max_diff, worst, present, absent)
