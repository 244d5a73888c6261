"""The interface every runtime implements, and the factory that picks one by name.

A backend never replaces the device it was asked for with another one on its own: an unavailable
device is an error listing what is available, unless the config names an explicit fallback, in
which case the fallback is logged and reported by describe().
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BackendUnavailableError, InputError

log = logging.getLogger("backends")

PRECISIONS = ("f32", "bf16", "f16")
BACKEND_NAMES = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class BackendConfig:
    """What runs a stage: runtime, device and how."""

    name: str = "onnxruntime"
    device: str = "CPU"
    precision: str = "f32"
    threads: int | None = None
    performance_hint: str = "latency"  # openvino: latency | throughput
    num_streams: int | None = None  # openvino
    cache_dir: str | None = None  # openvino CACHE_DIR, onnxruntime TensorRT engine cache: compiled blobs reused
    provider_options: Mapping[str, Any] = field(default_factory=dict)  # onnxruntime EP options
    io_binding: bool = False  # onnxruntime: bind inputs/outputs (pays on CUDA)
    cuda_graph: bool = False  # onnxruntime CUDA: capture each stage once, replay it (needs a static set)
    # onnxruntime: outputs that only feed other stages, and the memory bank, stay on the device
    keep_on_device: bool = False
    # onnxruntime: its worker threads spin after each operator instead of sleeping. ONNX Runtime's own
    # default is on; the engine's (None) is off: the tracker's host code and a live capture run between the
    # stage calls, and spinning threads hold the cores they need (benchmarks/README.md, "Live throughput")
    spin_wait: bool | None = None
    cpu_pinning: bool | None = None  # openvino CPU: ENABLE_CPU_PINNING (None: the plugin's default)
    fallback: tuple[BackendConfig, ...] = ()

    def without_fallback(self) -> BackendConfig:
        return replace(self, fallback=())


@dataclass(frozen=True)
class StageOptions:
    """Per-load options; the stage name shows in errors and reports."""

    name: str = "stage"


@dataclass(frozen=True, eq=False)
class DeviceTensor:
    """A value left where its backend runs (`keep_on_device`): the tracker hands it from stage to stage
    without reading it; `StageSet.to_host` reads it when a rule needs the numbers."""

    value: Any  # the runtime's handle (an onnxruntime OrtValue)
    shape: tuple[int, ...]
    dtype: str  # as the runtime names it: 'float32', 'bfloat16', ...
    nbytes: int


class Stage(ABC):
    """A loaded (compiled) stage model: dict of numpy arrays in, dict of numpy arrays out."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    load_seconds: float

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def run_on_device(self, inputs: Mapping[str, np.ndarray | DeviceTensor],
                      keep: Collection[str]) -> dict[str, np.ndarray | DeviceTensor]:
        """As run, but inputs may be DeviceTensors of this backend, and outputs named in `keep` stay on
        the device as DeviceTensors (backends whose config has keep_on_device)."""
        raise BackendUnavailableError(f"stage {self.name}: this backend keeps no values on a device "
                                      f"(keep_on_device is an onnxruntime option)")

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise InputError(
                f"stage {self.name}: inputs do not match the model (missing: {missing or 'none'}, "
                f"unexpected: {extra or 'none'}; the model takes {list(self.input_names)})"
            )


class Backend(ABC):
    """A runtime bound to one device with one precision."""

    def __init__(self, config: BackendConfig, fallback_from: BackendConfig | None = None) -> None:
        self.config = config
        self.fallback_from = fallback_from

    @abstractmethod
    def load(self, path: str | Path, options: StageOptions | None = None) -> Stage: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """runtime, version, device, provider, precision, threads: what reports print."""

    def to_host(self, value: DeviceTensor) -> np.ndarray:
        """A DeviceTensor this backend made, as a numpy array."""
        raise BackendUnavailableError(f"{self.config.name} keeps no values on a device")

    def memory_store(self, spec: Any) -> Any:
        """An engine.memory_store.MemoryStore that keeps memory features on this backend's device."""
        raise BackendUnavailableError(f"{self.config.name} keeps no memory on a device")

    def _describe_common(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.fallback_from is not None:
            d["fallback_from"] = f"{self.fallback_from.name}:{self.fallback_from.device}"
        return d


def timed_load(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0
