"""How live tracking shares a small CPU: the plan every live source runs with unless its YAML says otherwise.

On a 2-core box the tracker's two inference threads fill both cores, and the capture (decoding the camera)
must fit in between. Whatever preempts an inference thread stalls the other at the next barrier, so a
little decoding at the wrong moment costs a lot of inference time (benchmarks/README.md, "Live throughput"):

- `capture_nice`: each capture thread lowers its own priority by this much (Linux: per thread; the FFmpeg
  decoding threads it starts inherit it), so it runs in the inference threads' gaps instead of preempting
  them. Decoding a camera needs a few percent of a core; it still gets it.
- `decode_threads`: FFmpeg's decoding threads per camera or stream (0: FFmpeg's choice, one per core), so
  one camera does not wake a thread on every core for each frame.
- ONNX Runtime's worker threads spin after each operator by default, holding their cores while idle; for
  live sources the engine turns it off where the engine config leaves `backend.spin_wait` unset
  (`runtime_settings`).

engine.serve reads it from the deployment's `live:` section; engine.track's live path and Python users
(`Capture(..., plan=)`) get the defaults.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger("engine.live")


@dataclass(frozen=True)
class LivePlan:
    capture_nice: int = 10
    decode_threads: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LivePlan:
        return cls(**(d or {}))

    def lower_this_thread(self) -> None:
        """Called by a capture thread on itself: its priority goes down by `capture_nice` (Linux, where
        setpriority takes a thread id; elsewhere a no-op, logged once)."""
        if self.capture_nice <= 0:
            return
        if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
            log.info("capture_nice: this OS has no per-thread priority; capture threads keep theirs")
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.capture_nice)
        except OSError as exc:
            log.warning("capture_nice: could not lower the capture thread's priority (%s)", exc)


def runtime_settings(engine_cfg: Any) -> Any:
    """The engine config for live tracking: ONNX Runtime's spinning off where the config leaves it unset
    (an explicit `spin_wait` is kept)."""
    def live(bc):
        bc = replace(bc, fallback=tuple(live(f) for f in bc.fallback))
        return replace(bc, spin_wait=False) if bc.name == "onnxruntime" and bc.spin_wait is None else bc

    return replace(engine_cfg, backend=live(engine_cfg.backend),
                   stages={k: live(v) for k, v in engine_cfg.stages.items()})
