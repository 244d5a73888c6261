"""One frame's inference for one object, as SAM2Base does it, on the four stage models and numpy.

`FrameInference` holds the model's rules, the memory planner and store, and runs the stages: image
features (through the prefetcher), memory attention over the planned memory, the decoder and its mask
choice, and the memory encoder. The video predictor's bookkeeping (prompts, preflight, propagation,
results) is `engine.tracker.Tracker`, built on it as Meta's SAM2VideoPredictor is on SAM2Base.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from engine.config import TrackerSettings
from engine.decode import Decoded, mix_no_obj_ptr, use_multimask
from engine.errors import ConfigError, InputError
from engine.memory import FrameOutput, MemoryPlanner
from engine.memory_store import MemorySpec
from engine.modelset import ModelSet
from engine.policies import make_policy
from engine.postprocess import fill_holes
from engine.prefetch import FramePrefetcher
from engine.preprocess import resize_antialias, resize_bilinear
from engine.stages import StageSet
from engine.state import FrameFeatures, InferenceState, ObjectState


class FrameInference:
    """The model, its rules and its memory machinery, and one frame's stage calls for one object."""

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
        self.policy = make_policy(self.settings.policy, self.rules, self.settings.samurai, self.image_size)
        self.planner = MemoryPlanner(self.rules, self.constants, self.settings.memory_frames,
                                     self.settings.max_obj_ptrs, self.settings.max_cond_frames, self.policy)
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
                mask_input: np.ndarray | None, multimask: bool, obj: ObjectState | None = None) -> Decoded:
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
        return self.policy.select(out, multimask, obj, self.no_obj_ptr)

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
                                   use_multimask(self.rules, is_init_cond, n_points), obj)
        maskmem = (self._encode_memory(feats, decoded.low_res, decoded.object_score, points is not None)
                   if run_mem_encoder else None)
        return FrameOutput(pred_masks=fill_holes(decoded.low_res, self.fill_hole_area), obj_ptr=decoded.obj_ptr,
                           object_score=decoded.object_score, maskmem=maskmem, iou=decoded.iou,
                           kf_score=decoded.kf_score, candidate=decoded.candidate)
