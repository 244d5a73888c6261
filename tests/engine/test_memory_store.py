"""Memory kept where the stages run (keep_on_device) tracks exactly as memory kept in numpy.

ONNX Runtime's CPU provider runs the device path on host OrtValues: image features, memory-attention
output and memory features never become numpy arrays, memories are rounded to bfloat16 and stacked by
small graphs, and the static set's slots are filled there. Over both shared clips the masks and logits
must equal the numpy path's bit for bit: the same operations in the same order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backends.base import DeviceTensor, StageOptions
from backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeStage
from engine.config import TrackerSettings
from engine.memory_store import HostMemoryStore
from engine.modelset import ModelSet
from engine.stages import StageSet
from engine.tracker import Tracker
from tests.engine.parity import run_engine, shared_engine_run
from tests.engine.test_static import TWO_PROMPTS
from tests.engine.test_tracker_parity import BACKENDS, SCENARIOS, mask_of

HOST = BACKENDS["onnxruntime-cpu"]
KEEP = replace(HOST, keep_on_device=True)
# prompts, a correction on a tracked frame, reverse, both clips, two objects and absent objects (no_obj_embed)
CHOSEN = ("negative+refine", "reverse", "bedroom, two objects, absent")


def _graph_stage_set(ms: ModelSet) -> StageSet:
    """keep_on_device with every stage file (memory-attention tiers included) in the CUDA-graph mode (fixed
    buffers bound once), on host buffers."""
    backend = OnnxRuntimeBackend(KEEP)
    stages = {}
    for name in ms.manifest.stages:
        plain = backend.load(ms.stage_path(name), StageOptions(name))
        stages[name] = OnnxRuntimeStage(plain.session, name, "CPU", False, 0.0, fixed_buffers=True, ops=backend.ops)
    return StageSet(ms, stages, dict.fromkeys(stages, backend))


def _assert_same(scenario, want, got) -> None:
    assert [(r.frame, r.obj_ids) for r in got] == [(r.frame, r.obj_ids) for r in want], scenario
    for w, g in zip(want, got, strict=True):
        assert np.array_equal(w.low_res, g.low_res), (scenario, w.frame)
        assert np.array_equal(w.masks, g.masks), (scenario, w.frame)
        assert np.array_equal(w.scores, g.scores), (scenario, w.frame)


@pytest.mark.parametrize("which", ["dynamic set, bfloat16 memory", "static set, fixed buffers, float32 memory"])
def test_tracking_with_memory_on_the_device_equals_numpy_memory(which, modelset, static_modelset_dir, clips):
    if which.startswith("dynamic"):
        ms, settings = modelset, TrackerSettings()
        device = StageSet.load(ms, KEEP)
    else:
        ms = ModelSet.load(static_modelset_dir)
        settings = TrackerSettings(memory_dtype="float32", max_cond_frames=ms.manifest.static.cond_frames)
        device = _graph_stage_set(ms)
    device_tracker = Tracker(ms, device, settings)
    assert not isinstance(device_tracker.store, HostMemoryStore)
    assert isinstance(Tracker(ms, StageSet.load(ms, HOST), settings).store, HostMemoryStore)
    # the static set's device store fills the slots of whichever tier runs: two prompted frames reach the largest
    scenarios = [s for s in SCENARIOS if s.name in CHOSEN] + ([TWO_PROMPTS] if ms.manifest.static else [])
    for scenario in scenarios:
        # the host runs are the parity and static suites' own (shared_engine_run: computed once per test run)
        want = shared_engine_run(ms, HOST, settings, scenario, clips[scenario.clip], mask_of)
        got = run_engine(device_tracker, scenario, clips[scenario.clip], mask_of)
        assert sum(r.masks.any() for r in want) > 0 or "absent" in scenario.name
        _assert_same(scenario.name, want, got)


def test_the_bank_holds_device_values_and_counts_their_bytes(modelset, clips):
    tracker = Tracker(modelset, StageSet.load(modelset, KEEP))
    state = tracker.init_state(str(clips["davis"]))
    tracker.add_new_points_or_box(state, 0, 1, points=[[420, 250]], labels=[1])
    for _ in tracker.propagate_in_video(state, max_frame_num_to_track=3):
        pass
    outs = [*state.objects[1].bank.cond.values(), *state.objects[1].bank.non_cond.values()]
    assert len(outs) == 4 and all(isinstance(o.maskmem, DeviceTensor) and o.maskmem.dtype == "bfloat16" for o in outs)
    assert all(isinstance(v, DeviceTensor) for v in vars(state.cached[1]).values())
    feats = sum(v.nbytes for v in vars(state.cached[1]).values())
    assert state.memory_bytes() - feats == 4 * tracker.bytes_per_stored_frame()
    assert tracker.describe()["stages"]["image_encoder"]["keep_on_device"] is True
