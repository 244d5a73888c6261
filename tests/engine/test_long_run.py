"""A long video through the tracker's memory logic: propagation over 3,000 frames with windowed offline
memory. (Streaming's 10,000 frames, an object joining half-way and a correction, run once through the live
service: tests/engine/serve/test_service.py.)

The four stage models are replaced by a stand-in with the real shapes (tests/engine/fakes.py) so that
the run takes seconds; everything else (memory bank, eviction, decoding, hole filling, resizing,
results) is the real code. Resident memory and the bank's size must stay flat after warm-up.
"""

from __future__ import annotations

import gc

import numpy as np
import psutil

from engine.bench.synthetic import SyntheticSource
from engine.config import TrackerSettings
from engine.tracker import Tracker
from tests.engine.fakes import FakeStages

WARM_UP = 1000
TOTAL = 10_000


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def test_propagation_over_a_long_video_stays_flat(modelset):
    tracker = Tracker(modelset, FakeStages(modelset), TrackerSettings(offline_memory="window"))
    source = SyntheticSource(num_frames=3000, height=64, width=96)
    state = tracker.init_state(source)
    tracker.add_new_points_or_box(state, 0, 1, points=[[20, 20]], labels=[1])
    curve = []
    for r in tracker.propagate_in_video(state):
        if r.frame_idx % 250 == 0:
            curve.append((r.frame_idx, _rss_mb(), state.stored_frames(), len(source._cache)))
    after = [c for c in curve if c[0] >= 500]
    assert max(c[1] for c in after) - min(c[1] for c in after) < 16, curve
    assert len({c[2] for c in after}) == 1 and max(c[3] for c in after) <= source.cache_size
    assert np.all(np.diff([c[0] for c in curve]) == 250)
