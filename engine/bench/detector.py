"""The detector's cost beside the stages (engine.bench --detector, or the --config's detector:): its time
per run on the bench's own frames, and its share of a tracked frame when it runs every frame and every
`every`-th frame."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def time_detector(settings: Any, source: Any, frames: int = 12, warmup: int = 2) -> dict[str, Any]:
    """Median and mean ms per detector run over `frames` frames of `source` (after `warmup` runs)."""
    from engine.detect import build_detector

    detector = build_detector(settings)
    n = source.num_frames or frames + warmup
    times = []
    for i in range(warmup + frames):
        image = source.get(i % n)
        t0 = time.perf_counter()
        detector.detect(image)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    return {**detector.describe(), "every": settings.every, "frames": frames,
            "median_ms": round(float(np.median(times)), 2), "mean_ms": round(float(np.mean(times)), 2),
            "frame_hw": [source.height, source.width]}


def shares(detector: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """One line per run: the detector's share of a tracked frame, run every frame and every `every`-th."""
    d = detector["median_ms"]
    lines = []
    for r in runs:
        f = r["steady"]["frame"]["median_ms"]
        every = detector["every"]
        lines.append(f"  {r['label']}: frame {f:.1f} ms; detector every frame {100 * d / (d + f):.1f}% of the "
                     f"frame, every {every}th {100 * (d / every) / (d / every + f):.1f}%")
    return lines
