import pytest

import backends.openvino as openvino_backend
from backends.base import BackendConfig
from backends.onnxruntime import OnnxRuntimeStage
from backends.openvino import OpenVinoStage
from engine.config import parse_config
from engine.errors import BackendUnavailableError
from engine.modelset import STAGES
from engine.stages import StageSet, random_inputs
from tests.tolerance import assert_close, reorder_bound, stage_reduction


def test_every_stage_agrees_between_onnxruntime_and_openvino(modelset):
    ort = StageSet.load(modelset, BackendConfig(name="onnxruntime", device="cpu"))
    ov = StageSet.load(modelset, BackendConfig(name="openvino", device="CPU", precision="f32"))
    for stage, inputs in random_inputs(modelset, memory_frames=2, pointers=3, points=2, seed=5).items():
        a, b = ort.run(stage, inputs), ov.run(stage, inputs)
        assert set(a) == set(b)
        bound = reorder_bound(*stage_reduction(modelset, stage, 2, 3, 2))  # two runtimes' kernels: tolerance.py
        for name in a:
            assert_close(b[name], a[name], bound, (stage, name))


def test_per_stage_overrides_place_stages(modelset):
    cfg = parse_config({"backend": {"name": "openvino", "device": "CPU"},
                        "stages": {"memory_attention": {"name": "onnxruntime", "device": "cpu"},
                                   "memory_encoder": {"threads": 1}}})
    ss = StageSet.load(modelset, cfg)
    d = ss.describe()
    assert d["memory_attention"]["runtime"] == "onnxruntime"
    assert isinstance(ss.stages["memory_attention"], OnnxRuntimeStage)
    for name in ("image_encoder", "mask_decoder", "memory_encoder"):
        assert d[name]["runtime"] == "openvino" and isinstance(ss.stages[name], OpenVinoStage)
        assert d[name]["effective_precision"] == "f32"
    assert ss.backends["memory_encoder"].config.threads == 1 and ss.backends["image_encoder"].config.threads is None
    assert ss.backends["image_encoder"] is ss.backends["mask_decoder"]  # equal configs share one backend
    assert ss.backends["memory_encoder"] is not ss.backends["image_encoder"]
    assert set(d) == set(STAGES)


@pytest.mark.parametrize("cpu", ["this machine", "a CPU without bf16"])
def test_a_bf16_stage_runs_where_the_device_has_it_and_is_refused_where_not(modelset, monkeypatch, cpu):
    """Asked of the device (OpenVINO's capabilities), never of the CPU's name: a bf16 override runs in bf16
    where the CPU plugin reports BF16, and is a clear refusal where it does not. The refusal is also checked
    on machines that have bf16, with the capability answer faked."""
    if cpu == "a CPU without bf16":
        monkeypatch.setattr(openvino_backend, "device_capabilities", lambda device: ["FP32", "INT8", "BIN"])
    cfg = parse_config({"backend": {"name": "openvino", "device": "CPU"},
                        "stages": {"memory_encoder": {"precision": "bf16"}}})
    if "BF16" not in openvino_backend.device_capabilities("CPU"):
        with pytest.raises(BackendUnavailableError, match=r"openvino device CPU cannot run precision bf16 \(its "
                                                          r"capabilities: FP32, INT8"):
            StageSet.load(modelset, cfg)
        return
    d = StageSet.load(modelset, cfg).describe()
    assert d["memory_encoder"]["effective_precision"] == "bf16" and d["image_encoder"]["effective_precision"] == "f32"


@pytest.mark.parametrize("overflow_fix, cpu_saturates, warned", [(None, True, True), ("first-layer", True, True),
                                                                 ("all", True, False), (None, False, False)])
def test_an_int8_set_that_can_saturate_here_is_said(modelset_dir, tmp_path, monkeypatch, caplog, overflow_fix,
                                                     cpu_saturates, warned):
    """int8 weights in full range saturate the 16-bit pair sums of a CPU without VNNI (AVX2): the set still
    runs, and loading it says so. Asked of the CPU's flags, faked here either way."""
    import logging
    import shutil

    import yaml

    import engine.cpu
    from engine.modelset import ModelSet

    copy = tmp_path / "int8"
    shutil.copytree(modelset_dir, copy)
    raw = yaml.safe_load((copy / "modelset.yaml").read_text())
    raw["provenance"]["quantization"] = {"precision": "int8", "stages": {"memory_encoder": "int8"},
                                         **({"overflow_fix": overflow_fix} if overflow_fix else {})}
    (copy / "modelset.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(engine.cpu, "int8_may_saturate", lambda: cpu_saturates)
    with caplog.at_level(logging.WARNING, logger="engine"):
        StageSet.load(ModelSet.load(copy), BackendConfig(name="onnxruntime", device="cpu"), only=("memory_encoder",))
    said = "this CPU has no VNNI" in caplog.text and "--overflow-fix all" in caplog.text
    assert said == warned, caplog.text
