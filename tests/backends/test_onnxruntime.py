import numpy as np
import pytest

from backends.base import BackendConfig, StageOptions
from backends.onnxruntime import OnnxRuntimeBackend
from engine.errors import BackendUnavailableError, InputError, ModelSetError


def test_describe():
    d = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cpu", threads=1)).describe()
    assert d["runtime"] == "onnxruntime" and d["device"] == "CPU" and d["provider"] == "CPUExecutionProvider"
    assert d["precision"] == "f32" and d["threads"] == 1 and d["version"]


@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_precision_the_device_cannot_do(precision):
    with pytest.raises(BackendUnavailableError, match=f"runs precision f32 only, not '{precision}'"):
        OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cpu", precision=precision))


def test_threads_reach_the_session(modelset):
    stage = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", threads=1)).load(
        modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    assert stage.session.get_session_options().intra_op_num_threads == 1


def test_io_binding_gives_same_outputs(modelset):
    path = modelset.stage_path("memory_encoder")
    rng = np.random.default_rng(0)
    inputs = {"pix_feat": rng.standard_normal((1, 256, 32, 32), dtype=np.float32),
              "mask_for_mem": rng.standard_normal((1, 1, 512, 512), dtype=np.float32)}
    plain = OnnxRuntimeBackend(BackendConfig(name="onnxruntime")).load(path).run(inputs)
    bound = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", io_binding=True)).load(path).run(inputs)
    np.testing.assert_array_equal(plain["maskmem_features"], bound["maskmem_features"])


def test_provider_dropped_by_onnxruntime_is_an_error(modelset, monkeypatch):
    # onnxruntime-gpu drops a provider whose CUDA libraries fail to load and runs on the CPU;
    # the backend must notice instead of silently running on the CPU.
    monkeypatch.setattr(OnnxRuntimeBackend, "available_devices", staticmethod(lambda: ["CPU", "CUDA"]))
    backend = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cuda"))
    with pytest.raises(BackendUnavailableError, match="could not start CUDAExecutionProvider"):
        backend.load(modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))


def test_missing_and_corrupt_model(tmp_path):
    backend = OnnxRuntimeBackend(BackendConfig(name="onnxruntime"))
    with pytest.raises(ModelSetError, match="not found"):
        backend.load(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelSetError, match="onnxruntime cannot load"):
        backend.load(bad)


def test_wrong_input_names(modelset):
    stage = OnnxRuntimeBackend(BackendConfig(name="onnxruntime")).load(
        modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    with pytest.raises(InputError, match="missing: \\['mask_for_mem'\\]"):
        stage.run({"pix_feat": np.zeros((1, 256, 32, 32), np.float32)})
