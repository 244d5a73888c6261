"""Run one scripted session on the engine and on Meta's predictor, and compare frame by frame.

The reference reads its frames from disk itself (a JPEG folder, decoded and resized by its own loader);
the engine reads the same folder through its own frame source. Nothing preprocessed is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import TEST_SIZE


@dataclass(frozen=True)
class Step:
    kind: str  # points | mask | propagate | track (streams: push the next frame)
    frame: int = 0
    obj: int = 1
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    clip: str  # a key of the session's `clips` fixture
    steps: tuple[Step, ...]
    image_size: int = TEST_SIZE
    stream: bool = False  # engine: tracker.stream(); reference: add_all_frames_to_correct_as_cond=True


@dataclass
class FrameRecord:
    step: int
    frame: int
    obj_ids: list[int]
    masks: np.ndarray  # [n, H, W] bool
    low_res: np.ndarray  # [n, h4, w4]
    scores: np.ndarray  # [n] object score logits (> 0: present)


_RUNS: dict[tuple, list[FrameRecord]] = {}
_TRACKERS: dict[tuple, Any] = {}


def shared_engine_run(modelset, backend, settings, scenario: Scenario, frames_dir: Path, mask_of) -> list[FrameRecord]:
    """`run_engine` on a plain tracker of (model set, backend config, tracker settings), once per test run.

    The parity, static and memory-store suites compare against the same plain runs; an engine run is a
    function of exactly these inputs, so the first suite to ask runs it and the others read its records
    (which nobody may modify). A tracker with anything else in it (counted or wrapped stages, another
    store) must call `run_engine` itself."""
    key = (str(modelset.root), repr(backend), repr(settings), repr(scenario), str(frames_dir))
    if key not in _RUNS:
        from engine.stages import StageSet
        from engine.tracker import Tracker

        tkey = key[:3]
        if tkey not in _TRACKERS:
            _TRACKERS[tkey] = Tracker(modelset, StageSet.load(modelset, backend), settings)
        _RUNS[key] = run_engine(_TRACKERS[tkey], scenario, frames_dir, mask_of)
    return _RUNS[key]


def run_engine(tracker, scenario: Scenario, frames_dir: Path, mask_of) -> list[FrameRecord]:
    if scenario.stream:
        return _run_stream(tracker, scenario, frames_dir)
    state = tracker.init_state(str(frames_dir))
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


def _run_stream(tracker, scenario: Scenario, frames_dir: Path) -> list[FrameRecord]:
    from engine.video import ImageFolderSource

    source = ImageFolderSource(frames_dir)  # decoded as the reference decodes, then pushed frame by frame
    stream = tracker.stream()
    records = []
    for i, step in enumerate(scenario.steps):
        if step.kind == "track":
            r = stream.track(source.get(step.frame))
            assert r.frame_idx == step.frame
            if not r.obj_ids:
                continue
        else:
            r = stream.add_new_points_or_box(step.obj, **step.args)
        records.append(FrameRecord(i, r.frame_idx, r.obj_ids, r.masks, r.low_res_logits, r.object_scores))
    return records


def run_reference(ref, scenario: Scenario, frames_dir: Path, mask_of) -> list[FrameRecord]:
    predictor = ref.predictor
    saved = predictor.add_all_frames_to_correct_as_cond
    predictor.add_all_frames_to_correct_as_cond = scenario.stream
    try:
        return _reference_steps(ref, _as_offline(scenario), frames_dir, mask_of)
    finally:
        predictor.add_all_frames_to_correct_as_cond = saved


def run_reference_per_object(ref, scenario: Scenario, frames_dir: Path, mask_of) -> list[FrameRecord]:
    """The scenario as one reference session per object, merged into the records one session would give.

    Under Meta's current predictor (December 2024 on) objects are tracked independently: each has its own
    conditioning frames and memory, so a session with several objects is, object by object, the session
    that prompts only that object. Predictors of before that revision (EdgeTAM's among them) refuse an
    object added after tracking started; run per object they can still answer for such a scenario.
    test_tracker_parity checks this identity on Meta's predictor itself.
    """
    assert not scenario.stream, "per-object sessions are offline scenarios"
    order = list(dict.fromkeys(s.obj for s in scenario.steps if s.kind != "propagate"))
    first = {o: next(i for i, s in enumerate(scenario.steps) if s.kind != "propagate" and s.obj == o) for o in order}
    per_obj: dict[int, dict[int, list[FrameRecord]]] = {}  # object -> original step -> its records
    for obj in order:
        kept = [i for i, s in enumerate(scenario.steps)
                if i >= first[obj] and (s.kind == "propagate" or s.obj == obj)]
        for i in kept:
            several = sum(first[o] <= i for o in order) > 1
            if scenario.steps[i].kind == "propagate" and several and "start_frame_idx" not in scenario.steps[i].args:
                # one session starts where the earliest object was prompted, each per-object one at its own
                raise ValueError(f"{scenario.name}: step {i} propagates several objects without a start frame")
        alone = Scenario(scenario.name, scenario.clip, tuple(scenario.steps[i] for i in kept), scenario.image_size)
        records = _reference_steps(ref, alone, frames_dir, mask_of)
        per_obj[obj] = {}
        for r in records:
            per_obj[obj].setdefault(kept[r.step], []).append(r)
    merged: list[FrameRecord] = []
    for i, step in enumerate(scenario.steps):
        objs = [o for o in order if first[o] <= i]
        if step.kind == "propagate":
            runs = [per_obj[o][i] for o in objs]
            for rows in zip(*runs, strict=True):
                assert len({r.frame for r in rows}) == 1, (scenario.name, i, [r.frame for r in rows])
                merged.append(_stacked(i, rows[0].frame, objs, rows))
            continue
        rows = [per_obj[o][i][0] if o == step.obj else _latest(per_obj[o], i, step.frame) for o in objs]
        merged.append(_stacked(i, step.frame, objs, rows))
    return merged


def _latest(records: dict[int, list[FrameRecord]], before: int, frame: int) -> FrameRecord | None:
    """An object's newest output on `frame` from steps before `before` (None: it has none there)."""
    found = None
    for k in sorted(records):
        if k < before:
            found = next((r for r in reversed(records[k]) if r.frame == frame), found)
    return found


def _stacked(step: int, frame: int, objs: list[int], rows: list[FrameRecord | None]) -> FrameRecord:
    """One record of several objects, each taken from its own session (its only object)."""
    like = next(r for r in rows if r is not None)
    masks, lows, scores = [], [], []
    for r in rows:
        if r is None:  # no output on this frame yet: empty, as the predictor reports such an object
            masks.append(np.zeros_like(like.masks[0]))
            lows.append(np.full_like(like.low_res[0], -1024.0))
            scores.append(-1024.0)
        else:  # a session of one object
            masks.append(r.masks[0])
            lows.append(r.low_res[0])
            scores.append(float(r.scores[0]))
    return FrameRecord(step, frame, list(objs), np.stack(masks), np.stack(lows), np.asarray(scores, np.float32))


def _as_offline(scenario: Scenario) -> Scenario:
    """A stream's pushes become propagations over the same frames (between prompts), as a user of Meta's
    predictor would drive it; its `track` steps of frames before any prompt produce nothing."""
    if not scenario.stream:
        return scenario
    steps: list[Step] = []
    prompted = False
    for step in scenario.steps:
        if step.kind != "track":
            prompted = True
            steps.append(Step(step.kind, step.frame, step.obj, step.args))
        elif prompted:
            last = steps[-1]
            if last.kind == "propagate":
                n = last.args["max_frame_num_to_track"] + 1
                steps[-1] = Step("propagate", args={**last.args, "max_frame_num_to_track": n})
            else:
                steps.append(Step("propagate", args={"start_frame_idx": step.frame, "max_frame_num_to_track": 0}))
    return Scenario(scenario.name, scenario.clip, tuple(steps), scenario.image_size, stream=False)


def _reference_steps(ref, scenario: Scenario, frames_dir: Path, mask_of) -> list[FrameRecord]:
    state = ref.init_state(frames_dir)
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
        low, scores = _consolidated(state, frame, ref.image_size // 4)
        records.append(FrameRecord(i, frame, list(ids), video_res[:, 0].float().numpy() > 0, low, scores))
    return records


def _consolidated(state, frame: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Each object's output on a frame just prompted: temporary (not yet consolidated) outputs first."""
    lows, scores = [], []
    for obj_idx in range(len(state["obj_ids"])):
        out = None
        for d in (state["temp_output_dict_per_obj"][obj_idx], state["output_dict_per_obj"][obj_idx]):
            out = out or d["cond_frame_outputs"].get(frame) or d["non_cond_frame_outputs"].get(frame)
        if out is None:  # the object has no output on this frame yet
            lows.append(np.full((side, side), -1024.0, np.float32))
            scores.append(-1024.0)
        else:
            lows.append(out["pred_masks"][0, 0].float().numpy())
            scores.append(float(out["object_score_logits"].reshape(-1)[0]))
    return np.stack(lows), np.asarray(scores, np.float32)


@dataclass
class Comparison:
    frames: int  # records compared (prompt results and tracked frames)
    object_frames: int  # object-frames where either mask is non-empty (the IoU's domain)
    min_iou: float
    worst: str
    max_logit_diff: float
    p999_logit_diff: float  # the largest per-object-frame 99.9th percentile of |engine - reference|
    coverage: tuple[float, float, float]  # min / median / max share of the frame, present object-frames
    present: int  # object-frames the reference calls present
    absent: int
    presence_disagreements: int  # object-frames where the engine and the reference disagree on presence


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def compare(engine: list[FrameRecord], reference: list[FrameRecord]) -> Comparison:
    assert len(engine) == len(reference), (len(engine), len(reference))
    min_iou, worst, max_diff, p999 = 1.0, "", 0.0, 0.0
    present = absent = compared = disagree = 0
    coverage = []
    for e, r in zip(engine, reference, strict=True):
        assert (e.frame, e.obj_ids) == (r.frame, r.obj_ids), (e.step, e.frame, r.step, r.frame)
        for k in range(len(e.obj_ids)):
            disagree += int((e.scores[k] > 0) != (r.scores[k] > 0))
            diff = np.abs(e.low_res[k].astype(np.float64) - r.low_res[k])
            max_diff = max(max_diff, float(diff.max()))
            p999 = max(p999, float(np.quantile(diff, 0.999)))
            if r.scores[k] > 0:
                present += 1
                coverage.append(float(r.masks[k].mean()))
            else:
                absent += 1
            if not (e.masks[k].any() or r.masks[k].any()):
                continue  # two empty masks agree, but say nothing: not counted as IoU 1
            compared += 1
            v = iou(e.masks[k], r.masks[k])
            if v < min_iou:
                min_iou, worst = v, f"step {e.step} frame {e.frame} obj {e.obj_ids[k]}"
    cov = (min(coverage), float(np.median(coverage)), max(coverage)) if coverage else (0.0, 0.0, 0.0)
    return Comparison(len(engine), compared, min_iou, worst, max_diff, p999, cov, present, absent, disagree)
