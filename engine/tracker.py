"""The public tracking API, mirroring Meta's SAM2VideoPredictor on ONNX stage models and numpy.

Every rule here follows sam2/sam2_video_predictor.py and sam2/modeling/sam2_base.py: which frames and
pointers enter memory attention (engine.memory), how a mask and a pointer are chosen (engine.decode),
how prompted frames are turned into memory before propagation (preflight), hole filling, and the
outputs at video resolution. One frame's inference is `engine.inference.FrameInference`, what is kept
about a video `engine.state`, live tracking `engine.stream`. No torch is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import EngineConfig, load_config
from engine.decode import NO_OBJ_SCORE
from engine.errors import ConfigError, InputError
from engine.inference import FrameInference
from engine.memory import FrameOutput
from engine.modelset import ModelSet
from engine.postprocess import to_video_logits
from engine.preprocess import prompt_mask, prompt_points
from engine.stages import StageSet
from engine.state import FrameFeatures, FrameResult, InferenceState, ObjectState
from engine.stream import Stream
from engine.video import open_video

PREV_MASK_CLAMP = 32.0  # SAM 2 clamps a frame's previous logits before feeding them back as a mask prompt

__all__ = ["FrameFeatures", "FrameResult", "InferenceState", "ObjectState", "Stream", "Tracker"]


class Tracker(FrameInference):
    """SAM 2 video tracker on four stage models (SAM 2, SAM 2.1 or EdgeTAM: the model set says which; the
    rules are the same). Build with `Tracker.from_config(...)`."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: str | Path | EngineConfig, model: str | Path | None = None,
                    verify_checksums: bool = False) -> Tracker:
        cfg = config if isinstance(config, EngineConfig) else load_config(config)
        root = Path(model) if model is not None else cfg.model
        if root is None:
            raise ConfigError(f"config {cfg.source} names no model set: add `model: <folder>` or pass model=")
        ms = ModelSet.load(root, verify_checksums=verify_checksums)
        return cls(ms, StageSet.load(ms, cfg), cfg.tracker)

    def describe(self) -> dict[str, Any]:
        return {"variant": self.modelset.variant, "image_size": self.image_size,
                "weights": self.modelset.manifest.provenance.get("weights"), "stages": self.stages.describe(),
                "memory_frames": self.settings.memory_frames, "max_obj_ptrs": self.settings.max_obj_ptrs,
                "memory_dtype": self.settings.memory_dtype, "fill_hole_area": self.fill_hole_area,
                "offline_memory": self.settings.offline_memory, "max_cond_frames": self.planner.max_cond,
                "policy": self.policy.name,
                "samurai": (vars(self.policy.settings) if self.policy.name == "samurai" else None),
                "static_shapes": (self.modelset.manifest.static.to_yaml() if self.modelset.manifest.static
                                  else None),
                "stage_precision": (self.modelset.manifest.provenance.get("quantization") or {}).get("stages"),
                "bytes_per_stored_frame": self.bytes_per_stored_frame()}

    # ------------------------------------------------------------------ results
    def _result(self, state: InferenceState, frame_idx: int, outs: list[FrameOutput | None]) -> FrameResult:
        h4 = self.image_size // 4
        low = np.full((len(outs), h4, h4), NO_OBJ_SCORE, np.float32)
        scores = np.full(len(outs), NO_OBJ_SCORE, np.float32)
        for i, out in enumerate(outs):
            if out is not None:
                low[i] = out.pred_masks
                scores[i] = out.object_score
        hw = state.video_hw
        video = np.stack([to_video_logits(m, hw) for m in low]) if len(outs) else np.zeros((0, *hw), np.float32)
        if self.non_overlap_masks and len(outs) > 1:
            winner = np.argmax(video, axis=0)
            for i in range(len(outs)):
                video[i] = np.where(winner == i, video[i], np.minimum(video[i], -10.0))
        return FrameResult(frame_idx=frame_idx, obj_ids=state.obj_ids, masks=video > self.settings.mask_threshold,
                           low_res_logits=low, object_scores=scores,
                           video_logits=video if self.return_video_logits else None)

    def _consolidated(self, state: InferenceState, frame_idx: int, is_cond: bool) -> FrameResult:
        outs = []
        for obj in state.objects.values():
            temp = obj.bank.temp_cond if is_cond else obj.bank.temp_non_cond
            out = temp.get(frame_idx) or obj.bank.cond.get(frame_idx) or obj.bank.non_cond.get(frame_idx)
            outs.append(out)
        return self._result(state, frame_idx, outs)

    # ------------------------------------------------------------------ public API
    def init_state(self, video: Any) -> InferenceState:
        """A path (image folder or video file), a numpy array N x H x W x 3, a list of frames or a FrameSource."""
        state = InferenceState(open_video(video))
        state.bounded = self.settings.offline_memory == "window"
        if state.num_frames:
            self._features(state, 0)  # as the reference: warm the first frame
        return state

    def _check_frame_idx(self, state: InferenceState, frame_idx: Any) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise InputError(f"frame_idx must be an integer, got {frame_idx!r}")
        n = state.num_frames
        if frame_idx < 0 or (n is not None and frame_idx >= n):
            raise InputError(f"frame_idx {frame_idx} is outside the video (0 to {n - 1 if n else '?'})")
        return int(frame_idx)

    def _object(self, state: InferenceState, obj_id: Any, create: bool) -> ObjectState:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise InputError(f"obj_id must be an integer, got {obj_id!r}")
        obj_id = int(obj_id)
        if obj_id not in state.objects:
            if not create:
                raise InputError(f"unknown object id {obj_id}; known ids: {state.obj_ids or 'none'}")
            state.objects[obj_id] = ObjectState(obj_id)
        return state.objects[obj_id]

    def add_new_points_or_box(self, state: InferenceState, frame_idx: int, obj_id: int, points=None, labels=None,
                              clear_old_points: bool = True, normalize_coords: bool = True, box=None) -> FrameResult:
        frame_idx = self._check_frame_idx(state, frame_idx)
        if box is not None and not clear_old_points:
            raise InputError("a box must come first: add it with clear_old_points=True, then add clicks")
        coords, lbl = prompt_points(points, labels, box, state.video_hw, self.image_size, normalize_coords)
        with self._prompt_or_nothing(state, obj_id, frame_idx):
            obj = self._object(state, obj_id, create=True)
            if not clear_old_points and frame_idx in obj.points:
                old_c, old_l = obj.points[frame_idx]
                coords, lbl = np.concatenate([old_c, coords]), np.concatenate([old_l, lbl])
            obj.points[frame_idx] = (coords, lbl)
            obj.masks.pop(frame_idx, None)
            return self._prompt(state, obj, frame_idx, points=(coords, lbl), mask=None)

    def add_new_mask(self, state: InferenceState, frame_idx: int, obj_id: int, mask: np.ndarray) -> FrameResult:
        frame_idx = self._check_frame_idx(state, frame_idx)
        m = prompt_mask(mask, state.video_hw, self.image_size)
        with self._prompt_or_nothing(state, obj_id, frame_idx):
            obj = self._object(state, obj_id, create=True)
            obj.masks[frame_idx] = m > 0
            obj.points.pop(frame_idx, None)
            return self._prompt(state, obj, frame_idx, points=None, mask=m)

    @contextmanager
    def _prompt_or_nothing(self, state: InferenceState, obj_id: Any, frame_idx: int):
        """A prompt whose inference fails (a stage error, a device lost) leaves the state as it was: a new
        object is not left behind without a conditioning frame (every later frame would fail on it), and an
        existing one keeps the frame's earlier prompts and outputs."""
        known = not isinstance(obj_id, bool) and isinstance(obj_id, (int, np.integer)) and int(obj_id) in state.objects
        obj = state.objects.get(int(obj_id)) if known else None
        kept = None if obj is None else [(d, d.get(frame_idx)) for d in (obj.points, obj.masks, obj.bank.temp_cond,
                                                                          obj.bank.temp_non_cond)]
        try:
            yield
        except BaseException:
            if obj is None:
                if not isinstance(obj_id, bool) and isinstance(obj_id, (int, np.integer)):
                    state.objects.pop(int(obj_id), None)
            else:
                for d, value in kept:
                    if value is None:
                        d.pop(frame_idx, None)
                    else:
                        d[frame_idx] = value
            raise

    def _prompt(self, state: InferenceState, obj: ObjectState, frame_idx: int,
                points: tuple[np.ndarray, np.ndarray] | None, mask: np.ndarray | None) -> FrameResult:
        is_init_cond = frame_idx not in obj.tracked
        reverse = False if is_init_cond else obj.tracked[frame_idx]
        is_cond = is_init_cond or state.correct_as_cond
        temp = obj.bank.temp_cond if is_cond else obj.bank.temp_non_cond
        prev_logits = None
        if points is not None:
            prev = temp.get(frame_idx) or obj.bank.cond.get(frame_idx) or obj.bank.non_cond.get(frame_idx)
            if prev is not None:
                prev_logits = np.clip(prev.pred_masks, -PREV_MASK_CLAMP, PREV_MASK_CLAMP)
        temp[frame_idx] = self._track_frame(state, obj, frame_idx, is_init_cond, points, mask, reverse,
                                            run_mem_encoder=False, prev_logits=prev_logits)
        return self._consolidated(state, frame_idx, is_cond)

    def _preflight(self, state: InferenceState) -> None:
        """Turn prompted frames into memory (from their low-res masks, binarised) before tracking."""
        if not state.objects:
            raise InputError("no object has a prompt yet: add points, a box or a mask first")
        for obj in state.objects.values():
            bank = obj.bank
            for temp, target in ((bank.temp_non_cond, bank.non_cond), (bank.temp_cond, bank.cond)):
                for frame_idx, out in temp.items():
                    if out.maskmem is None:
                        feats = self._features(state, frame_idx)
                        out.maskmem = self._encode_memory(feats, out.pred_masks, out.object_score, from_points=True)
                    target[frame_idx] = out
                temp.clear()
            if not bank.cond:
                raise InputError(f"object id {obj.obj_id} has no prompt on any frame; add one first")
            for frame_idx in bank.cond:
                bank.non_cond.pop(frame_idx, None)

    def _step(self, state: InferenceState, frame_idx: int, reverse: bool) -> FrameResult:
        outs: list[FrameOutput | None] = []
        for obj in state.objects.values():
            if frame_idx in obj.bank.cond:
                out = obj.bank.cond[frame_idx]
            elif self._keeps_correction(obj, frame_idx):
                out = obj.bank.non_cond[frame_idx]
            elif not obj.bank.cond:
                out = None  # an object whose prompts were all cleared
            else:
                out = self._track_frame(state, obj, frame_idx, False, None, None, reverse, run_mem_encoder=True)
                obj.bank.non_cond[frame_idx] = out
            obj.tracked[frame_idx] = reverse
            if state.bounded:
                self.policy.evict(obj.bank, frame_idx, self.planner.window)
            outs.append(out)
        return self._result(state, frame_idx, outs)

    def _keeps_correction(self, obj: ObjectState, frame_idx: int) -> bool:
        """A corrected frame that is not a conditioning frame: Meta's predictor tracks it anew when tracking
        passes it; the predictor of before December 2024 (EdgeTAM's) keeps the corrected output."""
        return (not self.rules.retrack_corrected_frames and frame_idx in obj.bank.non_cond
                and (frame_idx in obj.points or frame_idx in obj.masks))

    def step(self, state: InferenceState, frame_idx: int, reverse: bool = False) -> FrameResult:
        """Track one frame for every object, as propagate_in_video does per frame; prompts added since the
        last step become memory first. A frame before any prompt is encoded (so a prompt on it is quick)
        and has no objects. Streams are built on this."""
        frame_idx = self._check_frame_idx(state, frame_idx)
        if not state.objects:
            self._features(state, frame_idx)
            return self._result(state, frame_idx, [])
        self._preflight(state)
        return self._step(state, frame_idx, reverse)

    def propagate_in_video(self, state: InferenceState, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None, reverse: bool = False,
                           progress: bool | Callable[[Iterator], Iterator] = False) -> Iterator[FrameResult]:
        """Track every object frame by frame from `start_frame_idx` (default: the first prompted frame)."""
        self._preflight(state)
        n = state.num_frames
        if n is None:
            raise InputError("propagate_in_video needs a video of known length; use tracker.stream() for live frames")
        if start_frame_idx is None:
            start_frame_idx = min(t for o in state.objects.values() for t in o.bank.cond)
        start_frame_idx = self._check_frame_idx(state, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = n
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, n - 1)
            order = range(start_frame_idx, end + 1)
        frames: Any = order
        if progress:
            from tqdm import tqdm

            frames = progress(order) if callable(progress) else tqdm(order, desc="tracking", unit="frame")
        following = dict(zip(order, list(order)[1:], strict=False))  # frame -> the one tracked after it
        try:
            for frame_idx in frames:
                state.next_frame = following.get(frame_idx)
                if state.inputs is not None and (state.cached is None or state.cached[0] != frame_idx):
                    state.inputs.request(frame_idx)  # already asked for while the previous frame ran, mostly
                yield self._step(state, frame_idx, reverse)
        finally:  # also when the caller stops early: nothing more to prepare
            state.next_frame = None

    def clear_all_prompts_in_frame(self, state: InferenceState, frame_idx: int, obj_id: int,
                                   need_output: bool = True) -> FrameResult | None:
        frame_idx = self._check_frame_idx(state, frame_idx)
        obj = self._object(state, obj_id, create=False)
        obj.points.pop(frame_idx, None)
        obj.masks.pop(frame_idx, None)
        obj.bank.temp_cond.pop(frame_idx, None)
        obj.bank.temp_non_cond.pop(frame_idx, None)
        out = obj.bank.cond.pop(frame_idx, None)
        if out is not None:  # the frame's output stays, as an ordinary tracked frame
            obj.bank.non_cond[frame_idx] = out
            obj.tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.bank.temp_cond for o in state.objects.values())
        return self._consolidated(state, frame_idx, is_cond)

    def remove_object(self, state: InferenceState, obj_id: int, strict: bool = False,
                      need_output: bool = True) -> tuple[list[int], list[FrameResult]]:
        if obj_id not in state.objects:
            if strict:
                raise InputError(f"cannot remove object id {obj_id}: it does not exist; "
                                 f"known ids: {state.obj_ids or 'none'}")
            return state.obj_ids, []
        obj = state.objects.pop(obj_id)
        if not state.objects:
            self.reset_state(state)
            return [], []
        prompted = sorted(set(obj.points) | set(obj.masks))
        updated = []
        if need_output:
            for frame_idx in prompted:
                is_cond = any(frame_idx in o.bank.temp_cond for o in state.objects.values())
                updated.append(self._consolidated(state, frame_idx, is_cond))
        return state.obj_ids, updated

    def reset_state(self, state: InferenceState) -> None:
        state.objects.clear()

    def stream(self, held_frames: int = 4) -> Stream:
        """Live tracking; the last `held_frames` frames stay available for prompts (engine.live)."""
        return Stream(self, held_frames)

