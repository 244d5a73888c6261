"""Timing wraps the stage set; the tracker core carries no telemetry."""

import numpy as np

from engine.profiling import ProfiledStages
from engine.tracker import Tracker
from tests.engine.fakes import FakeStages


def test_profiled_stages_time_every_call_without_the_tracker_knowing(modelset):
    stages = ProfiledStages(FakeStages(modelset))
    tracker = Tracker(modelset, stages)
    assert not hasattr(tracker, "stage_log") and not hasattr(tracker, "last_memory")
    state = tracker.init_state(np.zeros((6, 32, 32, 3), np.uint8))
    tracker.add_new_points_or_box(state, 0, 1, points=[[5, 5]], labels=[1])
    assert stages.log is None  # not recording until asked
    stages.log = []
    results = list(tracker.propagate_in_video(state))
    names = [name for name, _ in stages.log]
    # frame 0's memory is encoded in the preflight; frames 1-5 each run every stage once
    assert names.count("image_encoder") == 5 and names.count("memory_attention") == 5
    assert names.count("memory_encoder") == 6 and all(s >= 0 for _, s in stages.log)
    # frame 5 attends to the prompted frame 0 and frames 1-4: five memories, five pointers
    assert len(results) == 6 and stages.last_memory == (5, 5)
    assert stages.describe() == stages.inner.describe()
