"""ONNX Runtime: CPU, CUDA, TensorRT and DirectML execution providers.

The GPU builds (onnxruntime-gpu, onnxruntime-directml) replace the CPU package; which providers
exist depends on which one is installed (TensorRT also needs NVIDIA's TensorRT libraries), and
`available_devices()` reports exactly that.

CUDA graphs (`cuda_graph: true`) replay a captured stage, which ONNX Runtime allows only when every input
and output keeps its device address: such a stage allocates its buffers on the device once (fixed shapes:
a static model set), copies each call's inputs into them and reads its outputs back.

`keep_on_device: true` leaves the outputs that only feed other stages on the device and keeps the memory
bank there (backends/onnxruntime_device.py): per tracked frame only the prompt, the decoder's masks and
scores, and the mask for the memory encoder cross between host and device.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend, BackendConfig, DeviceTensor, Stage, StageOptions, timed_load
from engine.errors import BackendUnavailableError, InputError, ModelSetError

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "TRT": "TensorrtExecutionProvider",
              "DML": "DmlExecutionProvider"}
DEVICE_ALIASES = {"CPU": "CPU", "CUDA": "CUDA", "GPU": "CUDA", "TENSORRT": "TRT", "TRT": "TRT", "DML": "DML",
                  "DIRECTML": "DML"}
# ONNX Runtime runs a graph in the types it was saved with (fp16: `engine.quantize --precision fp16`);
# only TensorRT converts at build time, so only it takes f16 here.
PRECISIONS = {"CPU": ("f32",), "CUDA": ("f32",), "TRT": ("f32", "f16"), "DML": ("f32",)}
_INSTALL = {"CUDA": " (install the 'cuda' extra, onnxruntime-gpu, instead of onnxruntime)",
            "TRT": " (install the 'cuda' extra, onnxruntime-gpu, and NVIDIA's TensorRT libraries)",
            "DML": " (install the 'directml' extra on Windows)"}
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def normalise_device(device: str) -> str:
    key = device.strip().upper()
    if key not in DEVICE_ALIASES:
        raise BackendUnavailableError(
            f"onnxruntime has no device {device!r}; devices: cpu, cuda, tensorrt, directml"
        )
    return DEVICE_ALIASES[key]


class OnnxRuntimeStage(Stage):
    def __init__(self, session: Any, name: str, device: str, io_binding: bool, load_seconds: float,
                 fixed_buffers: bool = False, ops: Any = None) -> None:
        self.session = session
        self.ops = ops  # DeviceOps where the backend keeps values on the device
        self.name = name
        self.device = device
        self.input_names = tuple(i.name for i in session.get_inputs())
        self.output_names = tuple(o.name for o in session.get_outputs())
        self.load_seconds = load_seconds
        self._io_binding = io_binding
        self._fixed: tuple[Any, dict[str, Any], dict[str, Any]] | None = None
        if fixed_buffers:
            self._fixed = self._allocate()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_inputs(inputs)
        if self._fixed is not None:
            return self._run_fixed(inputs)
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

    def _allocate(self) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """One device buffer per input and output, bound once: their addresses never change."""
        from onnxruntime import OrtValue

        where = "cuda" if self.device in ("CUDA", "TRT") else "cpu"
        ports = [*self.session.get_inputs(), *self.session.get_outputs()]
        dynamic = [f"{p.name} {p.shape}" for p in ports if not all(isinstance(d, int) for d in p.shape)]
        if dynamic:
            raise ModelSetError(f"{self.name}: CUDA graphs need fixed shapes, and this stage has dynamic ones "
                                f"({', '.join(dynamic)}); export a static set (python -m engine.export --static)")
        binding = self.session.io_binding()
        buffers = {}
        for port in ports:
            buffers[port.name] = OrtValue.ortvalue_from_shape_and_type(port.shape, _NUMPY_TYPES[port.type], where, 0)
        for name in self.input_names:
            binding.bind_ortvalue_input(name, buffers[name])
        for name in self.output_names:
            binding.bind_ortvalue_output(name, buffers[name])
        return binding, {n: buffers[n] for n in self.input_names}, {n: buffers[n] for n in self.output_names}

    def run_on_device(self, inputs: Mapping[str, np.ndarray | DeviceTensor],
                      keep: Collection[str]) -> dict[str, np.ndarray | DeviceTensor]:
        if self.ops is None:
            raise InputError(f"stage {self.name}: values stay on the device only on a backend with keep_on_device")
        self._check_inputs(inputs)
        if self._fixed is not None:
            return self._run_fixed(inputs, keep)
        return self.ops.run_bound(self.session, dict(inputs), tuple(keep))

    def _run_fixed(self, inputs: Mapping[str, np.ndarray | DeviceTensor],
                   keep: Collection[str] = ()) -> dict[str, np.ndarray | DeviceTensor]:
        binding, ins, outs = self._fixed  # type: ignore[misc]
        for name, buf in ins.items():
            value = inputs[name]
            arr = value if isinstance(value, DeviceTensor) else np.ascontiguousarray(value)
            dtype = arr.dtype if isinstance(arr, DeviceTensor) else np.dtype(arr.dtype).name
            if tuple(arr.shape) != tuple(buf.shape()) or np.dtype(_NUMPY_TYPES[buf.data_type()]).name != dtype:
                raise InputError(f"stage {self.name}: input {name} is {dtype} {list(arr.shape)}, but this "
                                 f"stage's fixed buffer is {buf.data_type()} {buf.shape()}")
            if isinstance(arr, DeviceTensor):
                self.ops.copy(arr, into=buf)  # device to device: a replayed graph reads this buffer
            else:
                buf.update_inplace(arr)
        self.session.run_with_iobinding(binding)
        out: dict[str, np.ndarray | DeviceTensor] = {}
        for name, buf in outs.items():
            if name in keep:  # the next replay overwrites the buffer: the kept value is a copy on the device
                out[name] = self.ops.copy(self.ops.wrap(buf))
            elif self.device in ("CUDA", "TRT"):  # numpy() copies a device buffer to the host
                out[name] = buf.numpy()
            else:  # on the host it is a view: the next run overwrites it
                out[name] = buf.numpy().copy()
        return out


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
                + _INSTALL.get(self.device, "")
            )
        if config.precision not in PRECISIONS[self.device]:
            raise BackendUnavailableError(
                f"onnxruntime on {self.device} runs precision {', '.join(PRECISIONS[self.device])} only, "
                f"not {config.precision!r}; for fp16 on CUDA use an fp16 set (python -m engine.quantize "
                f"--precision fp16), for bf16 use openvino"
            )
        if config.cuda_graph and self.device != "CUDA":
            raise BackendUnavailableError(f"cuda_graph is an onnxruntime CUDA feature, not one of {self.device}")
        if config.keep_on_device and self.device == "DML":
            raise BackendUnavailableError("keep_on_device runs on onnxruntime's CPU, CUDA and TensorRT devices, "
                                          "not DirectML")
        self.provider = _PROVIDERS[self.device]
        self.ops = self._device_ops() if config.keep_on_device else None

    def _device_ops(self) -> Any:
        import importlib.util

        if importlib.util.find_spec("onnx") is None:
            raise BackendUnavailableError("keep_on_device builds its copy and stacking graphs with the onnx package, "
                                          "which is not installed here: pip install onnx")
        from backends.onnxruntime_device import DeviceOps

        device_id = int(dict(self.config.provider_options).get("device_id", 0))
        return DeviceOps(self._ort, "cuda" if self.device in ("CUDA", "TRT") else "cpu", device_id)

    def to_host(self, value: DeviceTensor) -> np.ndarray:
        if self.ops is None:
            return super().to_host(value)
        return self.ops.to_host(value)

    def memory_store(self, spec: Any) -> Any:
        if self.ops is None:
            return super().memory_store(spec)
        from backends.onnxruntime_device import DeviceMemoryStore

        return DeviceMemoryStore(self.ops, spec)

    def _providers(self) -> list[Any]:
        options = {str(k): str(v) for k, v in dict(self.config.provider_options).items()}
        if self.config.cuda_graph:
            options["enable_cuda_graph"] = "1"
        chain: list[Any] = [(self.provider, {**self._tensorrt_options(), **options})]
        if self.device == "TRT":  # what TensorRT does not take runs on CUDA inside the same session
            chain.append((_PROVIDERS["CUDA"], {}))
        if self.provider != "CPUExecutionProvider":
            # ORT needs the CPU EP for the few ops a GPU EP does not implement; this is node
            # placement inside one session, not a device fallback (the session is checked below).
            chain.append("CPUExecutionProvider")
        return chain

    def _tensorrt_options(self) -> dict[str, str]:
        """precision f16 and cache_dir in TensorRT's terms (engines take minutes to build: cache them)."""
        if self.device != "TRT":
            return {}
        opts = {"trt_fp16_enable": "1" if self.config.precision == "f16" else "0"}
        if self.config.cache_dir:
            opts |= {"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(self.config.cache_dir),
                     "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(self.config.cache_dir)}
        return opts

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
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.config.spin_wait else "0")
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
        return OnnxRuntimeStage(session, options.name, self.device, self.config.io_binding, seconds,
                                fixed_buffers=self.config.cuda_graph, ops=self.ops)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "device": self.device,
            "provider": self.provider,
            "precision": self.config.precision,
            "threads": self.config.threads,
            "io_binding": self.config.io_binding or self.config.cuda_graph,
            "cuda_graph": self.config.cuda_graph,
            "keep_on_device": self.config.keep_on_device,
            "spin_wait": bool(self.config.spin_wait),
            **self._describe_common(),
        }
