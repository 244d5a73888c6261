"""How live tracking shares a small CPU: the plan every live source runs with unless its YAML says otherwise.

On a 2-core box the tracker's inference threads fill both cores, and the capture (decoding the camera)
must fit in between. Measured on a 2-core AMD EPYC with a real RTSP camera (benchmarks/README.md, "Live
throughput"), phases of the same run taking turns:

- **ONNX Runtime's worker threads spin** after each operator by its default, holding their cores while
  the tracker's own Python code (and the capture, and the server) needs them. Spinning made the tracker
  alone 1.4-1.5x slower, and live tracking slower still; so the engine turns it off for every ONNX Runtime
  backend, offline and live (`backend.spin_wait: true` turns it back on; backends/base.py).
- **The capture's priority and FFmpeg's decoding threads** made no difference beyond the machine's noise
  (OpenVINO, EdgeTAM 512: live/alone 0.79-0.94 whichever way), so both are left as the OS and FFmpeg set
  them; they are here to try on other machines:
  - `capture_nice`: each capture thread lowers its own priority by this much (Linux: per thread; the FFmpeg
    decoding threads it starts inherit it);
  - `decode_threads`: FFmpeg's decoding threads per camera or stream (0: FFmpeg's choice, one per core).

engine.serve reads the capture's part from the deployment's `live:` section; engine.track's live path and
Python users (`Capture(..., plan=)`) get the defaults.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("engine.live")


@dataclass(frozen=True)
class LivePlan:
    capture_nice: int = 0
    decode_threads: int = 0

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
