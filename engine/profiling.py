"""Timing around the stage set: the tracker core calls stages and knows nothing of profiling.

`ProfiledStages(stages)` stands in for a StageSet: it logs (stage, seconds) of every call while
`log` is a list, and remembers how much memory the last memory-attention call attended to. The
benchmark wraps the stage set with it; the tracker is built on the wrapper unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np


class ProfiledStages:
    def __init__(self, stages: Any) -> None:
        self.inner = stages
        self.log: list[tuple[str, float]] | None = None  # None: not recording
        self.last_memory: tuple[int, int] = (0, 0)  # (memory frames, object pointers) of the last attention

    def run(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.inner.run(name, inputs)
        if self.log is not None:
            self.log.append((name, time.perf_counter() - t0))
        if name == "memory_attention":
            self.last_memory = (int(inputs["memory"].shape[0]), int(inputs["obj_ptrs"].shape[0]))
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        return self.inner.describe()

    def __getattr__(self, name: str) -> Any:  # modelset, stages, backends of the wrapped set
        return getattr(self.inner, name)
