"""The model's tracking rules: one typed, frozen object built from a manifest's `model` section.

Every flag the numpy core reads is a field here, with its type checked at load. Flags whose other value
the engine does not implement are refused with their name, so a model set is never run by rules it
was not built for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from engine.errors import ModelSetError


@dataclass(frozen=True)
class ModelRules:
    image_size: int
    backbone_stride: int
    hidden_dim: int
    mem_dim: int
    num_maskmem: int
    max_obj_ptrs_in_encoder: int
    max_cond_frames_in_attn: int
    memory_temporal_stride_for_eval: int
    sigmoid_scale_for_mem_enc: float
    sigmoid_bias_for_mem_enc: float
    directly_add_no_mem_embed: bool
    use_obj_ptrs_in_encoder: bool
    add_tpos_enc_to_obj_ptrs: bool
    proj_tpos_enc_in_obj_ptrs: bool
    use_signed_tpos_enc_to_obj_ptrs: bool
    only_obj_ptrs_in_the_past_for_eval: bool
    multimask_output_in_sam: bool
    multimask_output_for_tracking: bool
    multimask_min_pt_num: int
    multimask_max_pt_num: int
    use_multimask_token_for_obj_ptr: bool
    pred_obj_scores: bool
    soft_no_obj_ptr: bool
    fixed_no_obj_ptr: bool
    use_mask_input_as_output_without_sam: bool
    binarize_mask_from_pts_for_mem_enc: bool
    fill_hole_area: int
    non_overlap_masks: bool
    no_obj_embed_spatial: bool
    dynamic_multimask_via_stability: bool
    dynamic_multimask_stability_delta: float
    dynamic_multimask_stability_thresh: float
    # optional in a manifest (older exports lack them); the reference's defaults
    non_overlap_masks_for_mem_enc: bool = False
    clear_non_cond_mem_around_input: bool = False
    # a rule of the video predictor the model was exported for: Meta's current one tracks a corrected
    # non-conditioning frame anew when propagation passes it; EdgeTAM's (of before December 2024) keeps it
    retrack_corrected_frames: bool = True

    @property
    def feat_size(self) -> int:
        return self.image_size // self.backbone_stride

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in OPTIONAL)

    @classmethod
    def from_manifest(cls, model: dict[str, Any], source: str) -> ModelRules:
        """Type-check every flag and refuse the ones the engine cannot honour."""
        missing = [k for k in cls.required_keys() if k not in model]
        if missing:
            raise ModelSetError(f"{source}: model section lacks {', '.join(missing)}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in model:
                continue
            v = model[f.name]
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            ok = (isinstance(v, bool) if kind == "bool"
                  else isinstance(v, int) and not isinstance(v, bool) if kind == "int"
                  else isinstance(v, (int, float)) and not isinstance(v, bool))
            if not ok:
                raise ModelSetError(f"{source}: model.{f.name} is {v!r}; expected a {kind}")
            values[f.name] = float(v) if kind == "float" else v
        rules = cls(**values)
        rules._refuse_unsupported(source)
        return rules

    def _refuse_unsupported(self, source: str) -> None:
        def refuse(flag: str, why: str) -> None:
            raise ModelSetError(f"{source}: model.{flag} = {getattr(self, flag)!r} is not supported by this "
                                f"engine ({why}); it would track by other rules than the model was built for")

        if not self.directly_add_no_mem_embed:
            refuse("directly_add_no_mem_embed", "a first frame must add no_mem_embed to its features")
        if not self.use_mask_input_as_output_without_sam:
            refuse("use_mask_input_as_output_without_sam", "a mask prompt is taken as the frame's output")
        if self.num_maskmem < 1:
            refuse("num_maskmem", "the engine tracks from a memory of at least one frame")
        if self.max_cond_frames_in_attn != -1 and self.max_cond_frames_in_attn < 2:
            refuse("max_cond_frames_in_attn", "expected -1 (all prompted frames) or at least 2")
        if self.memory_temporal_stride_for_eval < 1:
            refuse("memory_temporal_stride_for_eval", "expected a stride of at least 1")
        if self.non_overlap_masks_for_mem_enc:
            refuse("non_overlap_masks_for_mem_enc", "objects are tracked independently, as the video predictor does")
        if self.clear_non_cond_mem_around_input:
            refuse("clear_non_cond_mem_around_input", "memory around a correction is kept, the predictor's default")
        if self.fill_hole_area < 0:
            refuse("fill_hole_area", "expected an area of 0 or more pixels")
        if self.image_size % self.backbone_stride:
            refuse("image_size", f"expected a multiple of backbone_stride {self.backbone_stride}")


OPTIONAL = ("non_overlap_masks_for_mem_enc", "clear_non_cond_mem_around_input", "retrack_corrected_frames")
