import logging

import pytest

from backends import available_backends, create_backend
from backends.base import BackendConfig
from engine.errors import BackendUnavailableError, ConfigError


def test_available_backends_lists_cpu_for_both():
    av = available_backends()
    assert "CPU" in av["onnxruntime"] and "CPU" in av["openvino"]


def test_unknown_backend_name():
    with pytest.raises(ConfigError, match="backend name 'tensorrt' is not known; allowed: onnxruntime, openvino"):
        create_backend(BackendConfig(name="tensorrt"))


UNAVAILABLE = [
    ("onnxruntime", "cuda", "CUDAExecutionProvider"),
    ("onnxruntime", "directml", "DmlExecutionProvider"),
    ("openvino", "GPU", "openvino device GPU"),
    ("openvino", "NPU", "openvino device NPU"),
    ("openvino", "AUTO:GPU,CPU", "openvino device GPU"),
]


@pytest.mark.parametrize("name,device,text", UNAVAILABLE)
def test_unavailable_device_is_an_error_listing_what_is_there(name, device, text):
    if device.split(":")[-1].split(",")[0].upper() in {d.upper() for d in available_backends()[name]}:
        pytest.skip(f"{device} exists on this machine")
    with pytest.raises(BackendUnavailableError) as err:
        create_backend(BackendConfig(name=name, device=device))
    msg = str(err.value)
    assert text in msg and "available devices:" in msg and "CPU" in msg


def test_explicit_fallback_is_logged_and_described(caplog):
    cfg = BackendConfig(name="openvino", device="NPU", precision="f16",
                        fallback=(BackendConfig(name="onnxruntime", device="cpu"),))
    with caplog.at_level(logging.WARNING, logger="backends"):
        backend = create_backend(cfg)
    d = backend.describe()
    assert d["runtime"] == "onnxruntime" and d["fallback_from"] == "openvino:NPU"
    assert any("configured fallback onnxruntime:cpu" in r.getMessage() for r in caplog.records)


def test_no_fallback_unless_configured():
    with pytest.raises(BackendUnavailableError):
        create_backend(BackendConfig(name="openvino", device="NPU"))


def test_all_fallbacks_unavailable_names_them():
    cfg = BackendConfig(name="openvino", device="NPU",
                        fallback=(BackendConfig(name="openvino", device="GPU"),
                                  BackendConfig(name="onnxruntime", device="cuda")))
    with pytest.raises(BackendUnavailableError, match="configured fallbacks tried: openvino:GPU, onnxruntime:cuda"):
        create_backend(cfg)


def test_the_interface_imports_no_implementation():
    """backends.base is what every implementation imports; the registry imports one only when asked."""
    import subprocess
    import sys

    code = ("import sys, backends.base, backends.registry as r\n"
            "assert not {'backends.onnxruntime', 'backends.openvino'} & set(sys.modules), sorted(sys.modules)\n"
            "r.backend_class('openvino')\n"
            "assert 'backends.openvino' in sys.modules and 'backends.onnxruntime' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
