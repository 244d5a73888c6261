"""EdgeTAM's stage models: the same four stages and I/O names as SAM 2's, with EdgeTAM's modules inside.

- Image encoder: RepViT (timm) + FPN neck, no Hiera position embedding.
- Memory encoder: SAM 2's memory encoder followed by the 2D spatial perceiver, so a memory is what the
  memory bank stores: 512 latent tokens of 64 channels, laid out [1, 64, 1, 512] (channels first, as
  SAM 2's [1, 64, h, w]) so that the numpy core stacks, adds and pads memories without knowing the family.
  The latents' position encoding does not depend on the input (zeros for the 256 global latents, a sine
  encoding of the 16 x 16 grid for the spatial ones): it is a constant of the model set, as SAM 2's is.
- Memory attention: SAM 2's layers (two in EdgeTAM) and folding; the keys of each memory are rotated on
  the perceiver's 16 x 16 grid for the spatial latents and not at all for the global ones (RoPEAttentionv2),
  written as one table whose global rows are cos 1, sin 0: an exact identity.
- Mask decoder: SAM 2's, unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.errors import ExportError
from engine.export.stages import ImageEncoderStage, MemoryAttentionStage, _rotate
from engine.export.static_stages import StaticMemoryAttentionStage


def check_supported(model: Any) -> None:
    """Refuse an EdgeTAM configuration whose memory the host could not complete after the perceiver."""
    if model.no_obj_embed_spatial is not None:
        raise ExportError("EdgeTAM with no_obj_embed_spatial is not supported: its reference adds that embedding "
                          "before the perceiver, inside what would be the memory-encoder stage")
    if model.spatial_perceiver is None:
        raise ExportError("an EdgeTAM model without a spatial perceiver: export it as a SAM 2 variant")


def latent_count(model: Any) -> int:
    p = model.spatial_perceiver
    return max(p.num_latents, 0) + max(p.num_latents_2d, 0)


class EdgeTamImageEncoderStage(ImageEncoderStage):
    """SAM 2's image-encoder stage over a RepViT trunk (timm), which returns its levels itself."""

    def trunk_levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.trunk(image)


class EdgeTamMemoryEncoderStage(nn.Module):
    """pix_feat [1,256,h,w], mask_for_mem [1,1,S,S] -> maskmem_features [1,64,1,L] (L perceiver latents)."""

    def __init__(self, model: Any) -> None:
        super().__init__()  # EdgeTamFamily has refused what the host could not complete (check_supported)
        self.memory_encoder = model.memory_encoder
        self.perceiver = model.spatial_perceiver

    def forward(self, pix_feat, mask_for_mem):
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        latents, _ = self.perceiver(out["vision_features"], out["vision_pos_enc"][0])
        return latents.transpose(1, 2).unsqueeze(2)


def latent_pos(model: Any, feat_size: int) -> torch.Tensor:
    """The perceiver's position encoding of its latents [1,64,1,L]; it depends on shapes only."""
    with torch.no_grad():
        out = model.memory_encoder(torch.zeros(1, 256, feat_size, feat_size),
                                   torch.zeros(1, 1, 16 * feat_size, 16 * feat_size), skip_mask_sigmoid=True)
        _, pos = model.spatial_perceiver(out["vision_features"], out["vision_pos_enc"][0])
    return pos.transpose(1, 2).unsqueeze(2)


def latent_rope_tables(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [L, dim/2] for one memory's keys: identity rows for the global latents, then the 2D grid."""
    from sam2.modeling.position_encoding import compute_axial_cis

    ca = model.memory_attention.layers[0].cross_attn_image
    head_dim = ca.internal_dim // ca.num_heads
    p = model.spatial_perceiver
    side = int(round(p.num_latents_2d ** 0.5))
    if side * side != p.num_latents_2d:
        raise ExportError(f"the perceiver's {p.num_latents_2d} spatial latents are not a square grid")
    theta = ca.compute_cis.keywords.get("theta", 10000.0)
    grid = compute_axial_cis(dim=head_dim, end_x=side, end_y=side, theta=theta)
    if tuple(ca.freqs_cis_k.shape) != tuple(grid.shape):
        raise ExportError(f"the cross-attention's key grid {tuple(ca.freqs_cis_k.shape)} is not the perceiver's "
                          f"{side} x {side} latent grid")
    n_global = max(p.num_latents, 0)
    cos = torch.cat((torch.ones(n_global, head_dim // 2), grid.real))
    sin = torch.cat((torch.zeros(n_global, head_dim // 2), grid.imag))
    return cos.contiguous(), sin.contiguous()


class EdgeTamMemoryAttentionStage(MemoryAttentionStage):
    """curr [1,256,h,w]; memory / memory_pos [M,64,1,L] perceiver latents and their position (latent
    position + temporal encoding, added by the host); obj_ptrs [N,256], obj_ptr_pos [N,64]."""

    def __init__(self, model: Any, vision_pos: torch.Tensor, query_chunks: int = 1) -> None:
        super().__init__(model, vision_pos, query_chunks)
        cos, sin = latent_rope_tables(model)
        self.register_buffer("key_rope_cos", cos, persistent=False)
        self.register_buffer("key_rope_sin", sin, persistent=False)

    def _rotate_memory_keys(self, k: torch.Tensor) -> torch.Tensor:
        return _rotate(k, self.key_rope_cos, self.key_rope_sin)


class EdgeTamStaticMemoryAttentionStage(StaticMemoryAttentionStage, EdgeTamMemoryAttentionStage):
    """The static stage's slots and masks over EdgeTAM's latent memories (the method order puts the static
    forward first and EdgeTAM's key rotation under it)."""
