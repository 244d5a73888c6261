"""OpenVINO: CPU, GPU, NPU and AUTO devices.

OpenVINO runs CPU inference in bf16 by default on CPUs with AVX512-BF16 or AMX; this backend always
sets the inference precision explicitly, so f32 means f32 and bf16 is a deliberate choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend, BackendConfig, Stage, StageOptions, timed_load
from engine.errors import BackendUnavailableError, ConfigError, ModelSetError

_PRECISION_TO_OV = {"f32": "f32", "bf16": "bf16", "f16": "f16"}
_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


def _type_name(value: Any) -> str:
    """OpenVINO reports precisions as ov.Type; normalise to f32/bf16/f16."""
    text = str(value).lower()
    for key, names in (("bf16", ("bf16", "bfloat16")), ("f16", ("f16", "float16")), ("f32", ("f32", "float32"))):
        if any(n in text for n in names):
            return key
    return text


def device_capabilities(device: str) -> list[str]:
    """What OpenVINO says `device` can run (OPTIMIZATION_CAPABILITIES: FP32, BF16, FP16, INT8, ...); [] when
    the device is not there or does not say. Tests and `engine.bench --probe` ask this, never the CPU's name."""
    import openvino as ov

    try:
        return list(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - a device that is absent or does not report them
        return []


# Devices whose compilers take fixed shapes only: a dynamic model would fail deep inside the plugin.
STATIC_ONLY_DEVICES = ("NPU",)


def require_static_for(device: str, model: Any, stage: str) -> None:
    """Refuse a model with dynamic axes on a device that compiles fixed shapes only, saying what to export."""
    needs = [d for d in STATIC_ONLY_DEVICES if d in OpenVinoBackend._devices_named(device)]
    if not needs:
        return
    dynamic = [f"{p.get_any_name()}{p.get_partial_shape()}" for p in model.inputs if p.get_partial_shape().is_dynamic]
    if dynamic:
        raise ModelSetError(f"openvino device {needs[0]} compiles fixed shapes only, but {stage} has dynamic inputs "
                            f"({', '.join(dynamic)}); export a static model set with `python -m engine.export "
                            f"--static` and point the config at it")


class OpenVinoStage(Stage):
    def __init__(self, compiled: Any, name: str, load_seconds: float) -> None:
        self.compiled = compiled
        self.name = name
        self.input_names = tuple(i.get_any_name() for i in compiled.inputs)
        self.output_names = tuple(o.get_any_name() for o in compiled.outputs)
        self.load_seconds = load_seconds
        self._request = compiled.create_infer_request()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_inputs(inputs)
        result = self._request.infer({n: inputs[n] for n in self.input_names}, share_outputs=False)
        return {name: result[out] for name, out in zip(self.output_names, self.compiled.outputs, strict=True)}

    @property
    def dynamic_ports(self) -> list[str]:
        """Inputs and outputs of the compiled model whose shape is not fully known ('name[?,64,32,32]')."""
        ports = list(self.compiled.inputs) + list(self.compiled.outputs)
        return [f"{p.get_any_name()}{p.get_partial_shape()}" for p in ports if p.get_partial_shape().is_dynamic]

    @property
    def inference_precision(self) -> str:
        try:
            return _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # devices without the property (e.g. some NPU plugins)
            return "unknown"


class OpenVinoBackend(Backend):
    @staticmethod
    def available_devices() -> list[str]:
        import openvino as ov

        return list(ov.Core().available_devices)

    def __init__(self, config: BackendConfig, fallback_from: BackendConfig | None = None) -> None:
        super().__init__(config, fallback_from)
        import openvino as ov

        self._ov = ov
        self.core = ov.Core()
        self.device = config.device.strip().upper()
        available = list(self.core.available_devices)
        physical = self._devices_named(self.device)
        for dev in physical:
            if not any(a == dev or a.startswith(dev + ".") for a in available):
                raise BackendUnavailableError(
                    f"openvino device {dev} is not available on this machine; available devices: "
                    f"{', '.join(available) or 'none'}"
                )
        if config.performance_hint not in _HINTS:
            raise ConfigError(f"performance_hint {config.performance_hint!r} is not allowed; "
                              f"allowed: {', '.join(_HINTS)}")
        if config.precision not in _PRECISION_TO_OV:
            raise ConfigError(f"precision {config.precision!r} is not allowed; allowed: {', '.join(_PRECISION_TO_OV)}")
        for dev in physical:
            caps = self._capabilities(dev)
            if caps and _CAPABILITY[config.precision] not in caps:
                raise BackendUnavailableError(
                    f"openvino device {dev} cannot run precision {config.precision} "
                    f"(its capabilities: {', '.join(caps)})"
                )
        if config.cache_dir:
            Path(config.cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(Path(config.cache_dir).expanduser())})

    @staticmethod
    def _devices_named(device: str) -> list[str]:
        """The physical devices behind AUTO:GPU,CPU / MULTI:... or a single name."""
        if device == "AUTO":
            return []
        if ":" in device:
            prefix, rest = device.split(":", 1)
            if prefix not in ("AUTO", "MULTI", "HETERO"):
                raise ConfigError(f"openvino device {device!r} is not understood")
            return [d.strip() for d in rest.split(",") if d.strip()]
        return [device]

    def _capabilities(self, device: str) -> list[str]:
        return device_capabilities(device)

    def _compile_config(self, device: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _PRECISION_TO_OV[self.config.precision],
            "PERFORMANCE_HINT": _HINTS[self.config.performance_hint],
        }
        if device.startswith("CPU"):
            if self.config.threads:
                cfg["INFERENCE_NUM_THREADS"] = int(self.config.threads)
            if self.config.cpu_pinning is not None:
                cfg["ENABLE_CPU_PINNING"] = bool(self.config.cpu_pinning)
        if self.config.num_streams:
            cfg["NUM_STREAMS"] = int(self.config.num_streams)
        return cfg

    def load(self, path: str | Path, options: StageOptions | None = None) -> Stage:
        options = options or StageOptions()
        path = Path(path)
        if not path.is_file():
            raise ModelSetError(f"stage model {path} not found")
        try:
            model = self.core.read_model(str(path))
        except Exception as exc:
            raise ModelSetError(f"openvino cannot read {path} ({options.name}): {exc}") from exc
        require_static_for(self.device, model, options.name)
        try:
            compiled, seconds = timed_load(self.core.compile_model, model, self.device,
                                           self._compile_config(self.device))
        except Exception as exc:
            raise BackendUnavailableError(
                f"openvino could not compile {options.name} for {self.device}: {exc}") from exc
        return OpenVinoStage(compiled, options.name, seconds)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "openvino",
            "version": self._ov.get_version(),
            "device": self.device,
            "provider": self.device,
            "precision": self.config.precision,
            "threads": self.config.threads,
            "performance_hint": self.config.performance_hint,
            "num_streams": self.config.num_streams,
            "cpu_pinning": self.config.cpu_pinning,
            "cache_dir": self.config.cache_dir,
            **self._describe_common(),
        }
