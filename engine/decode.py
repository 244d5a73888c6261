"""From the mask decoder's four tokens to one mask and one object pointer, as SAM 2's heads choose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.rules import ModelRules

NO_OBJ_SCORE = -1024.0


@dataclass
class Decoded:
    low_res: np.ndarray  # [h4, w4] float32 logits of the chosen mask (-1024 where the object is absent)
    obj_ptr: np.ndarray  # [256]
    object_score: float
    iou: float
    kf_score: float | None = None  # a motion-aware policy's score of the chosen mask (engine.policies.samurai)
    candidate: int = 0  # which of the decoder's masks: 0 the single-mask token, 1-3 the multimask ones


def stability_score(mask: np.ndarray, delta: float) -> float:
    inter = np.count_nonzero(mask > delta)
    union = np.count_nonzero(mask > -delta)
    return inter / union if union > 0 else 1.0


def select_mask(outputs: dict[str, np.ndarray], multimask: bool, rules: ModelRules,
                no_obj_ptr: np.ndarray) -> Decoded:
    """Mirror of SAM2Base._forward_sam_heads after the decoder graph (which returns all four tokens)."""
    masks = outputs["masks"][0]  # [4, h, w]
    ious = outputs["iou"][0]
    ptrs = outputs["obj_ptr"][0]  # [4, 256]
    score = float(outputs["object_score"].reshape(-1)[0])
    if multimask:
        best = 1 + int(np.argmax(ious[1:]))
        token = best if rules.use_multimask_token_for_obj_ptr else 0
    else:
        best = 0
        if rules.dynamic_multimask_via_stability:
            if stability_score(masks[0], rules.dynamic_multimask_stability_delta) < \
                    rules.dynamic_multimask_stability_thresh:
                best = 1 + int(np.argmax(ious[1:]))
        token = 0  # a single-mask output takes its pointer from token 0 whatever the fallback chose
    low_res = masks[best].astype(np.float32, copy=True)
    ptr = ptrs[token].astype(np.float32, copy=True)
    if rules.pred_obj_scores:
        present = score > 0
        if not present:
            low_res[:] = NO_OBJ_SCORE
        ptr = mix_no_obj_ptr(ptr, score, rules, no_obj_ptr)
    return Decoded(low_res=low_res, obj_ptr=ptr, object_score=score, iou=float(ious[best]), candidate=best)


def mix_no_obj_ptr(ptr: np.ndarray, score: float, rules: ModelRules, no_obj_ptr: np.ndarray) -> np.ndarray:
    lam = 1.0 / (1.0 + np.exp(-score)) if rules.soft_no_obj_ptr else float(score > 0)
    if rules.fixed_no_obj_ptr:
        ptr = lam * ptr
    return (ptr + (1.0 - lam) * no_obj_ptr).astype(np.float32)


def use_multimask(rules: ModelRules, is_init_cond_frame: bool, num_points: int) -> bool:
    return bool(
        rules.multimask_output_in_sam
        and (is_init_cond_frame or rules.multimask_output_for_tracking)
        and rules.multimask_min_pt_num <= num_points <= rules.multimask_max_pt_num
    )
