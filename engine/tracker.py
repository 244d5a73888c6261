"""The public tracking API, mirroring Meta's SAM2VideoPredictor on ONNX stage models and numpy.

Every rule here follows sam2/sam2_video_predictor.py and sam2/modeling/sam2_base.py: which frames and
pointers enter memory attention (engine.memory), how a mask and a pointer are chosen (engine.decode),
how prompted frames are turned into memory before propagation (preflight), hole filling, and the
outputs at video resolution. No torch is imported here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.config import EngineConfig, TrackerSettings, load_config
from engine.decode import NO_OBJ_SCORE, Decoded, mix_no_obj_ptr, select_mask, use_multimask
from engine.errors import ConfigError, InputError
from engine.memory import FrameOutput, MemoryPlanner, ObjectMemory
from engine.memory_store import MemorySpec
from engine.modelset import ModelSet
from engine.postprocess import fill_holes, to_video_logits
from engine.prefetch import FramePrefetcher
from engine.preprocess import prompt_mask, prompt_points, resize_antialias, resize_bilinear
from engine.stages import StageSet
from engine.video import FrameSource, LiveSource, open_video

PREV_MASK_CLAMP = 32.0  # SAM 2 clamps a frame's previous logits before feeding them back as a mask prompt


@dataclass
class FrameFeatures:
    """The image encoder's outputs: numpy arrays, or DeviceTensors on a stage set that keeps them on its device."""

    vision_feat: Any  # [1, 256, h, w]
    high_res_feat0: Any
    high_res_feat1: Any


@dataclass
class ObjectState:
    obj_id: int
    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model-space coords, labels
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # S x S bool mask prompts
    bank: ObjectMemory = field(default_factory=ObjectMemory)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse


