"""The four stage models of a model set, each loaded on the backend its config asks for."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.base import Backend, BackendConfig, Stage, StageOptions, create_backend
from engine.config import EngineConfig
from engine.errors import ModelSetError
from engine.modelset import STAGES, ModelSet

log = logging.getLogger("engine")


class StageSet:
    """Loaded stages plus the backend behind each; backends with equal configs are shared."""

    def __init__(self, modelset: ModelSet, stages: dict[str, Stage], backends: dict[str, Backend]) -> None:
        self.modelset = modelset
        self.stages = stages
        self.backends = backends

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
        for name in only:
            cfg = per_stage[name]
            key = repr(cfg)
            if key not in made:
                made[key] = create_backend(cfg)
            backends[name] = made[key]
            stage = made[key].load(modelset.stage_path(name), StageOptions(name=name))
            cls._check_signature(modelset, name, stage)
            stages[name] = stage
            log.info("loaded %s on %s in %.2f s", name, made[key].describe(), stage.load_seconds)
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

    def run(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.stages[name].run(inputs)

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
