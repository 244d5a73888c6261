"""Static model sets: fixed slots with validity masks track exactly as the dynamic set does.

Same weights exported twice (conftest): dynamic, and static with 2 prompted-frame slots and 8 point
slots. Tracking runs with float32 memory (the exact-f32 setting), so the only difference between the
two is the masked slots; logits agree to summation order.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendConfig
from engine.config import TrackerSettings, load_config
from engine.errors import ConfigError, ExportError, InputError, ModelSetError
from engine.modelset import ModelSet
from engine.stages import HostValues, StageSet, random_inputs
from engine.static import StaticShapes
from engine.tracker import Tracker
from tests.engine.parity import (
    FrameRecord,
    Scenario,
    Step,
    compare,
    run_engine,
    run_reference,
    shared_engine_run,
)
from tests.engine.test_tracker_parity import BACKENDS, SCENARIOS, check, mask_of
from tests.tolerance import assert_close, reorder_bound, stage_reduction

CONFIGS = Path(__file__).parents[2] / "configs"
# ONNX Runtime runs the static and the dynamic graph to within 1e-6. OpenVINO compiles them with other
# kernels (each ~1e-6 from ONNX Runtime per stage); on the calibrated weights' near-zero logits that flips
# one pixel of frame 0's binarised prompt mask (|logit| 7e-9) in the click scenario, and the memory made from
# it moves the next frames' logits by up to 2e-5: the same noise two runtimes show, not the masked slots.
MAX_LOGIT_DIFF = {"onnxruntime-cpu": 1e-5, "openvino-cpu-f32": 1e-4}
EXACT = TrackerSettings(memory_dtype="float32")
CAPPED = replace(EXACT, max_cond_frames=2)
# both shared clips; clicks, a box, negative points and a second prompted frame, reverse, absent objects
SAME_AS_DYNAMIC = ("click", "box", "negative+refine", "reverse", "bedroom, two objects, absent")


@pytest.fixture(scope="module")
def static_ms(static_modelset_dir) -> ModelSet:
    return ModelSet.load(static_modelset_dir, verify_checksums=True)


def test_manifest_records_capacity_and_no_dynamic_axis(static_ms, modelset):
    s = static_ms.manifest.static
    assert (s.cond_frames, s.memory_slots, s.pointer_slots, s.points) == (2, 8, 17, 8)
    # one memory-attention graph per prompted-frame count: 7+16 slots for one, 8+17 for two
    assert [(t.cond_frames, t.memory_slots, t.pointer_slots, t.stage) for t in s.tiers] == [
        (1, 7, 16, "memory_attention_1cond"), (2, 8, 17, "memory_attention")]
    one = {t.name: t.shape for t in static_ms.manifest.stages["memory_attention_1cond"].inputs}
    assert one["memory"][0] == one["memory_valid"][0] == 7 and one["obj_ptrs"][0] == 16
    assert static_ms.stage_path("memory_attention_1cond").is_file()
    assert static_ms.manifest.dynamic_axes() == []
    assert modelset.manifest.static is None
    assert "memory_attention.memory[0]" in modelset.manifest.dynamic_axes()
    assert "mask_decoder.point_coords[1]" in modelset.manifest.dynamic_axes()


def test_a_static_section_over_dynamic_stages_is_refused(modelset_dir, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "set"
    shutil.copytree(modelset_dir, copy)
    raw = yaml.safe_load((copy / "modelset.yaml").read_text())
    raw["static"] = {"cond_frames": 2, "memory_slots": 8, "pointer_slots": 17, "points": 8}
    (copy / "modelset.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelSetError, match="dynamic axes"):
        ModelSet.load(copy)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_stages_equal_the_dynamic_ones_at_every_fill(backend, static_ms, modelset):
    static = StageSet.load(static_ms, BACKENDS[backend], only=("memory_attention", "mask_decoder"))
    dynamic = StageSet.load(modelset, BACKENDS[backend], only=("memory_attention", "mask_decoder"))
    for frames, pointers, points in ((1, 0, 1), (4, 5, 3), (7, 16, 8), (8, 17, 2)):
        inputs = random_inputs(modelset, memory_frames=frames, pointers=pointers, points=points, seed=frames)
        for stage in ("memory_attention", "mask_decoder"):
            want = dynamic.run(stage, inputs[stage])
            got = static.run(stage, inputs[stage])
            # the same sums in another order (padded slots weigh exactly 0): tests/tolerance.py
            bound = reorder_bound(*stage_reduction(modelset, stage, frames, pointers, points))
            for name, w in want.items():
                assert_close(got[name], w, bound, (stage, name, frames, pointers, points))


def test_the_smallest_tier_with_room_is_chosen():
    s = StaticShapes.for_model(7, 16, cond_frames=3, points=4, tiers=[1, 3])
    assert [t.memory_slots for t in s.tiers] == [7, 9] and s.attention_tiers == (1, 3)
    assert s.extra_stages == ("memory_attention_1cond",)
    for selection, stage in (((1, 0), "memory_attention_1cond"), ((7, 16), "memory_attention_1cond"),
                             ((8, 16), "memory_attention"), ((7, 17), "memory_attention"), ((9, 18), "memory_attention")):
        assert s.tier_for(*selection).stage == stage, selection
    with pytest.raises(InputError, match="10 memory frames and 3 object pointers .* 9 and 18 slots"):
        s.tier_for(10, 3)
    inputs = {"memory": np.ones((3, 64, 2, 2), np.float32), "memory_pos": np.ones((3, 64, 2, 2), np.float32),
              "obj_ptrs": np.ones((17, 256), np.float32), "obj_ptr_pos": np.ones((17, 64), np.float32)}
    stage, fed = s.route("memory_attention", inputs)  # few memories, but more pointers than the small tier has
    assert stage == "memory_attention" and fed["memory"].shape[0] == 9 and fed["obj_ptr_valid"].sum() == 17
    assert fed["memory_valid"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    filled = {**inputs, "obj_ptrs": inputs["obj_ptrs"][:2], "obj_ptr_pos": inputs["obj_ptr_pos"][:2],
              "memory": np.ones((7, 64, 2, 2)), "memory_valid": np.ones(7, np.float32)}
    assert s.route("memory_attention", filled)[0] == "memory_attention_1cond"  # a store filled the tier's slots
    with pytest.raises(InputError, match="filled into 8 slots"):
        s.route("memory_attention", {**filled, "memory_valid": np.ones(8, np.float32)})
    with pytest.raises(ModelSetError, match="from 1 to the 3 conditioning-frame slots, got 4"):
        StaticShapes.for_model(7, 16, cond_frames=3, tiers=[1, 4])
    assert StaticShapes.for_model(7, 16, cond_frames=2).attention_tiers == (1, 2)  # every count by default


@pytest.mark.parametrize("tiers,ok", [([1, 2], True), ([2], True), (None, True), ([2, 1], False), ([1], False),
                                      ([0, 2], False), ("1,2", False), ([], False)])
def test_manifest_attention_tiers_are_checked(tiers, ok):
    d = {"cond_frames": 2, "memory_slots": 8, "pointer_slots": 17, "points": 8}
    if tiers is not None:
        d["attention_tiers"] = tiers
    if ok:
        assert StaticShapes.from_yaml(d, "m.yaml").attention_tiers[-1] == 2
    else:
        with pytest.raises(ModelSetError, match="attention_tiers"):
            StaticShapes.from_yaml(d, "m.yaml")


def _edited_copy(static_modelset_dir, tmp_path, edit) -> Path:
    import shutil

    import yaml

    copy = tmp_path / "set"
    shutil.copytree(static_modelset_dir, copy)
    raw = yaml.safe_load((copy / "modelset.yaml").read_text())
    edit(raw, copy)
    (copy / "modelset.yaml").write_text(yaml.safe_dump(raw))
    return copy


def test_a_set_from_before_tiers_runs_its_one_graph(static_modelset_dir, tmp_path, modelset):
    def drop_tier(raw, copy):
        del raw["static"]["attention_tiers"], raw["stages"]["memory_attention_1cond"]
        (copy / "memory_attention_1cond.onnx").unlink()

    old = ModelSet.load(_edited_copy(static_modelset_dir, tmp_path, drop_tier))
    assert old.manifest.static.attention_tiers == (2,)
    stages = StageSet.load(old, BACKENDS["onnxruntime-cpu"], only=("memory_attention",))
    assert set(stages.stages) == {"memory_attention"}
    x = random_inputs(modelset, memory_frames=3, pointers=2)["memory_attention"]
    want = StageSet.load(modelset, BACKENDS["onnxruntime-cpu"], only=("memory_attention",)).run("memory_attention", x)
    got = stages.run("memory_attention", x)["pix_feat_with_mem"]
    bound = reorder_bound(*stage_reduction(modelset, "memory_attention", 3, 2))
    assert_close(got, want["pix_feat_with_mem"], bound, "the one graph of a set from before tiers")


def test_a_tier_file_of_other_slots_or_an_unknown_stage_is_refused(static_modelset_dir, tmp_path):
    def swap(raw, copy):  # the one-prompt tier's entry pointing at the two-prompt graph
        raw["stages"]["memory_attention_1cond"] = raw["stages"]["memory_attention"]

    with pytest.raises(ModelSetError, match="memory_attention_1cond takes 8 memory and 17 pointer slots, but the "
                                            "static section promises 7 and 16"):
        ModelSet.load(_edited_copy(static_modelset_dir, tmp_path / "a", swap))

    def unknown(raw, copy):
        raw["stages"]["memory_attention_3cond"] = raw["stages"]["memory_attention"]

    with pytest.raises(ModelSetError, match="memory_attention_3cond, which neither the four stages nor"):
        ModelSet.load(_edited_copy(static_modelset_dir, tmp_path / "b", unknown))


class _Counted:
    """A loaded stage that counts its runs."""

    def __init__(self, stage, counts: dict, name: str) -> None:
        self.stage, self.counts, self.name = stage, counts, name

    def run(self, inputs):
        self.counts[self.name] = self.counts.get(self.name, 0) + 1
        return self.stage.run(inputs)

    def __getattr__(self, name):
        return getattr(self.stage, name)


TWO_PROMPTS = Scenario("two prompted frames, a full bank", "davis", (
    Step("points", 0, 1, {"points": [[420.0, 250.0]], "labels": [1]}),
    Step("propagate", args={"max_frame_num_to_track": 2}),
    Step("points", 3, 1, {"points": [[440.0, 260.0]], "labels": [1]}),  # an untracked frame: a second prompted one
    Step("propagate", args={"start_frame_idx": 3, "max_frame_num_to_track": 10}),
))


def test_each_frame_runs_the_smallest_tier_and_tracks_as_the_dynamic_set(static_ms, modelset, clips):
    """One prompted frame never needs the two-prompt graph; two prompted frames and six recent memories
    (frames 10 to 13 here) fill its eighth slot."""
    stages = StageSet.load(static_ms, BACKENDS["onnxruntime-cpu"])
    counts: dict[str, int] = {}
    stages.stages = {k: _Counted(v, counts, k) for k, v in stages.stages.items()}
    static = Tracker(static_ms, stages, CAPPED)
    ort = BACKENDS["onnxruntime-cpu"]
    click = next(s for s in SCENARIOS if s.name == "click")
    got = run_engine(static, click, clips["davis"], mask_of)  # its own run: the counts are the point
    assert counts.get("memory_attention_1cond", 0) == 6 and "memory_attention" not in counts, counts
    want = shared_engine_run(modelset, ort, EXACT, click, clips["davis"], mask_of)
    _same_tracking(got, want, MAX_LOGIT_DIFF["onnxruntime-cpu"])
    counts.clear()
    got = run_engine(static, TWO_PROMPTS, clips["davis"], mask_of)
    assert counts.get("memory_attention", 0) == 4 and counts.get("memory_attention_1cond", 0) > 0, counts
    want = shared_engine_run(modelset, ort, EXACT, TWO_PROMPTS, clips["davis"], mask_of)
    _same_tracking(got, want, MAX_LOGIT_DIFF["onnxruntime-cpu"])


def _same_tracking(a: list[FrameRecord], b: list[FrameRecord], bound: float) -> float:
    """Max low-res logit difference; every mask disagreement must sit at a logit within it of 0."""
    cmp = compare(a, b)
    assert cmp.presence_disagreements == 0, cmp
    assert cmp.min_iou >= 0.999, cmp
    assert cmp.present > 0
    for x, y in zip(a, b, strict=True):
        differ = (x.low_res > 0) != (y.low_res > 0)
        assert np.all(np.minimum(np.abs(x.low_res), np.abs(y.low_res))[differ] <= cmp.max_logit_diff)
    assert cmp.max_logit_diff <= bound, cmp
    return cmp.max_logit_diff


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_tracking_equals_the_dynamic_set(backend, static_ms, modelset, clips):
    for scenario in (s for s in SCENARIOS if s.name in SAME_AS_DYNAMIC):
        got = shared_engine_run(static_ms, BACKENDS[backend], CAPPED, scenario, clips[scenario.clip], mask_of)
        want = shared_engine_run(modelset, BACKENDS[backend], EXACT, scenario, clips[scenario.clip], mask_of)
        worst = _same_tracking(got, want, MAX_LOGIT_DIFF[backend])
        print(f"static vs dynamic, {scenario.name}, {backend}: max logit diff {worst:.1e}")


THREE_PROMPTS = Scenario("three prompted frames", "davis", (
    Step("points", 0, 1, {"points": [[420.0, 250.0]], "labels": [1]}),
    Step("points", 4, 1, {"points": [[440.0, 260.0]], "labels": [1]}),
    Step("points", 8, 1, {"points": [[460.0, 270.0]], "labels": [1]}),
    Step("propagate", args={"max_frame_num_to_track": 11}),
))


def test_more_prompted_frames_than_the_cap_is_metas_rule_under_a_cap(built_tiny, static_ms, clips):
    """Where a static set departs from Meta: three prompted frames, two slots. It tracks as Meta's predictor
    with max_cond_frames_in_attn = 2 does, and differs from Meta's default (every prompted frame)."""
    from engine.export.reference import ReferenceTracker

    tracker = Tracker(static_ms, StageSet.load(static_ms, BACKENDS["onnxruntime-cpu"]),
                      replace(CAPPED, memory_dtype="bfloat16"))  # as the reference keeps memory
    got = run_engine(tracker, THREE_PROMPTS, clips["davis"], mask_of)
    ref = ReferenceTracker(built_tiny)
    model = built_tiny.model
    assert model.max_cond_frames_in_attn == -1  # Meta's default
    uncapped = run_reference(ref, THREE_PROMPTS, clips["davis"], mask_of)
    model.max_cond_frames_in_attn = 2
    try:
        capped = run_reference(ref, THREE_PROMPTS, clips["davis"], mask_of)
    finally:
        model.max_cond_frames_in_attn = -1
    check(compare(got, capped), THREE_PROMPTS)
    departure = compare(got, uncapped)
    assert departure.max_logit_diff > 0.1, departure  # frames 1-3 attend to prompts 0 and 4, not also 8


