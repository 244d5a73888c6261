"""Stage parity: each exported stage on ONNX Runtime CPU and OpenVINO CPU f32 against its PyTorch module.

A static set's stages are checked against the same (dynamic) reference modules, on the inputs padded
into their slots: what shows is that empty slots change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import BackendConfig
from backends.registry import create_backend
from engine.export.build import BuiltModel
from engine.modelset import ModelSet

MEMORY_FRAMES = (1, 3, 7)
POINTER_COUNTS = (0, 1, 16)
POINT_COUNTS = (1, 2, 5)


@dataclass(frozen=True)
class ParityRow:
    stage: str
    case: str
    backend: str
    output: str
    max_abs: float
    rel: float  # max |a - b| / max |b|


@dataclass
class Case:
    stage: str
    name: str
    inputs: dict[str, np.ndarray]
    reference: Callable[[], dict[str, np.ndarray]]


def relative_error(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return diff, diff / scale if scale > 0 else diff


def build_cases(built: BuiltModel, ms: ModelSet, seed: int = 7) -> list[Case]:
    """Random inputs for every stage, with a closure computing the reference module's outputs."""
    import torch

    from engine.export.stages import MemoryAttentionReference

    m = built.model
    s = built.image_size
    f = ms.manifest.feat_size
    a, b = ms.manifest.memory_grid
    rng = np.random.default_rng(seed)

    def rnd(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)

    cases: list[Case] = []
    image = rnd(1, 3, s, s)

    def ref_image() -> dict[str, np.ndarray]:
        out = m.forward_image(t(image))
        fpn = out["backbone_fpn"]
        return {"high_res_feat0": fpn[0], "high_res_feat1": fpn[1], "vision_feat": out["vision_features"]}

    cases.append(Case("image_encoder", "random image", {"image": image}, ref_image))

    feats = {"image_embed": rnd(1, 256, f, f), "high_res_feat0": rnd(1, 32, 4 * f, 4 * f),
             "high_res_feat1": rnd(1, 64, 2 * f, 2 * f)}
    for points in POINT_COUNTS:
        for with_mask in (False, True):
            coords = (rng.random((1, points, 2)) * s).astype(np.float32)
            labels = rng.integers(0, 2, (1, points)).astype(np.int32)
            mask = rnd(1, 1, 4 * f, 4 * f, scale=4.0)
            inputs = {**feats, "point_coords": coords, "point_labels": labels, "mask_input": mask,
                      "has_mask_input": np.array([1.0 if with_mask else 0.0], np.float32)}

            def ref_decoder(inputs=inputs, with_mask=with_mask) -> dict[str, np.ndarray]:
                sparse, dense = m.sam_prompt_encoder(
                    points=(t(inputs["point_coords"]), t(inputs["point_labels"])), boxes=None,
                    masks=t(inputs["mask_input"]) if with_mask else None)
                masks, iou, tokens, score = m.sam_mask_decoder.predict_masks(
                    image_embeddings=t(inputs["image_embed"]), image_pe=m.sam_prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, repeat_image=False,
                    high_res_features=[t(inputs["high_res_feat0"]), t(inputs["high_res_feat1"])])
                return {"masks": masks, "iou": iou, "obj_ptr": m.obj_ptr_proj(tokens), "object_score": score}

            name = f"{points} point{'s' if points > 1 else ''}, {'with' if with_mask else 'no'} mask"
            cases.append(Case("mask_decoder", name, inputs, ref_decoder))

    reference_ma = MemoryAttentionReference(m, t(ms.constants["vision_pos_enc"]))
    curr = rnd(1, 256, f, f)
    for frames in MEMORY_FRAMES:
        for ptrs in POINTER_COUNTS:
            inputs = {"curr": curr, "memory": rnd(frames, 64, a, b), "memory_pos": rnd(frames, 64, a, b),
                      "obj_ptrs": rnd(ptrs, 256), "obj_ptr_pos": rnd(ptrs, 64)}

            def ref_ma(inputs=inputs) -> dict[str, np.ndarray]:
                return {"pix_feat_with_mem": reference_ma(*(t(inputs[k]) for k in
                        ("curr", "memory", "memory_pos", "obj_ptrs", "obj_ptr_pos")))}

            cases.append(Case("memory_attention", f"{frames} frames, {ptrs} pointers", inputs, ref_ma))

    enc_inputs = {"pix_feat": rnd(1, 256, f, f), "mask_for_mem": rnd(1, 1, s, s, scale=10.0)}

    def ref_enc() -> dict[str, np.ndarray]:
        out = m.memory_encoder(t(enc_inputs["pix_feat"]), t(enc_inputs["mask_for_mem"]), skip_mask_sigmoid=True)
        perceiver = getattr(m, "spatial_perceiver", None)
        if perceiver is None:
            return {"maskmem_features": out["vision_features"]}
        latents, _ = perceiver(out["vision_features"], out["vision_pos_enc"][0])  # EdgeTAM, as its SAM2Base
        return {"maskmem_features": latents.transpose(1, 2).unsqueeze(2)}  # the stage's [1, 64, 1, L] layout

    cases.append(Case("memory_encoder", "random mask", enc_inputs, ref_enc))
    return cases


DEFAULT_BACKENDS = (
    ("onnxruntime CPU f32", BackendConfig(name="onnxruntime", device="CPU", precision="f32")),
    ("openvino CPU f32", BackendConfig(name="openvino", device="CPU", precision="f32")),
)


def verify_model_set(
    built: BuiltModel,
    ms: ModelSet,
    backends: Iterable[tuple[str, BackendConfig]] = DEFAULT_BACKENDS,
    log: Callable[[str], None] | None = None,
) -> list[ParityRow]:
    import torch

    cases = build_cases(built, ms)
    with torch.no_grad():
        refs = [{k: v.detach().float().numpy() for k, v in c.reference().items()} for c in cases]
    rows: list[ParityRow] = []
    for label, config in backends:
        backend = create_backend(config)
        loaded: dict[str, Any] = {}
        for case, ref in zip(cases, refs, strict=True):
            for stage, inputs in _stage_files(ms, case):
                if stage not in loaded:
                    loaded[stage] = backend.load(ms.stage_path(stage))
                got = loaded[stage].run(inputs)
                for name, want in ref.items():
                    diff, rel = relative_error(got[name], want)
                    rows.append(ParityRow(stage, case.name, label, name, diff, rel))
        if log:
            log(f"  verified on {label}")
    return rows


def _stage_files(ms: ModelSet, case: Case) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The stage files a case runs on, with its inputs as each takes them. A static set's stages take them
    padded into their slots (the reference stays dynamic), and a memory-attention case runs on every tier
    it fits: each tier's file is checked, not only the one tracking would choose."""
    static = ms.manifest.static
    if static is None:
        return [(case.stage, case.inputs)]
    if case.stage != "memory_attention":
        return [(case.stage, static.pad(case.stage, case.inputs))]
    memories, pointers = case.inputs["memory"].shape[0], case.inputs["obj_ptrs"].shape[0]
    return [(t.stage, static.pad(t.stage, case.inputs)) for t in static.tiers if t.fits(memories, pointers)]


def format_rows(rows: list[ParityRow]) -> str:
    header = f"{'stage':<17} {'case':<26} {'backend':<20} {'output':<18} {'max abs':>10} {'rel':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.stage:<17} {r.case:<26} {r.backend:<20} {r.output:<18} {r.max_abs:>10.2e} {r.rel:>10.2e}")
    return "\n".join(lines)


def write_report(rows: list[ParityRow], path: Path) -> None:
    import json

    path.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
