import numpy as np
import pytest

from backends.base import BackendConfig, StageOptions
from backends.onnxruntime import OnnxRuntimeBackend
from engine.errors import BackendUnavailableError, InputError, ModelSetError
from tests.conftest import TEST_SIZE

FEAT = TEST_SIZE // 16  # the test model set's feature grid


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
    inputs = {"pix_feat": rng.standard_normal((1, 256, FEAT, FEAT), dtype=np.float32),
              "mask_for_mem": rng.standard_normal((1, 1, TEST_SIZE, TEST_SIZE), dtype=np.float32)}
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
        stage.run({"pix_feat": np.zeros((1, 256, FEAT, FEAT), np.float32)})


def _fixed_stage(ms, stage: str):
    """A stage in the CUDA-graph mode (device buffers bound once), here with host buffers: the same code path."""
    from backends.onnxruntime import OnnxRuntimeStage

    plain = OnnxRuntimeBackend(BackendConfig(name="onnxruntime")).load(ms.stage_path(stage), StageOptions(stage))
    return plain, OnnxRuntimeStage(plain.session, stage, "CPU", False, 0.0, fixed_buffers=True)


@pytest.mark.parametrize("stage", ["memory_attention", "mask_decoder"])
def test_fixed_buffers_give_the_plain_outputs_call_after_call(static_modelset_dir, stage):
    from engine.modelset import ModelSet
    from engine.stages import random_inputs

    ms = ModelSet.load(static_modelset_dir)
    plain, fixed = _fixed_stage(ms, stage)
    first = None
    for seed in (0, 1):  # new inputs are copied into the same buffers, and a result outlives the next call
        x = ms.manifest.static.pad(stage, random_inputs(ms, memory_frames=2 + seed, pointers=3, seed=seed)[stage])
        want, got = plain.run(x), fixed.run(x)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        if first is None:
            first = (got, {k: v.copy() for k, v in got.items()})
    assert all(np.array_equal(first[0][k], first[1][k]) for k in first[1])
    key = next(k for k, v in x.items() if v.shape[-1] > 1)
    with pytest.raises(InputError, match="fixed buffer"):
        fixed.run({**x, key: x[key][..., :1]})


def test_fixed_buffers_need_a_static_set(modelset):
    with pytest.raises(ModelSetError, match="engine.export --static"):
        _fixed_stage(modelset, "memory_attention")


def test_cuda_graph_and_tensorrt_are_refused_where_they_cannot_run():
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider.*TensorRT libraries"):
        OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="tensorrt"))
    with pytest.raises(BackendUnavailableError, match="cuda_graph is an onnxruntime CUDA feature"):
        OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cpu", cuda_graph=True))


def test_tensorrt_options_from_the_config(monkeypatch, tmp_path):
    monkeypatch.setattr(OnnxRuntimeBackend, "available_devices", staticmethod(lambda: ["CPU", "CUDA", "TRT"]))
    backend = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="tensorrt", precision="f16",
                                               cache_dir=str(tmp_path), provider_options={"device_id": 0}))
    chain = backend._providers()
    assert [c[0] if isinstance(c, tuple) else c for c in chain] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = chain[0][1]
    assert trt["trt_fp16_enable"] == "1" and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["device_id"] == "0"
    graph = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cuda", cuda_graph=True))._providers()
    assert graph[0] == ("CUDAExecutionProvider", {"enable_cuda_graph": "1"})


@pytest.mark.parametrize("spin", [True, False, None])
def test_spin_wait_reaches_the_session_and_is_off_by_default(modelset, spin):
    """ONNX Runtime spins by its own default; the engine's default (None) is off."""
    backend = OnnxRuntimeBackend(BackendConfig(name="onnxruntime", device="cpu", spin_wait=spin))
    stage = backend.load(modelset.stage_path("memory_encoder"))
    options = stage.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")
    assert backend.describe()["spin_wait"] is bool(spin)