def test_a_static_set_needs_a_cap_within_its_slots(static_ms):
    with pytest.raises(ConfigError, match="tracker.max_cond_frames to 2..2"):
        Tracker(static_ms, HostValues(), EXACT)
    with pytest.raises(ConfigError, match="exceeds the 2 conditioning-frame slots"):
        Tracker(static_ms, HostValues(), replace(EXACT, max_cond_frames=3))
    Tracker(static_ms, HostValues(), CAPPED)


def test_more_points_than_slots_is_an_error_naming_them(static_ms, clips):
    tracker = Tracker(static_ms, StageSet.load(static_ms, BACKENDS["onnxruntime-cpu"]), CAPPED)
    state = tracker.init_state(str(clips["davis"]))
    points = np.array([[100.0 + 10 * i, 200.0] for i in range(9)], np.float32)
    with pytest.raises(InputError, match="9 points .* 8 point slots"):
        tracker.add_new_points_or_box(state, 0, 1, points=points, labels=np.ones(9, np.int32))


@pytest.mark.parametrize("name", ["openvino-npu", "openvino-gpu"])
def test_npu_and_gpu_configs_load_fully_static_stages(name, static_modelset_dir, modelset_dir):
    """No NPU or Intel GPU here: the config runs on OpenVINO's CPU plugin, pointed at the test's static set,
    and every compiled stage must report fully known shapes."""
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.name.endswith("_static") and cfg.tracker.max_cond_frames == 2
    here = BackendConfig(name="openvino", device="CPU", precision="f32")
    tracker = Tracker.from_config(replace(cfg, backend=here), model=static_modelset_dir)
    assert "memory_attention_1cond" in tracker.stages.stages  # every tier is compiled, each fully static
    assert {n: s.dynamic_ports for n, s in tracker.stages.stages.items()} == dict.fromkeys(tracker.stages.stages, [])
    ms = ModelSet.load(modelset_dir)
    dynamic = StageSet.load(ms, here, only=("memory_attention", "mask_decoder"))
    assert all(s.dynamic_ports for s in dynamic.stages.values())  # the check can fail


