"""The memory bank of one object: which frames and pointers enter memory attention, and bounded storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.rules import ModelRules


@dataclass
class FrameOutput:
    """What one tracked or prompted frame leaves behind for one object."""

    pred_masks: np.ndarray  # [h4, w4] float32 low-res logits (hole-filled)
    obj_ptr: np.ndarray  # [256]
    object_score: float
    maskmem: Any = None  # what the memory store keeps: [64, a, b] numpy (float32 or bfloat16 bits) or a device value
    iou: float = 0.0
    kf_score: float | None = None  # a motion-aware policy's score (engine.policies.samurai)
    candidate: int = 0  # which of the decoder's masks was chosen (engine.decode.Decoded.candidate)

    def nbytes(self) -> int:
        return self.pred_masks.nbytes + self.obj_ptr.nbytes + (0 if self.maskmem is None else self.maskmem.nbytes)


@dataclass
class MemoryInputs:
    """What memory attention attends to, as the rules select it: stored memories with their temporal slots
    (a memory store turns them into the stage's memory and memory_pos), and the pointers themselves."""

    memories: list[Any]  # FrameOutput.maskmem of each selected frame
    slots: list[int]  # temporal slot of each: index into MemorySpec.slot_pos
    obj_ptrs: np.ndarray  # [N, 256]
    obj_ptr_pos: np.ndarray  # [N, 64]
    memory_frames: list[int]
    pointer_frames: list[int]


def sine_pe_1d(positions: np.ndarray, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """As sam2_utils.get_1d_sine_pe: half sin, half cos."""
    pe_dim = dim // 2
    dim_t = temperature ** (2 * (np.arange(pe_dim, dtype=np.float32) // 2) / pe_dim)
    pe = positions.astype(np.float32)[:, None] / dim_t.astype(np.float32)
    return np.concatenate([np.sin(pe), np.cos(pe)], axis=-1).astype(np.float32)


def select_closest_cond_frames(frame_idx: int, cond: dict[int, FrameOutput], max_cond: int):
    """As sam2_utils.select_closest_cond_frames: all when max_cond is -1 or enough, else the closest."""
    if max_cond == -1 or len(cond) <= max_cond:
        return dict(cond), {}
    assert max_cond >= 2, "max_cond_frames_in_attn must be -1 or at least 2"
    selected: dict[int, FrameOutput] = {}
    before = max((t for t in cond if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = max_cond - len(selected)
    for t in sorted((t for t in cond if t not in selected), key=lambda x: abs(x - frame_idx))[:rest]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}


@dataclass
class ObjectMemory:
    """Outputs of one object: prompted (conditioning) frames, tracked frames, and not yet consolidated ones."""

    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = field(default_factory=dict)

    def get(self, frame_idx: int) -> FrameOutput | None:
        for d in (self.temp_cond, self.temp_non_cond, self.cond, self.non_cond):
            if frame_idx in d:
                return d[frame_idx]
        return None

    def clear(self) -> None:
        for d in (self.cond, self.non_cond, self.temp_cond, self.temp_non_cond):
            d.clear()

    def evict(self, frame_idx: int, window: int) -> None:
        """Drop tracked frames farther than `window` from `frame_idx`: no rule can select them any more
        while tracking proceeds from here (prompted frames are always kept)."""
        for t in [t for t in self.non_cond if abs(t - frame_idx) > window]:
            del self.non_cond[t]

    def nbytes(self) -> int:
        return sum(o.nbytes() for d in (self.cond, self.non_cond, self.temp_cond, self.temp_non_cond)
                   for o in d.values())


class MemoryPlanner:
    """SAM2Base._prepare_memory_conditioned_features, as a pure function of the bank and the model's rules."""

    def __init__(self, rules: ModelRules, constants: dict[str, np.ndarray], memory_frames: int,
                 max_obj_ptrs: int, max_cond_frames: int | None = None, policy: Any = None) -> None:
        self.rules = rules
        # which tracked frames are memories: a policy's (engine.policies), else Meta's rule (recent_frames)
        self.policy = policy
        # -1: every prompted frame, as Meta's default; a cap keeps the closest ones (static sets need one)
        self.max_cond = rules.max_cond_frames_in_attn if max_cond_frames is None else max_cond_frames
        self.num_maskmem = rules.num_maskmem
        self.recent = min(memory_frames, self.num_maskmem) - 1  # t_pos 1..recent counted from the newest
        self.stride = rules.memory_temporal_stride_for_eval
        self.max_ptrs_model = rules.max_obj_ptrs_in_encoder
        self.max_ptrs = min(max_obj_ptrs, self.max_ptrs_model)
        self.mem_dim = rules.mem_dim
        self.hidden_dim = rules.hidden_dim
        self.tpos_w = constants.get("obj_ptr_tpos_proj_weight")
        self.tpos_b = constants.get("obj_ptr_tpos_proj_bias")

    @property
    def window(self) -> int:
        """How far back (in frames) any rule can reach from the frame being tracked."""
        spatial = (self.num_maskmem + 1) * self.stride
        return max(spatial, self.max_ptrs_model)

    def _prev_frame(self, frame_idx: int, t_rel: int, reverse: bool) -> int:
        r = self.stride
        if t_rel == 1:
            return frame_idx + 1 if reverse else frame_idx - 1
        if not reverse:
            return ((frame_idx - 2) // r) * r - (t_rel - 2) * r
        return -(-(frame_idx + 2) // r) * r + (t_rel - 2) * r

    def recent_frames(self, bank: ObjectMemory, frame_idx: int, reverse: bool,
               unselected: dict[int, FrameOutput]) -> list[tuple[int, int, FrameOutput]]:
        """Meta's rule for the tracked frames in memory: the newest ones (every stride-th beyond the last),
        each with its temporal slot t_pos."""
        entries = []
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos
            if t_rel > self.recent:
                continue  # memory_frames below the model's num_maskmem drops the oldest memories
            prev = self._prev_frame(frame_idx, t_rel, reverse)
            out = bank.non_cond.get(prev, unselected.get(prev))
            if out is not None:
                entries.append((t_pos, prev, out))
        return entries

    def plan(self, bank: ObjectMemory, frame_idx: int, num_frames: int | None, reverse: bool) -> MemoryInputs:
        rules = self.rules
        selected, unselected = select_closest_cond_frames(frame_idx, bank.cond, self.max_cond)
        entries: list[tuple[int, int, FrameOutput]] = [(0, t, out) for t, out in selected.items()]
        entries += (self.recent_frames(bank, frame_idx, reverse, unselected) if self.policy is None
                    else self.policy.recent_memories(self, bank, frame_idx, reverse, unselected))
        entries = [e for e in entries if e[2].maskmem is not None]

        ptrs, ptr_pos_raw, ptr_frames = [], [], []
        if rules.use_obj_ptrs_in_encoder:
            n_frames = num_frames if num_frames is not None else self.max_ptrs_model
            max_ptrs_norm = min(n_frames, self.max_ptrs_model)
            max_ptrs = min(n_frames, self.max_ptrs)
            sign = -1 if reverse else 1
            for t, out in selected.items():
                if rules.only_obj_ptrs_in_the_past_for_eval and (t < frame_idx if reverse else t > frame_idx):
                    continue
                d = (frame_idx - t) * sign if rules.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t)
                ptrs.append(out.obj_ptr)
                ptr_pos_raw.append(d)
                ptr_frames.append(t)
            for t_diff in range(1, max_ptrs):
                t = frame_idx + t_diff if reverse else frame_idx - t_diff
                if t < 0 or (num_frames is not None and t >= num_frames):
                    break
                out = bank.non_cond.get(t, unselected.get(t))
                if out is not None:
                    ptrs.append(out.obj_ptr)
                    ptr_pos_raw.append(t_diff)
                    ptr_frames.append(t)
            ptr_pos = self._pointer_positions(np.asarray(ptr_pos_raw, np.float32), max_ptrs_norm - 1)
        else:
            ptr_pos = np.zeros((0, self.mem_dim), np.float32)
        return MemoryInputs(
            memories=[out.maskmem for _, _, out in entries],
            slots=[self.num_maskmem - t_pos - 1 for t_pos, _, _ in entries],  # as maskmem_tpos_enc is indexed
            obj_ptrs=np.stack(ptrs).astype(np.float32) if ptrs else np.zeros((0, self.hidden_dim), np.float32),
            obj_ptr_pos=ptr_pos,
            memory_frames=[t for _, t, _ in entries],
            pointer_frames=ptr_frames,
        )

    def _pointer_positions(self, dist: np.ndarray, t_diff_max: int) -> np.ndarray:
        n = dist.shape[0]
        if n == 0:
            return np.zeros((0, self.mem_dim), np.float32)
        if not self.rules.add_tpos_enc_to_obj_ptrs:
            return np.zeros((n, self.mem_dim), np.float32)  # SAM 2.0: pointers carry no temporal position
        proj = self.rules.proj_tpos_enc_in_obj_ptrs
        pe = sine_pe_1d(dist / max(t_diff_max, 1), self.hidden_dim if proj else self.mem_dim)
        if proj:
            pe = pe @ self.tpos_w.T + self.tpos_b
        return pe.astype(np.float32)
