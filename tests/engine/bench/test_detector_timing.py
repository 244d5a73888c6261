"""engine.bench's detector timing (engine/bench/detector.py): its time per run on the bench's frames and its
share of a tracked frame, run every frame and every `every`-th."""

from __future__ import annotations

from engine.bench.detector import shares, time_detector
from engine.bench.synthetic import SyntheticSource
from engine.detect.settings import parse_detector


def test_the_detector_is_timed_on_the_bench_s_frames_and_its_share_follows_every():
    settings = parse_detector({"kind": "motion", "every": 4}, None, "test")
    timing = time_detector(settings, SyntheticSource(num_frames=6, height=120, width=160), frames=5, warmup=1)
    assert timing["kind"] == "motion" and timing["frames"] == 5 and timing["frame_hw"] == [120, 160]
    assert 0 < timing["median_ms"] and 0 < timing["mean_ms"]
    d = dict(timing, median_ms=10.0)  # a detector run of 10 ms beside a tracked frame of 90 ms
    line = shares(d, [{"label": "openvino CPU f32", "steady": {"frame": {"median_ms": 90.0}}}])[0]
    assert "every frame 10.0% of the frame" in line and "every 4th 2.7%" in line
