"""Meta's rules (SAM2VideoPredictor): the decoder's best candidate by predicted IoU (or the stability
fallback), and the most recent tracked frames as memory (engine.memory.MemoryPlanner.recent_frames)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.decode import Decoded, select_mask
from engine.memory import FrameOutput, ObjectMemory


class MetaPolicy:
    name = "meta"

    def __init__(self, rules: Any) -> None:
        self.rules = rules

    def select(self, outputs: dict[str, np.ndarray], multimask: bool, obj: Any, no_obj_ptr: np.ndarray) -> Decoded:
        return select_mask(outputs, multimask, self.rules, no_obj_ptr)

    def recent_memories(self, planner: Any, bank: ObjectMemory, frame_idx: int, reverse: bool,
                        unselected: dict[int, FrameOutput]) -> list[tuple[int, int, FrameOutput]]:
        return planner.recent_frames(bank, frame_idx, reverse, unselected)

    def evict(self, bank: ObjectMemory, frame_idx: int, window: int) -> None:
        bank.evict(frame_idx, window)