class InferenceState:
    """Everything the tracker knows about one video."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.objects: OrderedDict[int, ObjectState] = OrderedDict()
        self.cached: tuple[int, FrameFeatures] | None = None
        self.correct_as_cond = False  # streams make every correction a conditioning frame
        self.bounded = False  # drop tracked frames the memory rules can no longer reach (streams, or by config)
        self.inputs: FramePrefetcher | None = None  # model inputs of frames; the next one prepared ahead
        self.next_frame: int | None = None  # that frame, while propagate_in_video runs

    @property
    def num_frames(self) -> int | None:
        return self.source.num_frames

    @property
    def video_hw(self) -> tuple[int, int]:
        return self.source.height, self.source.width

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    def memory_bytes(self) -> int:
        feats = 0 if self.cached is None else sum(a.nbytes for a in vars(self.cached[1]).values())
        return feats + sum(o.bank.nbytes() for o in self.objects.values())

    def stored_frames(self) -> int:
        return sum(len(o.bank.cond) + len(o.bank.non_cond) + len(o.bank.temp_cond) + len(o.bank.temp_non_cond)
                   for o in self.objects.values())


@dataclass
class FrameResult:
    """Masks of every object on one frame. Unpacks as (frame_idx, obj_ids, masks) like the reference."""

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray  # [n_obj, H, W] bool at the video's size
    low_res_logits: np.ndarray  # [n_obj, h4, w4] float32 (model's mask resolution)
    object_scores: np.ndarray  # [n_obj] float32 (> 0: the object is present)
    video_logits: np.ndarray | None = None  # [n_obj, H, W], when asked for

    def __iter__(self):
        return iter((self.frame_idx, self.obj_ids, self.masks))


class Tracker:
    """SAM 2 video tracker on four stage models (SAM 2, SAM 2.1 or EdgeTAM: the model set says which; the
    rules are the same). Build with `Tracker.from_config(...)`."""

    def __init__(self, modelset: ModelSet, stages: StageSet, settings: TrackerSettings | None = None) -> None:
        self.modelset = modelset
        self.stages = stages
        self.settings = settings or TrackerSettings()
        self.rules = modelset.manifest.rules
        self.constants = modelset.constants
        self.image_size = modelset.manifest.image_size
        if self.settings.memory_frames > self.rules.num_maskmem:
            raise ConfigError(f"tracker.memory_frames {self.settings.memory_frames} exceeds the model's "
                              f"num_maskmem {self.rules.num_maskmem}")
        self.planner = MemoryPlanner(self.rules, self.constants, self.settings.memory_frames,
                                     self.settings.max_obj_ptrs, self.settings.max_cond_frames)
        if modelset.manifest.static is not None:
            modelset.manifest.static.check_cap(self.planner.max_cond, str(modelset.root))
        self.fill_hole_area = (self.rules.fill_hole_area if self.settings.fill_hole_area is None
                               else self.settings.fill_hole_area)
        self.non_overlap_masks = (self.rules.non_overlap_masks if self.settings.non_overlap_masks is None
                                  else self.settings.non_overlap_masks)
        self.store = stages.memory_store(MemorySpec.for_model(self.rules, self.constants, self.settings.memory_dtype))
        self.no_obj_ptr = self.constants["no_obj_ptr"]
        self.no_mem_embed = self.constants["no_mem_embed"].reshape(1, -1, 1, 1)
        self.return_video_logits = False

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
                "static_shapes": (self.modelset.manifest.static.to_yaml() if self.modelset.manifest.static
                                  else None),
                "stage_precision": (self.modelset.manifest.provenance.get("quantization") or {}).get("stages"),
                "bytes_per_stored_frame": self.bytes_per_stored_frame()}

    def bytes_per_stored_frame(self) -> int:
        """What one object keeps per frame it has an output for (low-res logits, pointer, memory features):
        an offline run with offline_memory "all" grows by this per tracked frame and object."""
        r = self.rules
        low_res = (r.image_size // 4) ** 2 * 4
        a, b = self.modelset.manifest.memory_grid  # the feature grid, or EdgeTAM's latents
        features = r.mem_dim * a * b * (2 if self.settings.memory_dtype == "bfloat16" else 4)
        return low_res + r.hidden_dim * 4 + features

    # ------------------------------------------------------------------ stage calls
    def _run(self, stage: str, inputs: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
        """A stage call; outputs named in `keep` only go on to other stages, so they may stay on the device."""
        out = self.stages.run(stage, inputs, keep)
        if stage == "mask_decoder":
            # every stage's output reaches the decoder's within a frame or two, so checking its (small)
            # outputs catches a broken model or runtime without scanning the large feature maps
            for name, value in out.items():
                if not np.isfinite(np.sum(value, dtype=np.float64)):
                    raise InputError(f"stage {stage} returned NaN or Inf in {name}: the model set or the runtime "
                                     f"is broken (try precision f32, or re-export the model set)")
        return out

    def _features(self, state: InferenceState, frame_idx: int) -> FrameFeatures:
        if state.cached is not None and state.cached[0] == frame_idx:
            return state.cached[1]
        if state.inputs is None:
            state.inputs = FramePrefetcher(state.source, self.image_size, ahead=self.settings.prefetch_frames)
        image = state.inputs.get(frame_idx)
        if state.next_frame is not None:  # decoded and resized while this frame's stages run
            state.inputs.request(state.next_frame)
        out = self._run("image_encoder", {"image": image}, keep=("vision_feat", "high_res_feat0", "high_res_feat1"))
        feats = FrameFeatures(out["vision_feat"], out["high_res_feat0"], out["high_res_feat1"])
        state.cached = (frame_idx, feats)
        return feats

    def _decode(self, embed: Any, feats: FrameFeatures, points: tuple[np.ndarray, np.ndarray] | None,
                mask_input: np.ndarray | None, multimask: bool) -> Decoded:
        if points is None:  # SAM 2 feeds one padding point (label -1) when there are no clicks
            coords, labels = np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.int32)
        else:
            coords, labels = points[0][None].astype(np.float32), points[1][None].astype(np.int32)
        side = 4 * feats.vision_feat.shape[-1]
        has = mask_input is not None
        out = self._run("mask_decoder", {
            "image_embed": embed,
            "high_res_feat0": feats.high_res_feat0, "high_res_feat1": feats.high_res_feat1,
            "point_coords": coords, "point_labels": labels,
            "mask_input": (mask_input.reshape(1, 1, side, side).astype(np.float32) if has
                           else np.zeros((1, 1, side, side), np.float32)),
            "has_mask_input": np.array([1.0 if has else 0.0], np.float32),
        })
        return select_mask(out, multimask, self.rules, self.no_obj_ptr)

    def _mask_as_output(self, feats: FrameFeatures, mask: np.ndarray) -> Decoded:
        """SAM2Base._use_mask_as_output: the mask is the output; the decoder only makes its pointer."""
        high = mask * 20.0 - 10.0
        side = high.shape[0] // 4
        low = resize_antialias(high, (side, side))
        w = self.constants["mask_downsample_weight"].reshape(4, 4)
        b = float(self.constants["mask_downsample_bias"].reshape(-1)[0])
        down = np.einsum("iajb,ab->ij", mask.reshape(side, 4, side, 4), w) + b  # Conv2d 1->1, k4 s4
        ptr = self._decode(feats.vision_feat, feats, None, down.astype(np.float32), multimask=False).obj_ptr
        present = bool(np.any(mask > 0))
        score = 10.0 if present else -10.0
        if self.rules.pred_obj_scores:
            ptr = mix_no_obj_ptr(ptr, score, self.rules, self.no_obj_ptr)
        return Decoded(low_res=low, obj_ptr=ptr, object_score=score, iou=1.0)

    def _encode_memory(self, feats: FrameFeatures, low_res: np.ndarray, score: float, from_points: bool) -> np.ndarray:
        high = resize_bilinear(low_res, (self.image_size, self.image_size))
        if self.rules.binarize_mask_from_pts_for_mem_enc and from_points:
            mask = (high > 0).astype(np.float32)
        else:  # sigmoid; OpenCV's exp is several times faster than numpy's and gives inf, not a warning
            mask = cv2.exp(-high)
            mask += 1.0
            np.reciprocal(mask, out=mask)
        mask *= np.float32(self.rules.sigmoid_scale_for_mem_enc)
        mask += np.float32(self.rules.sigmoid_bias_for_mem_enc)
        out = self._run("memory_encoder", {"pix_feat": feats.vision_feat, "mask_for_mem": mask[None, None]},
                        keep=("maskmem_features",))
        return self.store.keep(out["maskmem_features"], absent=score <= 0)

    def _track_frame(self, state: InferenceState, obj: ObjectState, frame_idx: int, is_init_cond: bool,
                     points: tuple[np.ndarray, np.ndarray] | None, mask: np.ndarray | None, reverse: bool,
                     run_mem_encoder: bool, prev_logits: np.ndarray | None = None) -> FrameOutput:
        """SAM2VideoPredictor._run_single_frame_inference for one object."""
        feats = self._features(state, frame_idx)
        if mask is not None and self.rules.use_mask_input_as_output_without_sam:
            decoded = self._mask_as_output(feats, mask)
        else:
            if is_init_cond:
                embed = self.stages.to_host(feats.vision_feat) + self.no_mem_embed
            else:
                mem = self.planner.plan(obj.bank, frame_idx, state.num_frames, reverse)
                if not mem.memories:
                    raise InputError(f"object {obj.obj_id} has no memory to track frame {frame_idx} from; "
                                     f"add a prompt first")
                # a static set on a device takes memory filled into the slots of the graph that will run
                capacity = self.stages.memory_capacity(len(mem.memories), len(mem.obj_ptrs))
                embed = self._run("memory_attention", {
                    "curr": feats.vision_feat, **self.store.gather(mem.memories, mem.slots, capacity),
                    "obj_ptrs": mem.obj_ptrs, "obj_ptr_pos": mem.obj_ptr_pos},
                    keep=("pix_feat_with_mem",))["pix_feat_with_mem"]
            n_points = 0 if points is None else int(points[1].shape[0])
            decoded = self._decode(embed, feats, points, prev_logits,
                                   use_multimask(self.rules, is_init_cond, n_points))
        maskmem = (self._encode_memory(feats, decoded.low_res, decoded.object_score, points is not None)
                   if run_mem_encoder else None)
        return FrameOutput(pred_masks=fill_holes(decoded.low_res, self.fill_hole_area), obj_ptr=decoded.obj_ptr,
                           object_score=decoded.object_score, maskmem=maskmem, iou=decoded.iou)

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
        obj = self._object(state, obj_id, create=True)
        obj.masks[frame_idx] = m > 0
        obj.points.pop(frame_idx, None)
        return self._prompt(state, obj, frame_idx, points=None, mask=m)

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
                obj.bank.evict(frame_idx, self.planner.window)
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


class Stream:
    """Live tracking: push frames one by one; prompts apply to the current frame at any time.

    Corrections on a frame that was already tracked become conditioning frames (SAM 2's
    add_all_frames_to_correct_as_cond), so they keep steering the object instead of leaving memory after
    six frames. Memory stays bounded: tracked frames older than the rules can select are dropped (a
    stream never goes back, so its masks are still those of Meta's predictor run with that flag).
    """

    def __init__(self, tracker: Tracker, held_frames: int = LiveSource.cache_size) -> None:
        self.tracker = tracker
        self.source = LiveSource(held_frames=held_frames)
        self.state = InferenceState(self.source)
        self.state.correct_as_cond = True
        self.state.bounded = True
        self.frame_idx = -1

    def _current(self) -> int:
        if self.frame_idx < 0:
            raise InputError("no frame yet: call track(frame) first, then prompt on it")
        return self.frame_idx

    def track(self, frame: np.ndarray) -> FrameResult:
        """Add the next frame and return every object's mask on it."""
        self.frame_idx = self.source.push(frame)
        result = self.tracker.step(self.state, self.frame_idx)
        window = self.tracker.planner.window
        for obj in self.state.objects.values():
            for t in [t for t in obj.tracked if t < self.frame_idx - window]:
                del obj.tracked[t]
        return result

    def add_new_points_or_box(self, obj_id: int, points=None, labels=None, box=None,
                              clear_old_points: bool = True) -> FrameResult:
        return self.tracker.add_new_points_or_box(self.state, self._current(), obj_id, points=points, labels=labels,
                                                  clear_old_points=clear_old_points, box=box)

    def add_new_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        return self.tracker.add_new_mask(self.state, self._current(), obj_id, mask)

    def remove_object(self, obj_id: int) -> None:
        self.tracker.remove_object(self.state, obj_id, strict=True, need_output=False)

    @property
    def obj_ids(self) -> list[int]:
        return self.state.obj_ids

    def memory_bytes(self) -> int:
        return self.state.memory_bytes()
