import numpy as np
import pytest

from backends.base import BackendConfig, StageOptions
from backends.openvino import OpenVinoBackend, device_capabilities
from engine.errors import BackendUnavailableError, ConfigError, ModelSetError
from tests.conftest import TEST_SIZE

FEAT = TEST_SIZE // 16  # the test model set's feature grid


def _inputs():
    rng = np.random.default_rng(0)
    return {"pix_feat": rng.standard_normal((1, 256, FEAT, FEAT), dtype=np.float32),
            "mask_for_mem": rng.standard_normal((1, 1, TEST_SIZE, TEST_SIZE), dtype=np.float32)}


def test_f32_is_explicit_and_reported(modelset):
    backend = OpenVinoBackend(BackendConfig(name="openvino", device="CPU", precision="f32", threads=1))
    stage = backend.load(modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    assert stage.inference_precision == "f32"
    assert stage.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    d = backend.describe()
    assert (d["runtime"], d["device"], d["precision"]) == ("openvino", "CPU", "f32")


def test_bf16_runs_and_reports_bf16(modelset):
    caps = device_capabilities("CPU")
    cfg = BackendConfig(name="openvino", device="CPU", precision="bf16")
    if "BF16" not in caps:
        with pytest.raises(BackendUnavailableError, match="cannot run precision bf16"):
            OpenVinoBackend(cfg)
        return
    backend = OpenVinoBackend(cfg)
    stage = backend.load(modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    assert stage.inference_precision == "bf16"
    assert backend.describe()["precision"] == "bf16"
    out = stage.run(_inputs())["maskmem_features"]
    ref = OpenVinoBackend(BackendConfig(name="openvino", precision="f32")).load(
        modelset.stage_path("memory_encoder")).run(_inputs())["maskmem_features"]
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert 0 < rel < 0.1  # bf16 really ran: close, but not bit-equal to f32


def test_cache_dir_is_used(modelset, tmp_path):
    cache = tmp_path / "ovcache"
    backend = OpenVinoBackend(BackendConfig(name="openvino", cache_dir=str(cache)))
    backend.load(modelset.stage_path("memory_encoder"))
    assert cache.is_dir() and any(cache.iterdir())


def test_unknown_device_form():
    with pytest.raises(ConfigError, match="not understood"):
        OpenVinoBackend(BackendConfig(name="openvino", device="FOO:CPU"))


def test_missing_model(tmp_path):
    with pytest.raises(ModelSetError, match="not found"):
        OpenVinoBackend(BackendConfig(name="openvino")).load(tmp_path / "x.onnx")


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelSetError, match="openvino cannot read"):
        OpenVinoBackend(BackendConfig(name="openvino")).load(bad)


@pytest.mark.parametrize("pinning", [True, False])
def test_cpu_pinning_reaches_the_plugin(modelset, pinning):
    backend = OpenVinoBackend(BackendConfig(name="openvino", device="CPU", cpu_pinning=pinning))
    stage = backend.load(modelset.stage_path("memory_encoder"))
    assert stage.compiled.get_property("ENABLE_CPU_PINNING") is pinning
    assert backend.describe()["cpu_pinning"] is pinning
