"""Fixed capacities of a static model set, and the padding that fills its slots.

A static set (`python -m engine.export --static`) has memory attention over a fixed number of memory
and pointer slots and a decoder over a fixed number of point slots, each with a validity input; the
manifest's `static` section records the capacities. The tracker core always produces the dynamic
inputs (as many memories, pointers and points as Meta's rules select); `route` picks the stage file
and turns them into its fixed-size inputs, so nothing in the core depends on how the set was exported.

The capacity bounds what Meta's rules can select only if the number of prompted (conditioning) frames
in attention is capped: Meta attends to all of them, so a static set needs `tracker.max_cond_frames`,
and departs from Meta once a video has more prompted frames than the cap.

Memory attention comes in tiers: one graph for each number of prompted frames in `attention_tiers`
(by default 1 up to the cap). A slot costs its full work whether it holds a memory or not, so a video
with one prompted frame runs the one-prompt graph and pays for no slot it leaves empty; the largest
tier is `memory_attention` itself, the others are further stage files (`memory_attention_<k>cond`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError, ModelSetError

DEFAULT_COND_FRAMES = 2  # the fewest select_closest_cond_frames allows: the closest before and after
DEFAULT_POINTS = 8  # clicks and box corners of one prompt (SAM appends its padding point after them)
ATTENTION = "memory_attention"


@dataclass(frozen=True)
class AttentionTier:
    """One memory-attention graph of a static set."""

    cond_frames: int  # prompted frames it has room for (with every recent memory and pointer)
    memory_slots: int
    pointer_slots: int
    stage: str  # its key in the manifest's stages: memory_attention for the largest tier

    def fits(self, memories: int, pointers: int) -> bool:
        return memories <= self.memory_slots and pointers <= self.pointer_slots


def tier_stage(cond_frames: int, largest: int) -> str:
    return ATTENTION if cond_frames == largest else f"{ATTENTION}_{cond_frames}cond"


@dataclass(frozen=True)
class StaticShapes:
    cond_frames: int  # prompted frames in attention at most (the cap the config must name)
    memory_slots: int  # cond_frames + num_maskmem - 1 recent memories
    pointer_slots: int  # cond_frames + max_obj_ptrs_in_encoder - 1 recent pointers
    points: int  # point slots of the decoder
    # prompted-frame counts with a memory-attention graph of their own, ascending, ending at cond_frames;
    # manifests written before tiers existed hold only the largest
    attention_tiers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.attention_tiers:
            object.__setattr__(self, "attention_tiers", (self.cond_frames,))

    @classmethod
    def for_model(cls, num_maskmem: int, max_obj_ptrs: int, cond_frames: int = DEFAULT_COND_FRAMES,
                  points: int = DEFAULT_POINTS, tiers: Sequence[int] | None = None) -> StaticShapes:
        """`tiers`: prompted-frame counts to give a memory-attention graph (the cap is always one);
        None: every count from 1 to the cap."""
        if cond_frames < 2:
            raise ModelSetError(f"a static set needs at least 2 conditioning-frame slots (Meta's "
                                f"select_closest_cond_frames keeps the closest before and after), got {cond_frames}")
        if points < 1:
            raise ModelSetError(f"a static set needs at least 1 point slot, got {points}")
        chosen = range(1, cond_frames + 1) if tiers is None else tiers
        wrong = [k for k in chosen if not 1 <= k <= cond_frames]
        if wrong:
            raise ModelSetError(f"memory-attention tiers must be prompted-frame counts from 1 to the "
                                f"{cond_frames} conditioning-frame slots, got {', '.join(map(str, wrong))}")
        return cls(cond_frames, cond_frames + num_maskmem - 1, cond_frames + max_obj_ptrs - 1, points,
                   tuple(sorted({*chosen, cond_frames})))

    @property
    def tiers(self) -> tuple[AttentionTier, ...]:
        """Smallest first; each has one slot of each kind more per prompted frame."""
        recent_memories = self.memory_slots - self.cond_frames
        recent_pointers = self.pointer_slots - self.cond_frames
        return tuple(AttentionTier(k, k + recent_memories, k + recent_pointers, tier_stage(k, self.cond_frames))
                     for k in self.attention_tiers)

    @property
    def extra_stages(self) -> tuple[str, ...]:
        """Stage files beyond the four: memory attention's smaller tiers."""
        return tuple(t.stage for t in self.tiers if t.stage != ATTENTION)

    def tier_for(self, memories: int, pointers: int) -> AttentionTier:
        """The smallest memory-attention graph with room for this selection."""
        for tier in self.tiers:
            if tier.fits(memories, pointers):
                return tier
        # the tracker's cap keeps selections within the slots; reaching here is a bug, not bad input
        raise InputError(f"{memories} memory frames and {pointers} object pointers selected for memory attention, "
                         f"but the static model set has {self.memory_slots} and {self.pointer_slots} slots")

    def to_yaml(self) -> dict[str, Any]:
        return {"cond_frames": self.cond_frames, "memory_slots": self.memory_slots,
                "pointer_slots": self.pointer_slots, "points": self.points,
                "attention_tiers": list(self.attention_tiers)}

    @classmethod
    def from_yaml(cls, d: Any, source: str) -> StaticShapes:
        names = ("cond_frames", "memory_slots", "pointer_slots", "points")
        if not isinstance(d, dict) or not set(names) <= set(d) <= {*names, "attention_tiers"} or not all(
                isinstance(d[k], int) and not isinstance(d[k], bool) and d[k] >= 1 for k in names):
            raise ModelSetError(f"{source}: static section must map {', '.join(names)} to positive integers "
                                f"(and may list attention_tiers), got {d!r}")
        tiers = d.get("attention_tiers", [d["cond_frames"]])
        if (not isinstance(tiers, list) or not tiers or not all(isinstance(k, int) and k >= 1 for k in tiers)
                or tiers != sorted(set(tiers)) or tiers[-1] != d["cond_frames"]):
            raise ModelSetError(f"{source}: static attention_tiers must be ascending prompted-frame counts ending "
                                f"at cond_frames {d['cond_frames']}, got {tiers!r}")
        return cls(*(d[k] for k in names), tuple(tiers))

    def check_cap(self, max_cond_frames: int, source: str) -> None:
        """The tracker's cap on prompted frames must fit the slots; -1 (Meta's 'all') cannot."""
        if max_cond_frames == -1:
            raise ConfigError(
                f"{source} has static shapes with {self.cond_frames} conditioning-frame slots, but the config "
                f"names no cap on prompted frames in attention (Meta attends to all of them). Set "
                f"tracker.max_cond_frames to 2..{self.cond_frames}: results equal Meta's until a video has more "
                f"prompted frames than that; or use a dynamic model set")
        if max_cond_frames > self.cond_frames:
            raise ConfigError(f"tracker.max_cond_frames {max_cond_frames} exceeds the {self.cond_frames} "
                                f"conditioning-frame slots of the static set {source}; lower it or re-export "
                                f"with --cond-slots {max_cond_frames}")

    def route(self, stage: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Dynamic stage inputs -> (the stage file to run, its fixed-size inputs). Memory attention goes to
        the smallest tier with room; memory a store has already filled into slots (`memory_valid` given)
        goes to the tier of that many slots."""
        if stage != ATTENTION:
            return stage, self.pad(stage, inputs)
        pointers = int(inputs["obj_ptrs"].shape[0])
        if "memory_valid" in inputs:
            slots = int(inputs["memory_valid"].shape[0])
            tier = next((t for t in self.tiers if t.memory_slots == slots), None)
            if tier is None or not tier.fits(slots, pointers):
                raise InputError(f"memory filled into {slots} slots with {pointers} object pointers matches no "
                                 f"memory-attention tier of this static set "
                                 f"({', '.join(f'{t.memory_slots}+{t.pointer_slots}' for t in self.tiers)})")
        else:
            tier = self.tier_for(int(inputs["memory"].shape[0]), pointers)
        return tier.stage, self.pad(tier.stage, inputs)

    def memory_capacity(self, memories: int, pointers: int) -> int:
        """Memory slots of the tier `route` will choose for this selection (for a store that fills them)."""
        return self.tier_for(memories, pointers).memory_slots

    def pad(self, stage: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Dynamic inputs -> those of stage file `stage` (slots filled in order, then zeros, plus validity)."""
        tier = next((t for t in self.tiers if t.stage == stage), None)
        if tier is not None:
            out = dict(inputs)
            if "memory_valid" in inputs:  # a memory store filled the slots where the values live
                if inputs["memory_valid"].shape[0] != tier.memory_slots:
                    raise InputError(f"memory filled into {inputs['memory_valid'].shape[0]} slots, but {stage} "
                                     f"has {tier.memory_slots}")
            else:
                out["memory"], out["memory_pos"], out["memory_valid"] = _fill(
                    "memory frames", tier.memory_slots, inputs["memory"], inputs["memory_pos"])
            out["obj_ptrs"], out["obj_ptr_pos"], out["obj_ptr_valid"] = _fill(
                "object pointers", tier.pointer_slots, inputs["obj_ptrs"], inputs["obj_ptr_pos"])
            return out
        if stage == "mask_decoder":
            out = dict(inputs)
            coords, labels = inputs["point_coords"][0], inputs["point_labels"][0]
            n = labels.shape[0]
            if n > self.points:
                raise InputError(f"this prompt has {n} points (clicks and box corners), but the static model set "
                                 f"has {self.points} point slots; re-export with --static-points {n} or more, or "
                                 f"use a dynamic model set")
            c = np.zeros((1, self.points, 2), np.float32)
            c[0, :n] = coords
            lab = np.full((1, self.points), -1, np.int32)
            lab[0, :n] = labels
            valid = np.zeros((1, self.points), np.float32)
            valid[0, :n] = 1.0
            out["point_coords"], out["point_labels"], out["point_valid"] = c, lab, valid
            return out
        return dict(inputs)


def _fill(what: str, slots: int, values: np.ndarray, positions: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = values.shape[0]
    if n > slots:
        # the tracker's cap keeps selections within the slots; reaching here is a bug, not bad input
        raise InputError(f"{n} {what} selected for memory attention, but the static model set has {slots} slots")
    v = np.zeros((slots, *values.shape[1:]), np.float32)
    p = np.zeros((slots, *positions.shape[1:]), np.float32)
    v[:n] = values
    p[:n] = positions
    valid = np.zeros(slots, np.float32)
    valid[:n] = 1.0
    return v, p, valid
