"""Build a real SAM 2 architecture: from an official checkpoint, or with seeded random weights."""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ExportError
from engine.modelset import file_sha256
from engine.variants import Variant

# 1024 is Meta's; 512 a lighter deployment size; 256 the test suite's size (checks the pipeline fast; official
# weights were trained at 1024 and their masks at 256 were not measured: not a deployment size)
SUPPORTED_IMAGE_SIZES = (256, 512, 1024)


def require_export_deps(variant: Variant | None = None) -> None:
    """Fail with an actionable message when the export extra (or the variant's reference) is not installed."""
    from engine.export.reference_env import activate

    needed = [
        ("torch", "pip install -e '.[export]'  (torch==2.13.0)"),
        ("onnx", "pip install -e '.[export]'"),
        ("onnxscript", "pip install -e '.[export]'"),
        ("hydra", "pip install -e '.[export]'  (hydra-core)"),
    ]
    if variant is not None:
        activate(variant)  # EdgeTAM: its own folder on sys.path, or an error saying how to install it
    if variant is None or variant.reference == "sam2":
        needed.append(("sam2", "pip install --no-deps sam2  (after the export extra)"))
    missing = []
    for module, hint in needed:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(f"{module}: {hint}")
    if missing:
        raise ExportError(
            "exporting needs the 'export' extra, and these modules are missing:\n  " + "\n  ".join(missing)
        )


@dataclass
class BuiltModel:
    model: Any  # sam2.sam2_video_predictor.SAM2VideoPredictor
    variant: Variant
    image_size: int
    weights: dict[str, Any] = field(default_factory=dict)  # provenance for the manifest


def _hydra_overrides(variant: Variant, image_size: int) -> list[str]:
    if image_size == 1024:
        return []
    feat = image_size // 16
    # EdgeTAM's cross-attention rotates queries on the feature grid (q_sizes) and perceiver latents on
    # their fixed 16 x 16 grid (k_sizes); SAM 2's uses one grid for both (feat_sizes)
    cross = "q_sizes" if variant.reference == "edgetam" else "feat_sizes"
    return [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.{cross}=[{feat},{feat}]",
    ]


