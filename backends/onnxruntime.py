"""ONNX Runtime: CPU, CUDA and DirectML execution providers.

The GPU builds (onnxruntime-gpu, onnxruntime-directml) replace the CPU package; which providers
exist depends on which one is installed, and `available_devices()` reports exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend, BackendConfig, Stage, StageOptions, timed_load
from engine.errors import BackendUnavailableError, ModelSetError

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "DML": "DmlExecutionProvider"}
DEVICE_ALIASES = {"CPU": "CPU", "CUDA": "CUDA", "GPU": "CUDA", "DML": "DML", "DIRECTML": "DML"}
# ONNX Runtime runs these models as exported (f32); lower precision would need converted models.
PRECISIONS = {"CPU": ("f32",), "CUDA": ("f32",), "DML": ("f32",)}


def normalise_device(device: str) -> str:
    key = device.strip().upper()
    if key not in DEVICE_ALIASES:
        raise BackendUnavailableError(
            f"onnxruntime has no device {device!r}; devices: cpu, cuda, directml"
        )
    return DEVICE_ALIASES[key]


class OnnxRuntimeStage(Stage):
    def __init__(self, session: Any, name: str, device: str, io_binding: bool, load_seconds: float) -> None:
        self.session = session
        self.name = name
        self.device = device
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.load_seconds = load_seconds
        self._io_binding = io_binding

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_inputs(inputs)
        if self._io_binding:
            binding = self.session.io_binding()
            for name in self.input_names:
                binding.bind_cpu_input(name, np.ascontiguousarray(inputs[name]))
            for name in self.output_names:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            return dict(zip(self.output_names, binding.copy_outputs_to_cpu(), strict=True))
        values = self.session.run(None, {n: inputs[n] for n in self.input_names})
        return dict(zip(self.output_names, values, strict=True))


class OnnxRuntimeBackend(Backend):
    @staticmethod
    def available_devices() -> list[str]:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return [dev for dev, prov in _PROVIDERS.items() if prov in have]

    def __init__(self, config: BackendConfig, fallback_from: BackendConfig | None = None) -> None:
        super().__init__(config, fallback_from)
        import onnxruntime as ort

        self._ort = ort
        self.device = normalise_device(config.device)
        available = self.available_devices()
        if self.device not in available:
            raise BackendUnavailableError(
                f"onnxruntime device {self.device} ({_PROVIDERS[self.device]}) is not available on this "
                f"machine with onnxruntime {ort.__version__}; available devices: {', '.join(available)}"
                + (" (install the 'cuda' extra, onnxruntime-gpu, instead of onnxruntime)"
                   if self.device == "CUDA" else "")
                + (" (install the 'directml' extra on Windows)" if self.device == "DML" else "")
            )
        if config.precision not in PRECISIONS[self.device]:
            raise BackendUnavailableError(
                f"onnxruntime on {self.device} runs precision {', '.join(PRECISIONS[self.device])} only, "
                f"not {config.precision!r}; use openvino for bf16/f16"
            )
        self.provider = _PROVIDERS[self.device]

    def _providers(self) -> list[Any]:
        options = {str(k): str(v) for k, v in dict(self.config.provider_options).items()}
        chain: list[Any] = [(self.provider, options)]
        if self.provider != "CPUExecutionProvider":
            # ORT needs the CPU EP for the few ops a GPU EP does not implement; this is node
            # placement inside one session, not a device fallback (the session is checked below).
            chain.append("CPUExecutionProvider")
        return chain

    def load(self, path: str | Path, options: StageOptions | None = None) -> Stage:
        options = options or StageOptions()
        path = Path(path)
        if not path.is_file():
            raise ModelSetError(f"stage model {path} not found")
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if self.config.threads:
            so.intra_op_num_threads = int(self.config.threads)
            so.inter_op_num_threads = 1
        try:
            session, seconds = timed_load(
                self._ort.InferenceSession, str(path), sess_options=so, providers=self._providers()
            )
        except Exception as exc:
            raise ModelSetError(f"onnxruntime cannot load {path} ({options.name}): {exc}") from exc
        if session.get_providers()[0] != self.provider:
            # onnxruntime drops a provider whose libraries fail to load and carries on on the CPU
            raise BackendUnavailableError(
                f"onnxruntime could not start {self.provider} for {options.name} (session providers: "
                f"{session.get_providers()}); check the CUDA/cuDNN or DirectML installation"
            )
        return OnnxRuntimeStage(session, options.name, self.device, self.config.io_binding, seconds)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "device": self.device,
            "provider": self.provider,
            "precision": self.config.precision,
            "threads": self.config.threads,
            "io_binding": self.config.io_binding,
            **self._describe_common(),
        }
