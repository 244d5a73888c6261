import numpy as np

from backends.base import BackendConfig
from backends.onnxruntime import OnnxRuntimeStage
from backends.openvino import OpenVinoStage
from engine.config import parse_config
from engine.modelset import STAGES
from engine.stages import StageSet, random_inputs


def test_every_stage_agrees_between_onnxruntime_and_openvino(modelset):
    ort = StageSet.load(modelset, BackendConfig(name="onnxruntime", device="cpu"))
    ov = StageSet.load(modelset, BackendConfig(name="openvino", device="CPU", precision="f32"))
    for stage, inputs in random_inputs(modelset, memory_frames=2, pointers=3, points=2, seed=5).items():
        a, b = ort.run(stage, inputs), ov.run(stage, inputs)
        assert set(a) == set(b)
        for name in a:
            rel = np.abs(a[name] - b[name]).max() / max(np.abs(a[name]).max(), 1e-12)
            assert rel <= 1e-4, (stage, name, rel)


def test_per_stage_overrides_place_stages(modelset):
    cfg = parse_config({"backend": {"name": "openvino", "device": "CPU"},
                        "stages": {"memory_attention": {"name": "onnxruntime", "device": "cpu"},
                                   "memory_encoder": {"precision": "bf16"}}})
    ss = StageSet.load(modelset, cfg)
    d = ss.describe()
    assert d["memory_attention"]["runtime"] == "onnxruntime"
    assert isinstance(ss.stages["memory_attention"], OnnxRuntimeStage)
    for name in ("image_encoder", "mask_decoder", "memory_encoder"):
        assert d[name]["runtime"] == "openvino" and isinstance(ss.stages[name], OpenVinoStage)
    assert d["memory_encoder"]["effective_precision"] == "bf16"
    assert d["image_encoder"]["effective_precision"] == "f32"
    assert ss.backends["image_encoder"] is ss.backends["mask_decoder"]  # equal configs share one backend
    assert set(d) == set(STAGES)