def _perturb_all_parameters(model: Any, seed: int, scale: float = 0.02) -> None:
    """Add seeded noise to every parameter.

    The reference deep-copies one initialised layer for repeated blocks, so memory-attention layers
    and fuser blocks start identical; perturbing everything (norms and biases included) gives a
    model where no two layers are equal and every weight matters.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.add_(noise.to(p.dtype) * scale)


@dataclass(frozen=True)
class Calibration:
    """Two shifts that make a seeded random model's masks testable.

    Random weights give low-res logits of a few tenths around zero, and memory-conditioned frames come out
    mostly positive: masks that flood the frame, where IoU says nothing. `mask_logit_offset` adds a constant
    to every mask token's logits (through one upscaling channel made constant and the hypernetworks' bias
    on it), so prompted and tracked masks cover a moderate share of the frame. `object_score_shift` moves
    the object-score head's bias, so that both the present and the absent branches occur.
    """

    mask_logit_offset: float = 0.0
    object_score_shift: float = 0.0

    CHANNEL = 0  # the upscaled-embedding channel that carries the offset
    LEVEL = 4.0  # its constant value (GELU(4) = 3.9999)

    def apply(self, model: Any) -> None:
        import torch

        dec = model.sam_mask_decoder
        with torch.no_grad():
            if self.mask_logit_offset:
                k = self.CHANNEL
                upscale = dec.output_upscaling[3]  # the last transposed conv, before GELU and the dot product
                upscale.weight[:, k] = 0.0
                upscale.bias[k] = self.LEVEL
                dec.conv_s0.weight[k] = 0.0  # the high-res skip added to the same channel
                dec.conv_s0.bias[k] = 0.0
                for mlp in dec.output_hypernetworks_mlps:
                    mlp.layers[-1].weight[k] = 0.0
                    mlp.layers[-1].bias[k] = self.mask_logit_offset / self.LEVEL
            if self.object_score_shift:
                head = dec.pred_obj_score_head
                last = head.layers[-1] if hasattr(head, "layers") else head
                last.bias.add_(self.object_score_shift)

    def to_yaml(self) -> dict[str, float]:
        return {"mask_logit_offset": float(self.mask_logit_offset),
                "object_score_shift": float(self.object_score_shift)}


def _load_checkpoint(model: Any, path: Path, variant: Variant) -> None:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ExportError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or "model" not in payload or not isinstance(payload["model"], dict):
        raise ExportError(
            f"checkpoint {path} is not an official SAM 2 checkpoint: expected a dict with the weights "
            f"under the key 'model'"
        )
    state = payload["model"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:

        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        lines = [f"checkpoint {path} does not match variant {variant.name}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {head(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {head(unexpected)}")
        if mismatched:
            shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in mismatched]
            lines.append(f"  shape mismatches ({len(mismatched)}): {head(shapes)}")
        lines.append("  is it a checkpoint of another variant? (sam2 vs sam2.1 vs edgetam, tiny/small/base_plus/large)")
        raise ExportError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def _apply_param_overrides(model: Any, overrides: dict[str, float]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in overrides.items():
            if name not in params:
                raise ExportError(f"--set names no parameter {name!r} of the model")
            params[name].fill_(float(value))


def build_model(
    variant: Variant,
    image_size: int = 1024,
    checkpoint: Path | None = None,
    seed: int = 0,
    param_overrides: dict[str, float] | None = None,
    calibration: Calibration | None = None,
) -> BuiltModel:
    """Build the video predictor of `variant` in eval mode on the CPU.

    The video predictor's settings (stability fallback, binarised memory for clicked frames,
    hole filling) are the ones the tracker reproduces, so the same object serves as the export
    source and as the PyTorch reference.
    """
    require_export_deps(variant)
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ExportError(f"image size {image_size} is not supported; choose one of {SUPPORTED_IMAGE_SIZES}")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ExportError(f"checkpoint file not found: {checkpoint}")

    import torch
    from sam2.build_sam import build_sam2_video_predictor

    if variant.reference == "edgetam":
        from engine.export.reference_env import disable_timm_download

        disable_timm_download()
    torch.manual_seed(seed)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # EdgeTAM's builder narrates each step
            model = build_sam2_video_predictor(variant.config, ckpt_path=None, device="cpu",
                                               hydra_overrides_extra=_hydra_overrides(variant, image_size))
    except Exception as exc:
        raise ExportError(f"the sam2 package could not build {variant.name}: {exc}") from exc

    if checkpoint is not None:
        _load_checkpoint(model, checkpoint, variant)
        weights: dict[str, Any] = {"source": "checkpoint", "checkpoint": checkpoint.name,
                                   "sha256": file_sha256(checkpoint)}
    else:
        _perturb_all_parameters(model, seed)
        weights = {"source": "random", "seed": seed}
    if calibration is not None:
        if checkpoint is not None:
            raise ExportError("calibration shifts are for seeded random weights; a checkpoint is used as it is")
        calibration.apply(model)
        weights["calibration"] = calibration.to_yaml()
    if param_overrides:
        _apply_param_overrides(model, param_overrides)
        weights["overrides"] = {k: float(v) for k, v in param_overrides.items()}
    model.eval()
    return BuiltModel(model=model, variant=variant, image_size=image_size, weights=weights)


def rebuild_model(ms: Any, checkpoint: Path | None = None) -> BuiltModel:
    """The PyTorch model a model set was exported from, rebuilt from its manifest's weight provenance (seed,
    overrides, calibration; or the checkpoint, which must be passed and match the recorded sha256)."""
    from engine.errors import ConfigError
    from engine.variants import get_variant

    variant = get_variant(ms.variant)
    weights = ms.manifest.provenance.get("weights", {})
    if weights.get("source") == "checkpoint":
        if checkpoint is None:
            raise ConfigError("this model set was exported from a checkpoint: pass --checkpoint with the same .pt "
                              "to rebuild its PyTorch model")
        if file_sha256(checkpoint) != weights.get("sha256"):
            raise ConfigError(f"--checkpoint {checkpoint} is not the checkpoint this model set was made from")
        return build_model(variant, ms.manifest.image_size, checkpoint=checkpoint)
    overrides = weights.get("overrides") or {}
    if any(not isinstance(v, (int, float)) for v in overrides.values()):
        raise ConfigError(f"cannot rebuild the reference: the model set's weight overrides {overrides} "
                          f"are not plain values")
    cal = weights.get("calibration")
    return build_model(variant, ms.manifest.image_size, seed=int(weights.get("seed", 0)),
                       param_overrides=overrides or None, calibration=Calibration(**cal) if cal else None)
