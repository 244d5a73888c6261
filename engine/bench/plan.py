"""What a bench run measures: the runtime x precision runs, their model sets, and the default model set."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError, ModelSetError

DEFAULT_MODEL = Path("models/sam2.1_hiera_tiny")
DEFAULT_VARIANT = "sam2.1_hiera_tiny"


@dataclass
class RunSpec:
    runtime: str  # onnxruntime | openvino | torch
    device: str
    precision: str
    model: str | None = None  # another model set than --model (--static-model, --compare-model)
    tag: str = ""  # what the label adds: "static set", or the variant when several models are compared

    @property
    def label(self) -> str:
        base = "PyTorch reference" if self.runtime == "torch" else f"{self.runtime} {self.device} {self.precision}"
        return base + (f", {self.tag}" if self.tag else "")


def int_list(text: str, name: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} expects comma-separated integers, got {text!r}") from None
    if not values or any(not lo <= v <= hi for v in values):
        raise ConfigError(f"--{name} values must lie between {lo} and {hi}, got {text!r}")
    return values


def ensure_model_set(path: Path | None, log=print) -> Path:
    from engine.modelset import MANIFEST

    target = path or DEFAULT_MODEL
    if (target / MANIFEST).is_file():
        return target
    if path is not None and path != DEFAULT_MODEL:
        raise ModelSetError(f"model set {path} not found (create one with python -m engine.export --out {path})")
    log(f"no model set at {target}: exporting {DEFAULT_VARIANT} with seeded random weights (seed 0) "
        f"once; latency does not depend on the weights")
    from engine.export.build import build_model
    from engine.export.exporter import export_model_set
    from engine.variants import get_variant

    built = build_model(get_variant(DEFAULT_VARIANT), 1024, seed=0)
    export_model_set(built, target, log=log)
    return target


def plan_runs(args: argparse.Namespace) -> list[RunSpec]:
    from engine.config import load_config

    base_backend = base_device = None
    base_precision = "f32"
    if args.config:
        cfg = load_config(args.config)
        base_backend, base_device, base_precision = cfg.backend.name, cfg.backend.device, cfg.backend.precision
    backends = (args.backend or base_backend or "openvino").split(",")
    precisions = (args.precision or base_precision).split(",")
    runs = []
    skipped = []
    base_tag, others = _compared_models(args)
    for b in (x.strip() for x in backends):
        if b not in ("onnxruntime", "openvino"):
            raise ConfigError(f"--backend {b!r} is not known; allowed: onnxruntime, openvino")
        device = args.device or (base_device if b == base_backend else None) or ("cpu" if b == "onnxruntime" else "CPU")
        for prec in (x.strip() for x in precisions):
            if prec not in ("f32", "bf16", "f16"):
                raise ConfigError(f"--precision {prec!r} is not known; allowed: f32, bf16, f16")
            if b == "onnxruntime" and prec != "f32" and len(precisions) > 1:
                skipped.append(f"onnxruntime {prec}")
                continue
            runs.append(RunSpec(b, device, prec, tag=base_tag))
            if args.static_model:
                runs.append(RunSpec(b, device, prec, str(args.static_model), "static set"))
            runs += [RunSpec(b, device, prec, str(path), tag) for path, tag in others]
    if skipped:
        print(f"skipping {', '.join(skipped)} (onnxruntime runs these models in f32 only)")
    if args.reference == "torch":  # each model's reference in a process of its own (EdgeTAM's and Meta's clash)
        runs.append(RunSpec("torch", "cpu", "f32", tag=base_tag))
        runs += [RunSpec("torch", "cpu", "f32", str(path), tag) for path, tag in others]
    return runs


def _compared_models(args: argparse.Namespace) -> tuple[str, list[tuple[Path, str]]]:
    """The label tags of --model and of each --compare-model: their variants (empty when nothing is compared)."""
    if not args.compare_model:
        return "", []
    from engine.modelset import ModelSet

    def tag(path: Path) -> str:
        m = ModelSet.load(path).manifest
        return f"{m.variant} {m.image_size}" + (" static" if m.static else "")

    base = tag(ensure_model_set(args.model))
    others = [(Path(p), tag(Path(p))) for p in args.compare_model]
    if len({base, *(t for _, t in others)}) != 1 + len(others):
        raise ConfigError("--compare-model sets must differ from --model and each other in variant, size or shapes")
    return base, others
