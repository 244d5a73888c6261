"""A model set on disk: manifest (modelset.yaml), constants.npz and four ONNX stage files.

The manifest carries everything the numpy core needs to know about the model (image size, memory
hyper-parameters, SAM 2.0 vs 2.1 flags), each stage's file with its I/O signature and sha256, and
provenance (checkpoint hash or random seed, exporter/torch/opset versions).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from engine.errors import ModelSetError
from engine.rules import OPTIONAL as OPTIONAL_RULES
from engine.rules import ModelRules
from engine.static import StaticShapes
from engine.variants import FAMILIES

FORMAT_VERSION = 1
MANIFEST = "modelset.yaml"
CONSTANTS = "constants.npz"
STAGES = ("image_encoder", "mask_decoder", "memory_attention", "memory_encoder")

# Constants every model set has, and those only SAM 2.1 sets have.
REQUIRED_CONSTANTS = ("no_mem_embed", "maskmem_tpos_enc", "no_obj_ptr", "vision_pos_enc",
                      "maskmem_pos_enc", "mask_downsample_weight", "mask_downsample_bias")
CONSTANTS_2_1 = ("no_obj_embed_spatial", "obj_ptr_tpos_proj_weight", "obj_ptr_tpos_proj_bias")

# Hyper-parameters of the tracker, as the exporter reads them off the reference model (ModelRules types them).
MODEL_KEYS = ModelRules.required_keys() + OPTIONAL_RULES


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]  # str entries are dynamic axes

    def to_yaml(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_yaml(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))


@dataclass(frozen=True)
class StageSpec:
    name: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_yaml(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256,
                "inputs": [t.to_yaml() for t in self.inputs],
                "outputs": [t.to_yaml() for t in self.outputs]}

    @classmethod
    def from_yaml(cls, name: str, d: dict[str, Any]) -> StageSpec:
        return cls(name, str(d["file"]), str(d.get("sha256", "")),
                   tuple(TensorSpec.from_yaml(t) for t in d["inputs"]),
                   tuple(TensorSpec.from_yaml(t) for t in d["outputs"]))


@dataclass
class Manifest:
    variant: str
    family: str
    model: dict[str, Any]
    stages: dict[str, StageSpec]
    provenance: dict[str, Any] = field(default_factory=dict)
    static: StaticShapes | None = None  # fixed slot capacities of a static set; None: dynamic shapes
    architecture: dict[str, Any] = field(default_factory=dict)  # what the family's stages hold (for people)
    format_version: int = FORMAT_VERSION
    source: str = MANIFEST  # where it was read, for error messages

    @cached_property
    def rules(self) -> ModelRules:
        """The model section, typed; raises ModelSetError for a flag the engine cannot honour."""
        return ModelRules.from_manifest(self.model, self.source)

    @property
    def image_size(self) -> int:
        return self.rules.image_size

    @property
    def feat_size(self) -> int:
        return self.rules.feat_size

    def to_yaml(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "variant": self.variant,
            "family": self.family,
            "model": dict(self.model),
            "stages": {k: v.to_yaml() for k, v in self.stages.items()},
            **({"static": self.static.to_yaml()} if self.static else {}),
            **({"architecture": dict(self.architecture)} if self.architecture else {}),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_yaml(cls, d: Any, source: str = MANIFEST) -> Manifest:
        if not isinstance(d, dict):
            raise ModelSetError(f"{source}: expected a mapping at the top level, got {type(d).__name__}")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelSetError(f"{source}: format_version {version!r} is not supported "
                                f"(this engine reads version {FORMAT_VERSION}); re-export the model set")
        try:
            model = dict(d["model"])
            stages_d = d["stages"]
            static = StaticShapes.from_yaml(d["static"], source) if d.get("static") is not None else None
            names = STAGES + (static.extra_stages if static is not None else ())
            absent = [s for s in names if s not in stages_d]
            if absent:
                raise ModelSetError(f"{source}: stages section lacks {', '.join(absent)}")
            unknown = [s for s in stages_d if s not in names]
            if unknown:
                raise ModelSetError(f"{source}: stages section has {', '.join(map(str, unknown))}, which neither "
                                    f"the four stages nor the static section's attention tiers name")
            stages = {s: StageSpec.from_yaml(s, stages_d[s]) for s in names}
            family = str(d["family"])
            if family not in FAMILIES:
                raise ModelSetError(f"{source}: family {family!r} is not one this engine runs "
                                    f"({', '.join(FAMILIES)})")
            manifest = cls(variant=str(d["variant"]), family=family, model=model, stages=stages,
                           provenance=dict(d.get("provenance") or {}), static=static,
                           architecture=dict(d.get("architecture") or {}), format_version=version,
                           source=source)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelSetError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        manifest.rules  # noqa: B018 -- typed and checked at load, not when tracking starts
        if static is not None and manifest.dynamic_axes():
            raise ModelSetError(f"{source}: a static section, but stages with dynamic axes "
                                f"({', '.join(manifest.dynamic_axes())}); re-export the model set")
        if static is None and "memory_valid" in {t.name for t in stages["memory_attention"].inputs}:
            raise ModelSetError(f"{source}: static stage models but no static section; re-export the model set")
        if static is not None:
            manifest._check_tier_shapes(static)
        return manifest

    def _check_tier_shapes(self, static: StaticShapes) -> None:
        """Each memory-attention file must take the slots its tier promises (the engine pads to them)."""
        for tier in static.tiers:
            shapes = {t.name: t.shape for t in self.stages[tier.stage].inputs}
            got = (shapes.get("memory", (None,))[0], shapes.get("obj_ptrs", (None,))[0])
            if got != (tier.memory_slots, tier.pointer_slots):
                raise ModelSetError(f"{self.source}: {tier.stage} takes {got[0]} memory and {got[1]} pointer slots, "
                                    f"but the static section promises {tier.memory_slots} and {tier.pointer_slots}; "
                                    f"re-export the model set")

    @property
    def memory_grid(self) -> tuple[int, int]:
        """(a, b) of one memory [64, a, b]: the feature grid in SAM 2, (1, latents) in EdgeTAM."""
        shape = next(t.shape for t in self.stages["memory_attention"].inputs if t.name == "memory")
        a, b = shape[2], shape[3]
        if not (isinstance(a, int) and isinstance(b, int)):
            raise ModelSetError(f"{self.source}: memory_attention.memory has a dynamic token grid {shape}")
        return a, b

    def dynamic_axes(self) -> list[str]:
        """'stage.tensor[axis]' for every input or output axis the stage files leave dynamic."""
        return [f"{name}.{t.name}[{i}]" for name, spec in self.stages.items()
                for t in spec.inputs + spec.outputs for i, d in enumerate(t.shape) if not isinstance(d, int)]


class _ManifestDumper(yaml.SafeDumper):
    """Shapes and other short lists of scalars on one line, everything else in block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(x, (int, float, str, bool)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ManifestDumper.add_representer(list, _represent_list)


def write_manifest(path: Path, manifest: Manifest) -> None:
    path.write_text(yaml.dump(manifest.to_yaml(), Dumper=_ManifestDumper, sort_keys=False))


def build_hint(root: Path) -> str:
    """How to build a missing model set, read off its folder name as the shipped configs name them
    (<variant>[_512][_static], as `engine.export` names them): the export command, seeded or from the official checkpoint."""
    from engine.variants import VARIANTS

    root = Path(os.path.normpath(root))
    name = root.name
    variant = max((v for v in VARIANTS if name.startswith(v)), key=len, default=None)
    if variant is None:
        return (f"Build one with `python -m engine.export --variant VARIANT --out {root}` (variants: "
                f"{', '.join(VARIANTS)})")
    size = re.search(r"_(256|512)(?:_|$)", name[len(variant):])
    flags = (" --static" if "_static" in name else "") + (f" --image-size {size[1]}" if size else "")
    cmd = f"python -m engine.export --variant {variant}{flags} --out {root}"
    return (f"Build it with `{cmd} --checkpoint official` (the publisher's weights, downloaded), or `{cmd}` "
            f"(seeded random weights, for latency)")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ModelSet:
    """A validated model set directory."""

    def __init__(self, root: Path, manifest: Manifest, constants: dict[str, np.ndarray]) -> None:
        self.root = root
        self.manifest = manifest
        self.constants = constants

    @property
    def variant(self) -> str:
        return self.manifest.variant

    @property
    def is_2_1(self) -> bool:
        return self.manifest.family == "sam2.1"

    def stage_path(self, stage: str) -> Path:
        if stage not in self.manifest.stages:
            raise ModelSetError(f"unknown stage {stage!r}; stages are {', '.join(self.manifest.stages)}")
        return self.root / self.manifest.stages[stage].file

    def verify_checksums(self) -> None:
        """Compare each stage file with the sha256 the exporter recorded (catches truncated copies)."""
        for name, spec in self.manifest.stages.items():
            if spec.sha256 and file_sha256(self.root / spec.file) != spec.sha256:
                raise ModelSetError(f"{self.root / spec.file}: checksum differs from the manifest; the file "
                                    f"is corrupt or was replaced (stage {name}); re-export the model set")

    @classmethod
    def load(cls, root: str | Path, verify_checksums: bool = False, expect_variant: str | None = None) -> ModelSet:
        root = Path(root)
        if not root.is_dir():
            raise ModelSetError(f"model set directory not found: {root}. {build_hint(root)}")
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise ModelSetError(f"{root} is not a model set: {MANIFEST} is missing "
                                f"(create one with `python -m engine.export --out {root}`)")
        try:
            raw = yaml.safe_load(mpath.read_text())
        except yaml.YAMLError as exc:
            raise ModelSetError(f"{mpath}: not valid YAML: {exc}") from exc
        manifest = Manifest.from_yaml(raw, str(mpath))
        if expect_variant is not None and manifest.variant != expect_variant:
            raise ModelSetError(f"{root} holds variant {manifest.variant}, but {expect_variant} was asked for")
        for name, spec in manifest.stages.items():
            if not (root / spec.file).is_file():
                raise ModelSetError(f"{root}: stage file {spec.file} of {name} is missing")
        cpath = root / CONSTANTS
        if not cpath.is_file():
            raise ModelSetError(f"{root}: {CONSTANTS} is missing")
        try:
            with np.load(cpath) as npz:
                constants = {k: npz[k] for k in npz.files}
        except Exception as exc:  # zipfile/npy errors of a damaged file
            raise ModelSetError(f"{cpath}: cannot read constants ({exc})") from exc
        needed = REQUIRED_CONSTANTS + (CONSTANTS_2_1 if manifest.family == "sam2.1" else ())
        lacking = [k for k in needed if k not in constants]
        if lacking:
            raise ModelSetError(f"{cpath}: lacks {', '.join(lacking)}")
        grid = tuple(constants["maskmem_pos_enc"].shape[2:])
        if grid != manifest.memory_grid:
            raise ModelSetError(f"{cpath}: maskmem_pos_enc covers a memory grid {grid}, but memory attention takes "
                                f"{manifest.memory_grid}; the files are of different model sets")
        ms = cls(root, manifest, constants)
        if verify_checksums:
            ms.verify_checksums()
        return ms
