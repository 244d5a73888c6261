import numpy as np

from backends.base import BackendConfig
from backends.onnxruntime import OnnxRuntimeStage
from backends.openvino import OpenVinoStage
from engine.config import parse_config
from engine.modelset import STAGES
from engine.stages import StageSet


def _random_inputs(modelset):
    rng = np.random.default_rng(5)
    f, s = modelset.manifest.feat_size, modelset.manifest.image_size

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "image_encoder": {"image": r(1, 3, s, s)},
        "mask_decoder": {"image_embed": r(1, 256, f, f), "high_res_feat0": r(1, 32, 4 * f, 4 * f),
                         "high_res_feat1": r(1, 64, 2 * f, 2 * f), "point_coords": r(1, 2, 2) * 100 + 200,
                         "point_labels": np.array([[1, 0]], np.int32), "mask_input": r(1, 1, 4 * f, 4 * f),
                         "has_mask_input": np.ones(1, np.float32)},
        "memory_attention": {"curr": r(1, 256, f, f), "memory": r(2, 64, f, f), "memory_pos": r(2, 64, f, f),
                             "obj_ptrs": r(3, 256), "obj_ptr_pos": r(3, 64)},
        "memory_encoder": {"pix_feat": r(1, 256, f, f), "mask_for_mem": r(1, 1, s, s)},
    }


def test_every_stage_agrees_between_onnxruntime_and_openvino(modelset):
    ort = StageSet.load(modelset, BackendConfig(name="onnxruntime", device="cpu"))
    ov = StageSet.load(modelset, BackendConfig(name="openvino", device="CPU", precision="f32"))
    for stage, inputs in _random_inputs(modelset).items():
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
