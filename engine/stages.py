"""The four stage models of a model set, each loaded on the backend its config asks for.

Values pass between stages as numpy arrays, except on a set loaded with `keep_on_device`: there the
outputs the tracker only hands to other stages (image features, memory-attention output, memory
features) stay where the stages run, as `DeviceTensor`s, and the memory bank is kept there too.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from backends.base import Backend, BackendConfig, DeviceTensor, Stage, StageOptions
from backends.registry import create_backend
from engine.config import EngineConfig
from engine.errors import ConfigError, ModelSetError
from engine.memory_store import HostMemoryStore, MemorySpec, MemoryStore
from engine.modelset import STAGES, ModelSet
from engine.static import ATTENTION

log = logging.getLogger("engine")


class HostValues:
    """What the tracker asks of a stage set beyond `run`, for a set whose values are numpy arrays."""

    keeps_on_device = False

    def to_host(self, value: np.ndarray | DeviceTensor) -> np.ndarray:
        return value  # type: ignore[return-value]

    def memory_capacity(self, memories: int, pointers: int) -> int | None:
        return None  # numpy memory is padded where the stage runs

    def memory_store(self, spec: MemorySpec) -> MemoryStore:
        return HostMemoryStore(spec)


def _warn_if_int8_saturates(modelset: ModelSet, per_stage: Mapping[str, BackendConfig]) -> None:
    """An int8 set quantized with full-range weights (NNCF's default, and every set from before
    `--overflow-fix`) computes something else on a CPU without VNNI; it still runs, so say it loudly."""
    from engine.cpu import int8_may_saturate

    q = modelset.manifest.provenance.get("quantization") or {}
    if q.get("precision") != "int8" or q.get("overflow_fix") == "all":
        return
    int8_on_cpu = [s for s, p in (q.get("stages") or {}).items()
                   if p == "int8" and s in per_stage and per_stage[s].device.upper() == "CPU"]
    if int8_on_cpu and int8_may_saturate():
        log.warning("%s: int8 stages %s were quantized with full-range weights (overflow fix: %s), and this CPU "
                    "has no VNNI: its int8 kernels sum pairs of products in 16 bits and can saturate, so the masks "
                    "depart from the float set's more than the quantization itself makes them. Quantize again "
                    "with `python -m engine.quantize ... --overflow-fix all` (the default now).", modelset.root,
                    ", ".join(int8_on_cpu), q.get("overflow_fix", "first-layer, NNCF's default"))


class StageSet(HostValues):
    """Loaded stages plus the backend behind each; backends with equal configs are shared."""

    def __init__(self, modelset: ModelSet, stages: dict[str, Stage], backends: dict[str, Backend]) -> None:
        self.modelset = modelset
        self.stages = stages
        self.backends = backends
        self.keeps_on_device = any(b.config.keep_on_device for b in backends.values())
        if self.keeps_on_device and len({id(b) for b in backends.values()}) > 1:
            # a device value can only be read by the runtime and device that made it
            placed = ", ".join(f"{s}: {b.config.name}:{b.config.device}"
                               f"{' keep_on_device' if b.config.keep_on_device else ''}" for s, b in backends.items())
            raise ConfigError(f"keep_on_device needs every stage on one backend (same runtime, device and "
                              f"options), since values stay where they were made; this config places {placed}")

    @classmethod
    def load(cls, modelset: ModelSet, config: EngineConfig | Mapping[str, BackendConfig] | BackendConfig,
             only: tuple[str, ...] = STAGES) -> StageSet:
        if isinstance(config, EngineConfig):
            per_stage = {s: config.backend_for(s) for s in only}
        elif isinstance(config, BackendConfig):
            per_stage = dict.fromkeys(only, config)
        else:
            per_stage = {s: config[s] for s in only}
        made: dict[str, Backend] = {}  # keyed by repr: provider_options makes configs unhashable
        stages: dict[str, Stage] = {}
        backends: dict[str, Backend] = {}
        static = modelset.manifest.static
        for stage_name in only:
            cfg = per_stage[stage_name]
            key = repr(cfg)
            if key not in made:
                made[key] = create_backend(cfg)
            # a static set's smaller memory-attention tiers run where memory attention is configured to
            tiers = static.extra_stages if static is not None and stage_name == ATTENTION else ()
            for name in (stage_name, *tiers):
                backends[name] = made[key]
                stage = made[key].load(modelset.stage_path(name), StageOptions(name=name))
                cls._check_signature(modelset, name, stage)
                stages[name] = stage
                log.info("loaded %s on %s in %.2f s", name, made[key].describe(), stage.load_seconds)
        _warn_if_int8_saturates(modelset, per_stage)
        return cls(modelset, stages, backends)

    @staticmethod
    def _check_signature(modelset: ModelSet, name: str, stage: Stage) -> None:
        spec = modelset.manifest.stages[name]
        want_in = tuple(t.name for t in spec.inputs)
        want_out = tuple(t.name for t in spec.outputs)
        if set(stage.input_names) != set(want_in) or set(stage.output_names) != set(want_out):
            raise ModelSetError(
                f"{modelset.stage_path(name)} does not match the manifest: inputs {list(stage.input_names)} "
                f"outputs {list(stage.output_names)}, manifest says {list(want_in)} -> {list(want_out)}"
            )

    def run(self, name: str, inputs: Mapping[str, Any], keep: Collection[str] = ()) -> dict[str, Any]:
        """Dynamic inputs in (as many memories, pointers and points as the rules select); a static set's
        stages get them padded into their fixed slots. Outputs named in `keep` stay on the device where
        the set keeps values there; every other output is a numpy array."""
        static = self.modelset.manifest.static
        stage, fed = static.route(name, inputs) if static is not None else (name, inputs)
        if self.keeps_on_device:
            return self.stages[stage].run_on_device(fed, keep)
        return self.stages[stage].run(fed)

    def memory_capacity(self, memories: int, pointers: int) -> int | None:
        """Memory slots a store fills for this selection: those of the static tier `run` will choose, where
        the store's values live on the device (a host store's arrays are padded by `run`); else None."""
        static = self.modelset.manifest.static
        if static is None or not self.keeps_on_device:
            return None
        return static.memory_capacity(memories, pointers)

    def to_host(self, value: np.ndarray | DeviceTensor) -> np.ndarray:
        if isinstance(value, DeviceTensor):
            return self._device_backend().to_host(value)
        return value

    def memory_store(self, spec: MemorySpec) -> MemoryStore:
        if self.keeps_on_device:
            return self._device_backend().memory_store(spec)
        return HostMemoryStore(spec)

    def _device_backend(self) -> Backend:
        return next(iter(self.backends.values()))  # one backend serves every stage (checked at load)

    def describe(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, backend in self.backends.items():
            d = backend.describe()
            precision = getattr(self.stages[name], "inference_precision", None)
            if precision is not None:
                d["effective_precision"] = precision
            d["load_seconds"] = round(self.stages[name].load_seconds, 3)
            out[name] = d
        return out


def random_inputs(modelset: ModelSet, memory_frames: int = 7, pointers: int = 16, points: int = 1,
                  seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random inputs of tracking shapes for every stage (timing and cross-backend checks)."""
    rng = np.random.default_rng(seed)
    f, s = modelset.manifest.feat_size, modelset.manifest.image_size
    a, b = modelset.manifest.memory_grid

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "image_encoder": {"image": r(1, 3, s, s)},
        "mask_decoder": {"image_embed": r(1, 256, f, f), "high_res_feat0": r(1, 32, 4 * f, 4 * f),
                         "high_res_feat1": r(1, 64, 2 * f, 2 * f),
                         "point_coords": (rng.random((1, points, 2)) * s).astype(np.float32),
                         "point_labels": rng.integers(0, 2, (1, points)).astype(np.int32),
                         "mask_input": r(1, 1, 4 * f, 4 * f), "has_mask_input": np.ones(1, np.float32)},
        "memory_attention": {"curr": r(1, 256, f, f), "memory": r(memory_frames, 64, a, b),
                             "memory_pos": r(memory_frames, 64, a, b), "obj_ptrs": r(pointers, 256),
                             "obj_ptr_pos": r(pointers, 64)},
        "memory_encoder": {"pix_feat": r(1, 256, f, f), "mask_for_mem": r(1, 1, s, s) * 10},
    }
