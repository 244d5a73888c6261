"""Write a model set: four ONNX stages, constants.npz and modelset.yaml, atomically."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ExportError
from engine.export.build import BuiltModel
from engine.modelset import (
    CONSTANTS,
    MANIFEST,
    MODEL_KEYS,
    Manifest,
    StageSpec,
    TensorSpec,
    file_sha256,
    write_manifest,
)
from engine.static import StaticShapes

OPSET = 18  # opset 23's Attention op made ONNX Runtime's memory attention 2x slower (export-notes.md)


def prepare_output_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite a non-empty directory unless forced; the real write happens in a temp dir."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"output directory {out} is not empty; pass --force to replace its contents")


@dataclass
class StageExport:
    name: str
    module: Any
    args: tuple
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: dim name}


def _example_inputs(built: BuiltModel, constants: dict[str, np.ndarray],
                    static: StaticShapes | None = None, query_blocks: int = 1) -> dict[str, StageExport]:
    import torch

    from engine.export.families import family_of
    from engine.export.stages import MaskDecoderStage
    from engine.export.static_stages import StaticMaskDecoderStage

    m = built.model
    family = family_of(built)
    s = built.image_size
    f = s // m.backbone_stride
    a, b = family.memory_grid()
    gen = torch.Generator().manual_seed(1234)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    def first(n: int, total: int) -> torch.Tensor:
        valid = torch.zeros(total)
        valid[:n] = 1.0
        return valid

    vision_pos = torch.from_numpy(constants["vision_pos_enc"])
    features = (rnd(1, 256, f, f), rnd(1, 32, 4 * f, 4 * f), rnd(1, 64, 2 * f, 2 * f))
    mask = (rnd(1, 1, 4 * f, 4 * f), torch.ones(1))
    decoder_inputs = ["image_embed", "high_res_feat0", "high_res_feat1", "point_coords", "point_labels",
                      "mask_input", "has_mask_input"]
    decoder_outputs = ["masks", "iou", "obj_ptr", "object_score"]
    attention_inputs = ["curr", "memory", "memory_pos", "obj_ptrs", "obj_ptr_pos"]
    extra: dict[str, StageExport] = {}
    if static is None:
        decoder = StageExport(
            "mask_decoder", MaskDecoderStage(m).eval(),
            (*features, torch.rand(1, 3, 2, generator=gen) * s, torch.tensor([[1, 0, 1]], dtype=torch.int32), *mask),
            decoder_inputs, decoder_outputs,
            {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
        attention = StageExport(
            "memory_attention", family.memory_attention(vision_pos, False, query_blocks).eval(),
            (rnd(1, 256, f, f), rnd(2, 64, a, b), rnd(2, 64, a, b), rnd(2, 256), rnd(2, 64)),
            attention_inputs, ["pix_feat_with_mem"],
            {"memory": {0: "num_memory_frames"}, "memory_pos": {0: "num_memory_frames"},
             "obj_ptrs": {0: "num_obj_ptrs"}, "obj_ptr_pos": {0: "num_obj_ptrs"}})
    else:  # fixed slots with validity inputs, no dynamic axis; one memory-attention graph per tier
        points = static.points
        decoder = StageExport(
            "mask_decoder", StaticMaskDecoderStage(m).eval(),
            (*features, torch.rand(1, points, 2) * s, torch.ones(1, points, dtype=torch.int32), first(2, points)[None],
             *mask),
            [*decoder_inputs[:5], "point_valid", *decoder_inputs[5:]], decoder_outputs, {})
        tiers = {t.stage: StageExport(
            t.stage, family.memory_attention(vision_pos, True, query_blocks).eval(),
            (rnd(1, 256, f, f), rnd(t.memory_slots, 64, a, b), rnd(t.memory_slots, 64, a, b),
             first(1, t.memory_slots), rnd(t.pointer_slots, 256), rnd(t.pointer_slots, 64), first(1, t.pointer_slots)),
            ["curr", "memory", "memory_pos", "memory_valid", "obj_ptrs", "obj_ptr_pos", "obj_ptr_valid"],
            ["pix_feat_with_mem"], {}) for t in static.tiers}
        attention = tiers.pop("memory_attention")
        extra = tiers
    return {
        "image_encoder": StageExport(
            "image_encoder", family.image_encoder().eval(), (rnd(1, 3, s, s),), ["image"],
            ["high_res_feat0", "high_res_feat1", "vision_feat"], {}),
        "mask_decoder": decoder,
        "memory_attention": attention,
        "memory_encoder": StageExport(
            "memory_encoder", family.memory_encoder().eval(), (rnd(1, 256, f, f), rnd(1, 1, s, s) * 10),
            ["pix_feat", "mask_for_mem"], ["maskmem_features"], {}),
        **extra,
    }


_DIM_BOUNDS = {"num_points": (1, 64), "num_memory_frames": (1, 64), "num_obj_ptrs": (0, 64)}


def _export_onnx(stage: StageExport, path: Path) -> None:
    import torch
    from torch.export import Dim

    dims = {name: Dim(name, min=lo, max=hi) for name, (lo, hi) in _DIM_BOUNDS.items()}
    dynamic_shapes = {
        name: ({axis: dims[d] for axis, d in stage.dynamic[name].items()} if name in stage.dynamic else None)
        for name in stage.inputs
    }
    # The exporter narrates every step and warns about torchvision; keep the console for our progress.
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            torch.onnx.export(
                stage.module, stage.args, str(path), dynamo=True, opset_version=OPSET,
                external_data=False, input_names=stage.inputs, output_names=stage.outputs,
                dynamic_shapes=dynamic_shapes,
            )
        except Exception as exc:
            raise ExportError(f"ONNX export of {stage.name} failed: {exc}\n{sink.getvalue()[-2000:]}") from exc


def _onnx_signature(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    types = {v: k for k, v in onnx.TensorProto.DataType.items()}

    def spec(value: Any) -> TensorSpec:
        t = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim)
        return TensorSpec(value.name, types[t.elem_type].lower(), shape)

    init = {i.name for i in model.graph.initializer}
    inputs = tuple(spec(v) for v in model.graph.input if v.name not in init)
    return inputs, tuple(spec(v) for v in model.graph.output)


def compute_constants(built: BuiltModel) -> dict[str, np.ndarray]:
    """Learned and shape-only tensors the numpy core needs between the stages."""
    import torch

    from engine.export.families import family_of

    m = built.model
    s = built.image_size
    f = s // m.backbone_stride
    with torch.no_grad():
        pos = m.image_encoder.neck.position_encoding(torch.zeros(1, 256, f, f))
        mem_pos = family_of(built).memory_pos()  # SAM 2: sine on the feature grid; EdgeTAM: of its latents
        c = {
            "no_mem_embed": m.no_mem_embed.reshape(-1),
            "maskmem_tpos_enc": m.maskmem_tpos_enc.reshape(m.num_maskmem, m.mem_dim),
            "no_obj_ptr": m.no_obj_ptr.reshape(-1),
            "vision_pos_enc": pos,
            "maskmem_pos_enc": mem_pos,
            "mask_downsample_weight": m.mask_downsample.weight,
            "mask_downsample_bias": m.mask_downsample.bias,
        }
        if m.no_obj_embed_spatial is not None:
            c["no_obj_embed_spatial"] = m.no_obj_embed_spatial.reshape(-1)
        if m.proj_tpos_enc_in_obj_ptrs:
            c["obj_ptr_tpos_proj_weight"] = m.obj_ptr_tpos_proj.weight
            c["obj_ptr_tpos_proj_bias"] = m.obj_ptr_tpos_proj.bias
    return {k: v.detach().float().numpy().copy() for k, v in c.items()}


def model_hyperparameters(built: BuiltModel) -> dict[str, Any]:
    m = built.model
    dec = m.sam_mask_decoder
    values: dict[str, Any] = {
        "image_size": built.image_size,
        "backbone_stride": m.backbone_stride,
        "hidden_dim": m.hidden_dim,
        "mem_dim": m.mem_dim,
        "no_obj_embed_spatial": m.no_obj_embed_spatial is not None,
        "dynamic_multimask_via_stability": dec.dynamic_multimask_via_stability,
        "dynamic_multimask_stability_delta": dec.dynamic_multimask_stability_delta,
        "dynamic_multimask_stability_thresh": dec.dynamic_multimask_stability_thresh,
    }
    # EdgeTAM's reference ships the video predictor of before Meta's December 2024 revision
    values["retrack_corrected_frames"] = built.variant.reference != "edgetam"
    for key in MODEL_KEYS:
        if key not in values:
            values[key] = getattr(m, key)
    # plain YAML scalars, never numpy/torch types
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}


def _versions() -> dict[str, str]:
    import onnx
    import torch

    import engine

    out = {"exporter": f"sam2-edge {engine.__version__}", "torch": str(torch.__version__), "onnx": str(onnx.__version__),
           "opset": str(OPSET)}
    try:
        from importlib.metadata import version

        out["sam2"] = version("sam2")
    except Exception:
        out["sam2"] = "unknown"
    return out


def export_model_set(
    built: BuiltModel,
    out: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
    static: StaticShapes | None = None,
    query_blocks: int = 1,
) -> Manifest:
    """Export every stage of `built` into `out` (with fixed shapes when `static` gives the capacities; memory
    attention in `query_blocks` blocks of queries). Nothing is left behind in `out` if anything fails."""
    from engine.export.families import family_of

    with staged_output_dir(Path(out), force) as tmp:
        constants = compute_constants(built)
        stages: dict[str, StageSpec] = {}
        timings: dict[str, float] = {}
        for name, stage in _example_inputs(built, constants, static, query_blocks).items():
            t0 = time.perf_counter()
            path = tmp / f"{name}.onnx"
            log(f"  exporting {name} ...")
            _export_onnx(stage, path)
            stages[name] = stage_spec(name, path)
            timings[name] = round(time.perf_counter() - t0, 2)
            log(f"  exported {name}: {path.stat().st_size / 1e6:.1f} MB in {timings[name]:.1f} s")
        np.savez(tmp / CONSTANTS, **constants)
        manifest = Manifest(
            variant=built.variant.name,
            family=built.variant.family,
            model=model_hyperparameters(built),
            stages=stages,
            static=static,
            architecture=family_of(built).architecture(),
            provenance={"weights": built.weights, "versions": _versions(),
                        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "export_seconds": timings, "options": {"attention_query_blocks": query_blocks}},
        )
        write_manifest(tmp / MANIFEST, manifest)
    return manifest


def stage_spec(name: str, path: Path) -> StageSpec:
    """A stage file's manifest entry: its I/O signature as the ONNX graph declares it, and its sha256."""
    inputs, outputs = _onnx_signature(path)
    return StageSpec(name, path.name, file_sha256(path), inputs, outputs)


@contextlib.contextmanager
def staged_output_dir(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside `out` that becomes `out` when the block succeeds: a model set is written
    whole or not at all, and a failure leaves nothing behind (nor damages what `out` held)."""
    prepare_output_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model set is ordinary data
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
