"""The service's limits and its throttled log, on a fake clock."""

from __future__ import annotations

import logging

from engine.serve.limits import RateLimit, Slots
from engine.serve.service import ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_token_bucket_takes_a_burst_then_its_rate():
    clock = Clock()
    limit = RateLimit(rate=2.0, burst=3, clock=clock)
    assert [limit.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limit.take()
    assert wait == 0.5 and limit.refused == 1  # one token comes every 0.5 s
    clock.t = 0.5
    assert limit.take() == 0.0 and limit.take() > 0
    clock.t = 100.0  # refills to the burst, not beyond
    assert [limit.take() for _ in range(4)].count(0.0) == 3


def test_slots_refuse_past_their_size_and_count_it():
    s = Slots(2, "limits.x")
    assert s.acquire() and s.acquire() and not s.acquire()
    assert s.refused == 1 and s.held == 2
    s.release()
    assert s.acquire() and s.held == 2


def test_a_repeated_warning_is_said_once_a_minute_with_its_count(caplog):
    clock = Clock()
    warn = ThrottledLog(logging.getLogger("engine.serve.test"), every_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="engine.serve.test"):
        for t in range(0, 130):  # one failure a second for 130 s
            clock.t = float(t)
            warn.warning("source %s: tracking failed", "cam")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["source cam: tracking failed",
                     "source cam: tracking failed (59 more like it in the last 60 s)",
                     "source cam: tracking failed (59 more like it in the last 60 s)"]
