"""Limits that keep one caller from taking the service: a prompt rate per source (token bucket), a bound on
prompts waiting for the tracker, and caps on streaming clients. Each refusal is counted for /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimit:
    """A token bucket: `burst` at once, then `rate` a second. `take()` is 0.0 when allowed, otherwise the
    seconds until one would be (a 429's Retry-After)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()
        self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> float:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            self.refused += 1
            return (1.0 - self.tokens) / self.rate


class Slots:
    """At most `size` holders at once (clients of a stream, prompts waiting); a full house is refused and
    counted, never queued."""

    def __init__(self, size: int, what: str) -> None:
        self.size = size
        self.what = what
        self.held = 0
        self.refused = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.held >= self.size:
                self.refused += 1
                return False
            self.held += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.held = max(0, self.held - 1)