def test_npu_refuses_a_dynamic_stage_before_compiling(modelset_dir, static_modelset_dir):
    import openvino as ov

    from backends.openvino import require_static_for

    core = ov.Core()
    with pytest.raises(ModelSetError, match="NPU compiles fixed shapes only.*memory\\[\\?"):
        require_static_for("NPU", core.read_model(str(modelset_dir / "memory_attention.onnx")), "memory_attention")
    with pytest.raises(ModelSetError, match="--static"):
        require_static_for("AUTO:NPU,CPU", core.read_model(str(modelset_dir / "mask_decoder.onnx")), "mask_decoder")
    require_static_for("NPU", core.read_model(str(static_modelset_dir / "memory_attention.onnx")), "memory_attention")
    require_static_for("CPU", core.read_model(str(modelset_dir / "memory_attention.onnx")), "memory_attention")


def test_export_cli_refuses_static_flags_without_static(tmp_path):
    from engine.export.__main__ import main

    with pytest.raises(ExportError, match="--cond-slots only apply to a static set"):
        main(["--image-size", "512", "--cond-slots", "3", "--out", str(tmp_path / "x")])
    with pytest.raises(ExportError, match="--attention-tiers only apply to a static set"):
        main(["--image-size", "512", "--attention-tiers", "1,2", "--out", str(tmp_path / "x")])
    for bad in ("1,3", "one", ""):  # refused before the model is built
        with pytest.raises(ExportError, match="prompted-frame counts from 1 to --cond-slots 2"):
            main(["--image-size", "512", "--static", "--attention-tiers", bad, "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("value,ok", [(2, True), (-1, True), (None, True), (1, False), (0, False), ("2", False),
                                      (True, False)])
def test_config_max_cond_frames(value, ok):
    from engine.config import parse_config

    if ok:
        assert parse_config({"tracker": {"max_cond_frames": value}}).tracker.max_cond_frames == value
    else:
        with pytest.raises(ConfigError, match="max_cond_frames.*-1 .*or an integer from 2"):
            parse_config({"tracker": {"max_cond_frames": value}})
