"""Timing around the stage set: the tracker core calls stages and knows nothing of profiling.

`ProfiledStages(stages)` stands in for a StageSet: it logs (stage, seconds) of every call while
`log` is a list, and remembers how much memory the last memory-attention call attended to. The
benchmark wraps the stage set with it; the tracker is built on the wrapper unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np


class ProfiledStages:
    def __init__(self, stages: Any) -> None:
        self.inner = stages
        self.log: list[tuple[str, float]] | None = None  # None: not recording
        self.last_memory: tuple[int, int] = (0, 0)  # (memory frames, object pointers) of the last attention
        self.total_s = 0.0  # every call's seconds, recorded or not (a service's share outside the stages)
        self.calls: dict[str, int] = {}  # per stage: calls so far, and their seconds (always counted)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, inputs: Mapping[str, Any], keep: Collection[str] = ()) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = self.inner.run(name, inputs, keep)
        self._record(name, t0)
        if name == "memory_attention":
            valid = inputs.get("memory_valid")  # a device store filled a static set's slots
            frames = int(inputs["memory"].shape[0]) if valid is None else int(np.sum(valid))
            self.last_memory = (frames, int(inputs["obj_ptrs"].shape[0]))
        return out

    def memory_store(self, spec: Any) -> Any:
        """The wrapped set's store, its work logged as 'memory_bank' (on a device it is device work)."""
        return _TimedStore(self.inner.memory_store(spec), self)

    def _record(self, name: str, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.total_s += dt
        self.calls[name] = self.calls.get(name, 0) + 1
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        if self.log is not None:
            self.log.append((name, dt))

    def describe(self) -> dict[str, dict[str, Any]]:
        return self.inner.describe()

    def __getattr__(self, name: str) -> Any:  # modelset, stages, backends of the wrapped set
        return getattr(self.inner, name)


class _TimedStore:
    def __init__(self, store: Any, profiled: ProfiledStages) -> None:
        self.store = store
        self.profiled = profiled

    def keep(self, features: Any, absent: bool) -> Any:
        t0 = time.perf_counter()
        out = self.store.keep(features, absent)
        self.profiled._record("memory_bank", t0)
        return out

    def gather(self, memories: Sequence[Any], slots: Sequence[int], capacity: int | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = self.store.gather(memories, slots, capacity)
        self.profiled._record("memory_bank", t0)
        return out
