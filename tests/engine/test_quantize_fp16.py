"""python -m engine.quantize --precision fp16: float16 graphs with float32 ends, judged against the float set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendConfig
from engine.cli import run_cli
from engine.errors import ConfigError, ModelSetError
from engine.modelset import STAGES, ModelSet
from engine.quantize.__main__ import main as quantize_main
from engine.stages import StageSet, random_inputs
from tests.conftest import require_data

ORT = BackendConfig(name="onnxruntime", device="cpu")


@pytest.fixture(scope="module")
def fp16_dir(modelset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp16") / "set"
    assert run_cli(quantize_main, ["--model", str(modelset_dir), "--precision", "fp16", "--out", str(out),
                                   "--quiet"]) == 0
    return out


def _elem_types(path: Path) -> tuple[set[int], set[int], set[int]]:
    import onnx

    g = onnx.load(str(path)).graph
    return ({i.data_type for i in g.initializer}, {v.type.tensor_type.elem_type for v in g.input},
            {v.type.tensor_type.elem_type for v in g.output})


def test_every_stage_is_float16_inside_and_float32_at_its_ends(fp16_dir, modelset_dir):
    ms = ModelSet.load(fp16_dir, verify_checksums=True)
    q = ms.manifest.provenance["quantization"]
    assert q["precision"] == "fp16" and q["stages"] == dict.fromkeys(STAGES, "fp16")
    assert q["source_set"] == str(modelset_dir) and "calibration" not in q
    for name in STAGES:
        weights, inputs, outputs = _elem_types(fp16_dir / f"{name}.onnx")
        assert 10 in weights, name  # FLOAT16
        assert 10 not in inputs | outputs and 1 in inputs and 1 in outputs, name
    # float32 weights left: only what Resize requires in float32 (its scales)
    import onnx

    g = onnx.load(str(fp16_dir / "image_encoder.onnx")).graph
    kept = {i.name for i in g.initializer if i.data_type == 1}
    assert kept and kept <= {n.input[2] for n in g.node if n.op_type == "Resize" and len(n.input) > 2}


def test_stages_agree_with_float32_to_fp16_precision(fp16_dir, modelset_dir):
    half, full = ModelSet.load(fp16_dir), ModelSet.load(modelset_dir)
    feeds = random_inputs(full, memory_frames=3, pointers=4, seed=1)
    a, b = StageSet.load(half, ORT), StageSet.load(full, ORT)
    for name in STAGES:
        got, want = a.run(name, feeds[name]), b.run(name, feeds[name])
        for key, ref in want.items():
            assert got[key].dtype == np.float32, (name, key)
            rel = np.abs(got[key] - ref).max() / max(np.abs(ref).max(), 1e-6)
            assert 1e-6 < rel < 5e-2, (name, key, rel)  # fp16 rounding shows, and stays fp16-sized


def test_an_fp16_set_tracks_close_to_its_float_set(fp16_dir, modelset_dir):
    from engine.quantize.calibrate import exact_tracker

    frames = str(require_data() / "davis-car-shadow" / "frames")
    runs = []
    for root in (fp16_dir, modelset_dir):
        tracker = exact_tracker(ModelSet.load(root))
        state = tracker.init_state(frames)
        tracker.add_new_points_or_box(state, 0, 1, points=[[420.0, 250.0]], labels=[1])
        runs.append([(r.masks[0], r.low_res_logits[0]) for r in tracker.propagate_in_video(state, max_frame_num_to_track=5)])
    for (m16, l16), (m32, l32) in zip(*runs, strict=True):
        assert 0.05 < m32.mean() < 0.6
        assert np.count_nonzero(m16 & m32) / np.count_nonzero(m16 | m32) > 0.9
        assert 0 < np.abs(l16 - l32).max() < 1.0


def test_fp16_refusals(fp16_dir, modelset_dir, tmp_path, capsys):
    code = run_cli(quantize_main, ["--model", str(fp16_dir), "--precision", "fp16", "--out", str(tmp_path / "x")])
    assert code != 0 and "is already quantized (image_encoder fp16" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--precision int8 needs --calibration"):
        quantize_main(["--model", str(modelset_dir), "--out", str(tmp_path / "y")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_graph_with_subgraphs_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from engine.quantize.fp16 import convert_stage

    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "if.onnx"))
    with pytest.raises(ModelSetError, match="subgraphs"):
        convert_stage(tmp_path / "if.onnx", tmp_path / "out.onnx")


def test_fidelity_judges_a_quantized_set_against_its_float_source(fp16_dir, modelset_dir, tmp_path):
    from engine.fidelity import float_source

    assert float_source(ModelSet.load(fp16_dir)) == modelset_dir
    assert float_source(ModelSet.load(modelset_dir)) == modelset_dir
    moved = tmp_path / "moved"
    import shutil

    shutil.copytree(fp16_dir, moved)
    ms = ModelSet.load(moved)
    ms.manifest.provenance["quantization"]["source_set"] = str(tmp_path / "gone")
    with pytest.raises(ConfigError, match="pass --exact"):
        float_source(ms)


def test_fidelity_refuses_a_quantized_exact_run(fp16_dir, modelset_dir, tmp_path, capsys):
    from engine.fidelity import main as fidelity_main

    for name, model in (("cand", modelset_dir), ("exact", fp16_dir)):
        (tmp_path / f"{name}.yaml").write_text(f"model: {model}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    code = run_cli(fidelity_main, ["--candidate", str(tmp_path / "cand.yaml"), "--exact", str(tmp_path / "exact.yaml"),
                                   "--video", str(require_data() / "davis-car-shadow" / "frames"), "--point", "420,250",
                                   "--max-frames", "1", "--quiet"])
    assert code != 0 and "is itself quantized (fp16)" in capsys.readouterr().err


def test_calibration_flags_without_a_calibration_clip_are_refused(modelset_dir, tmp_path):
    for extra in (["--point", "420,250"], ["--frames", "20"]):
        with pytest.raises(ConfigError, match="pass --calibration with them"):
            quantize_main(["--model", str(modelset_dir), "--precision", "fp16", "--out", str(tmp_path / "z"), *extra])
    assert not (tmp_path / "z").exists()


def test_a_calibration_clip_without_prompts_is_judged_from_a_click_in_its_middle(modelset_dir, tmp_path):
    video = require_data() / "davis-car-shadow" / "frames"
    out = tmp_path / "set"
    assert run_cli(quantize_main, ["--model", str(modelset_dir), "--precision", "fp16", "--stages", "memory_encoder",
                                   "--calibration", str(video), "--frames", "16", "--out", str(out), "--quiet"]) == 0
    q = ModelSet.load(out).manifest.provenance["quantization"]
    assert q["stages"]["memory_encoder"] == "fp16" and q["stages"]["image_encoder"] == "f32"
    assert q["calibration"]["prompts"][0]["points"] == [[427.0, 240.0]]  # the middle of DAVIS's 854 x 480 frames
    fid = q["fidelity"]["per_object"]["1"]
    assert fid["frames"] == 16 and 0.9 < fid["min_iou"] <= 1.0


def test_bench_does_not_judge_fp16_stages_by_the_f32_roofline(fp16_dir, tmp_path, capsys):
    from tests.engine.test_quantize import bench_one_frame

    run, console = bench_one_frame(fp16_dir, tmp_path / "b", capsys)
    assert run["converted_stages"] == dict.fromkeys(STAGES, "fp16") and run["int8_stages"] == []
    assert run["roofline"]["stage_fraction"] == {} and run["roofline"]["frame_roofline_ms"] is None
    assert "no fp16 probe" in console
