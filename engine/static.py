"""Fixed capacities of a static model set, and the padding that fills its slots.

A static set (`python -m engine.export --static`) has memory attention over a fixed number of memory
and pointer slots and a decoder over a fixed number of point slots, each with a validity input; the
manifest's `static` section records the capacities. The tracker core always produces the dynamic
inputs (as many memories, pointers and points as Meta's rules select); `pad` turns them into the
fixed-size ones, so nothing in the core depends on how the set was exported.

The capacity bounds what Meta's rules can select only if the number of prompted (conditioning) frames
in attention is capped: Meta attends to all of them, so a static set needs `tracker.max_cond_frames`,
and departs from Meta once a video has more prompted frames than the cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError, ModelSetError

DEFAULT_COND_FRAMES = 2  # the fewest select_closest_cond_frames allows: the closest before and after
DEFAULT_POINTS = 8  # clicks and box corners of one prompt (SAM appends its padding point after them)


@dataclass(frozen=True)
class StaticShapes:
    cond_frames: int  # prompted frames in attention at most (the cap the config must name)
    memory_slots: int  # cond_frames + num_maskmem - 1 recent memories
    pointer_slots: int  # cond_frames + max_obj_ptrs_in_encoder - 1 recent pointers
    points: int  # point slots of the decoder

    @classmethod
    def for_model(cls, num_maskmem: int, max_obj_ptrs: int, cond_frames: int = DEFAULT_COND_FRAMES,
                  points: int = DEFAULT_POINTS) -> StaticShapes:
        if cond_frames < 2:
            raise ModelSetError(f"a static set needs at least 2 conditioning-frame slots (Meta's "
                                f"select_closest_cond_frames keeps the closest before and after), got {cond_frames}")
        if points < 1:
            raise ModelSetError(f"a static set needs at least 1 point slot, got {points}")
        return cls(cond_frames, cond_frames + num_maskmem - 1, cond_frames + max_obj_ptrs - 1, points)

    def to_yaml(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_yaml(cls, d: Any, source: str) -> StaticShapes:
        names = tuple(cls.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) != set(names) or not all(
                isinstance(d[k], int) and not isinstance(d[k], bool) and d[k] >= 1 for k in names):
            raise ModelSetError(f"{source}: static section must map {', '.join(names)} to positive integers, "
                                f"got {d!r}")
        return cls(**{k: d[k] for k in names})

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

    def pad(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Dynamic stage inputs -> the static stage's (slots filled in order, then zeros, plus validity)."""
        if stage == "memory_attention":
            out = dict(inputs)
            if "memory_valid" not in inputs:  # a device memory store fills the slots where the values live
                out["memory"], out["memory_pos"], out["memory_valid"] = _fill(
                    "memory frames", self.memory_slots, inputs["memory"], inputs["memory_pos"])
            out["obj_ptrs"], out["obj_ptr_pos"], out["obj_ptr_valid"] = _fill(
                "object pointers", self.pointer_slots, inputs["obj_ptrs"], inputs["obj_ptr_pos"])
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
