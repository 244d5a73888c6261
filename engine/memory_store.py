"""How an object's memory features are kept, and how the selected ones become memory attention's inputs.

The planner (engine.memory) decides which stored frames enter attention and in which temporal slot;
a store holds the features themselves. `HostMemoryStore` keeps numpy arrays (bfloat16 bit patterns by
default, rounded as torch's `.to(bfloat16)`). A stage set that keeps values on its device
(`keep_on_device`) hands out its own store with the same two operations, so the features never leave
the device and the numpy core holds only indices and handles (backends/onnxruntime_device.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.errors import InputError
from engine.rules import ModelRules


# ----------------------------------------------------------------------------- bfloat16 storage
def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even, as torch's .to(bfloat16)."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def from_bf16(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class MemorySpec:
    """What a store needs from the model and the settings."""

    slot_pos: tuple[np.ndarray, ...]  # [mem_dim, a, b] position of a memory in temporal slot k, k = 0..num_maskmem-1
    no_obj_embed: np.ndarray | None  # [mem_dim] added to the memory of an absent object; None: the model has none
    bfloat16: bool  # round features to bfloat16 as the reference keeps them

    @classmethod
    def for_model(cls, rules: ModelRules, constants: dict[str, np.ndarray], memory_dtype: str) -> MemorySpec:
        tpos = constants["maskmem_tpos_enc"]  # [num_maskmem, mem_dim]
        pos = constants["maskmem_pos_enc"][0]  # [mem_dim, a, b]
        slot_pos = tuple((pos + tpos[k][:, None, None]).astype(np.float32) for k in range(len(tpos)))
        no_obj = (constants["no_obj_embed_spatial"].reshape(-1).astype(np.float32)
                  if rules.no_obj_embed_spatial else None)
        return cls(slot_pos, no_obj, memory_dtype == "bfloat16")


class MemoryStore(Protocol):
    def keep(self, features: Any, absent: bool) -> Any:
        """The memory encoder's maskmem_features [1, mem_dim, a, b] -> what the bank stores for the frame."""

    def gather(self, memories: Sequence[Any], slots: Sequence[int], capacity: int | None = None) -> dict[str, Any]:
        """Stored memories and their temporal slots -> memory attention's memory and memory_pos. With a
        `capacity` (a static set's memory slots) they are filled into that many slots, the rest zeros,
        and memory_valid says which hold a memory."""


class HostMemoryStore:
    """Features as numpy arrays: [mem_dim, a, b] float32, or uint16 bfloat16 bit patterns."""

    def __init__(self, spec: MemorySpec) -> None:
        self.spec = spec

    def keep(self, features: np.ndarray, absent: bool) -> np.ndarray:
        out = features[0]
        if absent and self.spec.no_obj_embed is not None:
            out = out + self.spec.no_obj_embed[:, None, None]
        return to_bf16(out) if self.spec.bfloat16 else out.astype(np.float32)

    def gather(self, memories: Sequence[np.ndarray], slots: Sequence[int],
               capacity: int | None = None) -> dict[str, np.ndarray]:
        n = len(memories)
        rows = check_capacity(n, capacity)
        shape = self.spec.slot_pos[0].shape
        memory = np.zeros((rows, *shape), np.float32)
        memory_pos = np.zeros_like(memory)
        for i, (m, k) in enumerate(zip(memories, slots, strict=True)):
            memory[i] = from_bf16(m) if m.dtype == np.uint16 else m
            memory_pos[i] = self.spec.slot_pos[k]
        out = {"memory": memory, "memory_pos": memory_pos}
        if capacity is not None:
            out["memory_valid"] = (np.arange(rows) < n).astype(np.float32)
        return out


def check_capacity(memories: int, capacity: int | None) -> int:
    """Rows of the stacked memory: the selection, or the slots it is filled into."""
    if capacity is None:
        return memories
    if memories > capacity:
        # the stage set's tier choice keeps selections within the slots; reaching here is a bug, not bad input
        raise InputError(f"{memories} memory frames selected for memory attention, but the static model set's "
                         f"memory attention has {capacity} slots")
    return capacity
