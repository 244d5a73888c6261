"""What differs between model families at export: the stage modules, the memory's token grid, the memory
position constant and the architecture the manifest records. The tracker sees none of it: a memory is
[64, a, b] tokens and its position a constant of the same shape, whichever family made them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.export.build import BuiltModel


class Sam2Family:
    """SAM 2 and SAM 2.1: Hiera, memories on the stride-16 feature grid."""

    def __init__(self, built: BuiltModel) -> None:
        self.model = built.model
        self.feat = built.image_size // self.model.backbone_stride

    def memory_grid(self) -> tuple[int, int]:
        return self.feat, self.feat

    def image_encoder(self) -> nn.Module:
        from engine.export.stages import ImageEncoderStage

        return ImageEncoderStage(self.model)

    def memory_encoder(self) -> nn.Module:
        from engine.export.stages import MemoryEncoderStage

        return MemoryEncoderStage(self.model)

    def memory_attention(self, vision_pos: torch.Tensor, static: bool, query_blocks: int = 1) -> nn.Module:
        from engine.export.stages import MemoryAttentionStage
        from engine.export.static_stages import StaticMemoryAttentionStage

        return (StaticMemoryAttentionStage if static else MemoryAttentionStage)(self.model, vision_pos, query_blocks)

    def memory_pos(self) -> torch.Tensor:
        m = self.model
        return m.memory_encoder.position_encoding(torch.zeros(1, m.mem_dim, self.feat, self.feat))

    def architecture(self) -> dict[str, Any]:
        t = self.model.image_encoder.trunk
        return {"image_encoder": f"hiera (stages {list(t.stage_ends)})",
                "memory_attention_layers": len(self.model.memory_attention.layers),
                "memory_tokens": self.feat * self.feat}


class EdgeTamFamily(Sam2Family):
    """EdgeTAM: RepViT, memories compressed by the spatial perceiver to its latents."""

    def __init__(self, built: BuiltModel) -> None:
        super().__init__(built)
        from engine.export.edgetam_stages import check_supported

        check_supported(self.model)

    def memory_grid(self) -> tuple[int, int]:
        from engine.export.edgetam_stages import latent_count

        return 1, latent_count(self.model)

    def image_encoder(self) -> nn.Module:
        from engine.export.edgetam_stages import EdgeTamImageEncoderStage

        return EdgeTamImageEncoderStage(self.model)

    def memory_encoder(self) -> nn.Module:
        from engine.export.edgetam_stages import EdgeTamMemoryEncoderStage

        return EdgeTamMemoryEncoderStage(self.model)

    def memory_attention(self, vision_pos: torch.Tensor, static: bool, query_blocks: int = 1) -> nn.Module:
        from engine.export.edgetam_stages import (
            EdgeTamMemoryAttentionStage,
            EdgeTamStaticMemoryAttentionStage,
        )

        stage = EdgeTamStaticMemoryAttentionStage if static else EdgeTamMemoryAttentionStage
        return stage(self.model, vision_pos, query_blocks)

    def memory_pos(self) -> torch.Tensor:
        from engine.export.edgetam_stages import latent_pos

        return latent_pos(self.model, self.feat)

    def architecture(self) -> dict[str, Any]:
        m = self.model
        p = m.spatial_perceiver
        ca = m.memory_attention.layers[0].cross_attn_image
        return {
            "image_encoder": f"timm {m.image_encoder.trunk.body.default_cfg.get('architecture', 'repvit')}",
            "memory_attention_layers": len(m.memory_attention.layers),
            "memory_tokens": max(p.num_latents, 0) + max(p.num_latents_2d, 0),
            "perceiver": {"latents_global": p.num_latents, "latents_2d": p.num_latents_2d,
                          "depth": len(p.layers), "dim": int(p.norm.normalized_shape[0])},
            "rope": {"query_grid": [self.feat, self.feat], "key_grid": [int(ca.freqs_cis_k.shape[0] ** 0.5)] * 2,
                     "theta": float(ca.compute_cis.keywords.get("theta", 10000.0))},
        }


def family_of(built: BuiltModel) -> Sam2Family:
    return EdgeTamFamily(built) if built.variant.reference == "edgetam" else Sam2Family(built)
