"""python -m engine.quantize: int8 stages from a calibration clip, recorded in the manifest, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_cli
from engine.errors import InputError, ModelSetError
from engine.modelset import ModelSet
from engine.quantize.__main__ import main as quantize_main
from tests.conftest import require_data

# the two small stages keep the test short; the image encoder and memory attention go the same way
STAGES = "memory_encoder,mask_decoder"


@pytest.fixture(scope="module")
def quantized(modelset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "set"
    video = str(require_data() / "davis-car-shadow" / "frames")
    code = run_cli(quantize_main, ["--model", str(modelset_dir), "--calibration", video, "--point", "420,250",
                                   "--frames", "16", "--stages", STAGES, "--out", str(out), "--quiet"])
    assert code == 0
    return out


def _op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def test_chosen_stages_are_int8_and_the_manifest_says_how(quantized, modelset_dir):
    ms = ModelSet.load(quantized, verify_checksums=True)
    q = ms.manifest.provenance["quantization"]
    assert q["stages"] == {"image_encoder": "f32", "mask_decoder": "int8", "memory_attention": "f32",
                           "memory_encoder": "int8"}
    assert q["tool"].startswith("nncf ") and q["source_set"] == str(modelset_dir)
    cal = q["calibration"]
    assert cal["frames"] == 16 and cal["prompts"][0]["points"] == [[420.0, 250.0]]
    assert cal["samples"]["image_encoder"] == 16 and cal["samples"]["memory_attention"] == 15
    for name in ("memory_encoder", "mask_decoder"):
        assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(quantized / f"{name}.onnx")
    for name in ("image_encoder", "memory_attention"):
        assert (quantized / f"{name}.onnx").read_bytes() == (modelset_dir / f"{name}.onnx").read_bytes()
    fid = q["fidelity"]["per_object"]["1"]
    assert fid["frames"] == 16 and 0.5 < fid["min_iou"] <= fid["mean_iou"] <= 1.0
    assert q["fidelity"]["in_sample"] is True
    # every layer's weights in 7 bits (the overflow fix), so a CPU without VNNI cannot saturate on them
    assert q["overflow_fix"] == "all" and "overflow fix (7-bit weights) on all layers" in q["method"]
    for name in ("memory_encoder", "mask_decoder"):
        assert 0 < _widest_int8_weight(quantized / f"{name}.onnx") <= 64, name


def _widest_int8_weight(path: Path) -> int:
    """The largest |int8| of the weights a CPU sums in pairs: matrix products and full convolutions (NNCF
    leaves depthwise convolutions, shape (C, 1, k, k), in full range: no sum runs across channels there)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return max(int(np.abs(w.astype(np.int16)).max()) for w in weights
               if w.size > 1 and not (w.ndim == 4 and w.shape[1] == 1))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_an_int8_set_tracks_on_both_runtimes(quantized, backend):
    from engine.config import parse_config
    from engine.tracker import Tracker

    tracker = Tracker.from_config(parse_config({"model": str(quantized), "backend": {"name": backend}}))
    state = tracker.init_state(str(require_data() / "davis-car-shadow" / "frames"))
    tracker.add_new_points_or_box(state, 0, 1, points=[[420.0, 250.0]], labels=[1])
    masks = [r.masks[0] for r in tracker.propagate_in_video(state, max_frame_num_to_track=3)]
    assert len(masks) == 4 and all(0.01 < m.mean() < 0.9 for m in masks)


def test_an_already_quantized_set_is_refused(quantized, tmp_path, capsys):
    video = str(require_data() / "davis-car-shadow" / "frames")
    code = run_cli(quantize_main, ["--model", str(quantized), "--calibration", video, "--out", str(tmp_path / "x")])
    assert code != 0
    assert "is already quantized (mask_decoder int8, memory_encoder int8, from" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_calibration_video_missing_or_too_short(modelset_dir, tmp_path, capsys):
    import shutil

    short = tmp_path / "short"
    short.mkdir()
    for f in sorted((require_data() / "davis-car-shadow" / "frames").glob("*.jpg"))[:10]:
        shutil.copy(f, short / f.name)
    for video, frames, message in ((short, "16", "has 10 frames; 16 are needed"),
                                   (tmp_path / "nope.mp4", "16", "nope.mp4"),
                                   (short, "4", "at least 16 are needed")):
        code = run_cli(quantize_main, ["--model", str(modelset_dir), "--calibration", str(video), "--frames", frames,
                                       "--out", str(tmp_path / "x")])
        assert code != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_other_refusals(modelset_dir, tmp_path):
    from engine.quantize.__main__ import check_source

    with pytest.raises(Exception, match="--stages 'image_encoder,decoder'"):
        quantize_main(["--model", str(modelset_dir), "--calibration", "v.mp4", "--stages", "image_encoder,decoder"])
    with pytest.raises(Exception, match="--out must differ from --model"):
        quantize_main(["--model", str(modelset_dir), "--calibration", "v.mp4", "--out", str(modelset_dir)])
    ms = ModelSet.load(modelset_dir)
    ms.manifest.variant = "sam3_hiera_tiny"  # a variant this engine does not know (EdgeTAM it quantizes)
    with pytest.raises(ModelSetError, match="variant sam3_hiera_tiny, which this quantizer has no recipe for"):
        check_source(ms)


def test_recording_pads_a_static_sets_inputs(static_modelset_dir):
    from backends.base import BackendConfig
    from engine.quantize.calibrate import RecordingStages
    from engine.stages import StageSet, random_inputs

    ms = ModelSet.load(static_modelset_dir)
    rec = RecordingStages(StageSet.load(ms, BackendConfig(), only=("memory_attention",)))
    rec.run("memory_attention", random_inputs(ms, memory_frames=3, pointers=2)["memory_attention"])
    # kept for every tier it fits, so each tier's file is calibrated on the whole clip
    sample = rec.samples["memory_attention"][0]
    assert sample["memory"].shape[0] == 8 and sample["memory_valid"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    small = rec.samples["memory_attention_1cond"][0]
    assert small["memory"].shape[0] == 7 and small["obj_ptr_valid"].shape[0] == 16
    np.testing.assert_array_equal(small["memory"][:3], sample["memory"][:3])
    rec.run("memory_attention", random_inputs(ms, memory_frames=8, pointers=2)["memory_attention"])
    assert len(rec.samples["memory_attention"]) == 2 and len(rec.samples["memory_attention_1cond"]) == 1
    with pytest.raises(InputError):
        rec.run("memory_attention", random_inputs(ms, memory_frames=9, pointers=2)["memory_attention"])
    assert np.isfinite(sample["memory"]).all()


def bench_one_frame(model: Path, out: Path, capsys) -> tuple[dict, str]:
    """engine.bench on ONNX Runtime CPU for one measured frame: the run's report and the console."""
    import json

    from engine.bench import main as bench_main

    code = run_cli(bench_main, ["--backend", "onnxruntime", "--model", str(model), "--warmup", "1",
                                "--frames", "1", "--out", str(out)])
    console = capsys.readouterr().out
    assert code == 0, console
    return json.loads((out / "report.json").read_text())["runs"][0], console


def test_bench_judges_only_float_stages_by_the_float_roofline(quantized, tmp_path, capsys):
    run, console = bench_one_frame(quantized, tmp_path / "b", capsys)
    assert run["int8_stages"] == ["mask_decoder", "memory_encoder"]
    assert set(run["roofline"]["stage_fraction"]) == {"image_encoder", "memory_attention"}
    assert run["roofline"]["frame_roofline_ms"] is None and "no int8 probe" in console
