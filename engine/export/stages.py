"""Export-friendly torch wrappers of the four stage models.

Each wrapper reuses the reference modules' weights and differs from the reference only where the
reference does not export: complex rotary encoding (written with real cos/sin), the Python-int
count of object-pointer tokens (pointers are a separate input), frozen multimask choices (all four
mask tokens are returned) and Hiera's constant bicubic position-embedding resize (precomputed,
because OpenVINO constant-folds it for ~100 s otherwise).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def feature_size(model: Any) -> int:
    return model.image_size // model.backbone_stride


# --------------------------------------------------------------------------- image encoder
class ImageEncoderStage(nn.Module):
    """image [1,3,S,S] -> high_res_feat0 [1,32,S/4,S/4], high_res_feat1 [1,64,S/8,S/8], vision_feat [1,256,S/16,S/16].

    The trunk's levels go through the reference's FPN neck and the decoder's high-res projections;
    `trunk_levels` is the family's (Hiera here)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.trunk = model.image_encoder.trunk
        self.neck = model.image_encoder.neck
        self.scalp = model.image_encoder.scalp
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1
        if hasattr(self.trunk, "_get_pos_embed"):  # Hiera
            grid = model.image_size // 4  # Hiera's patch embedding has stride 4
            with torch.no_grad():
                pos = self.trunk._get_pos_embed((grid, grid)).detach().clone()
            self.register_buffer("hiera_pos_embed", pos, persistent=False)

    def trunk_levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        trunk = self.trunk
        x = trunk.patch_embed(image) + self.hiera_pos_embed
        levels = []
        for i, block in enumerate(trunk.blocks):
            x = block(x)
            if i == trunk.stage_ends[-1] or (i in trunk.stage_ends and trunk.return_interm_layers):
                levels.append(x.permute(0, 3, 1, 2))
        return levels

    def forward(self, image: torch.Tensor):
        features, _ = self.neck(self.trunk_levels(image))
        if self.scalp > 0:
            features = features[: -self.scalp]
        return self.conv_s0(features[0]), self.conv_s1(features[1]), features[-1]


# --------------------------------------------------------------------------- mask decoder
class MaskDecoderStage(nn.Module):
    """Prompt encoder + mask decoder + object-pointer MLP, all four mask tokens.

    point_coords [1,P,2] in model-input pixels, point_labels [1,P] int32 (1 pos, 0 neg, 2/3 box corners,
    -1 padding), mask_input [1,1,4h,4w] logits used when has_mask_input [1] is 1.
    -> masks [1,4,4h,4w], iou [1,4], obj_ptr [1,4,256] (before the no-object mix), object_score [1,1].
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.mask_decoder = model.sam_mask_decoder
        self.obj_ptr_proj = model.obj_ptr_proj
        with torch.no_grad():
            dense_pe = self.prompt_encoder.get_dense_pe().detach().clone()
        self.register_buffer("dense_pe", dense_pe, persistent=False)

    def forward(self, image_embed, high_res_feat0, high_res_feat1, point_coords, point_labels,
                mask_input, has_mask_input):
        sparse, _ = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        mask_dense = self.prompt_encoder.mask_downscaling(mask_input)
        has = has_mask_input.reshape(1, 1, 1, 1)
        dense = has * mask_dense + (1.0 - has) * no_mask.expand_as(mask_dense)
        masks, iou, tokens, score = self.mask_decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=self.dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_feat0, high_res_feat1],
        )
        return masks, iou, self.obj_ptr_proj(tokens), score


# --------------------------------------------------------------------------- memory attention
def rope_tables(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [HW, dim/2] of the axial rotary encoding on the stride-16 grid."""
    from sam2.modeling.position_encoding import compute_axial_cis

    attn = model.memory_attention.layers[0].self_attn
    side = feature_size(model)
    head_dim = attn.internal_dim // attn.num_heads
    theta = attn.compute_cis.keywords.get("theta", 10000.0)
    cis = compute_axial_cis(dim=head_dim, end_x=side, end_y=side, theta=theta)
    return cis.real.contiguous(), cis.imag.contiguous()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary encoding on interleaved pairs, real arithmetic (cos/sin broadcast on the last two dims)."""
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class MemoryAttentionStage(nn.Module):
    """Condition the current frame's feature on the object's memory.

    curr [1,256,h,w] raw vision feature; memory / memory_pos [M,64,a,b] spatial memories (a,b = h,w in SAM 2) and their
    position (sine + temporal encoding, added by the host); obj_ptrs [N,256] and obj_ptr_pos [N,64].
    -> pix_feat_with_mem [1,256,h,w]. M >= 1 and N >= 0 are dynamic.

    Attention has one head in every SAM 2 config, which allows folding the value projection into the
    output projection: softmax rows sum to one, so A·(M·Wv + bv)·Wo = (A·M)·(Wo·Wv) + Wo·bv, and the
    weighted sum runs over 64-d memory instead of 256-d values.
    """

    def __init__(self, model: Any, vision_pos: torch.Tensor, query_chunks: int = 1) -> None:
        super().__init__()
        self.query_chunks = query_chunks
        ma = model.memory_attention
        self.layers = ma.layers
        self.norm = ma.norm
        self.pos_enc_at_input = ma.pos_enc_at_input
        for layer in self.layers:
            for attn in (layer.self_attn, layer.cross_attn_image):
                if attn.num_heads != 1:
                    raise NotImplementedError("memory attention export assumes one attention head")
        cos, sin = rope_tables(model)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("curr_pos", vision_pos.flatten(2).transpose(1, 2).contiguous(), persistent=False)
        folded_w, folded_b = [], []
        with torch.no_grad():
            for layer in self.layers:
                ca = layer.cross_attn_image
                folded_w.append(ca.out_proj.weight @ ca.v_proj.weight)
                folded_b.append(ca.out_proj.weight @ ca.v_proj.bias + ca.out_proj.bias)
        self.folded_w = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in folded_w])
        self.folded_b = nn.ParameterList([nn.Parameter(b, requires_grad=False) for b in folded_b])

    def _self_attention(self, layer, x: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        t = layer.norm1(x)
        qk_in = t + self.curr_pos if layer.pos_enc_at_attn else t
        q = _rotate(attn.q_proj(qk_in), self.rope_cos, self.rope_sin)
        k = _rotate(attn.k_proj(qk_in), self.rope_cos, self.rope_sin)
        v = attn.v_proj(t)
        out = self._sdpa(q, k, v)
        return x + attn.out_proj(out)

    def _cross_attention(self, i: int, layer, x, mem, mem_pos, ptr, ptr_pos, key_bias=None) -> torch.Tensor:
        attn = layer.cross_attn_image
        t = layer.norm2(x)
        q_in = t + self.curr_pos if layer.pos_enc_at_cross_attn_queries else t
        q = _rotate(attn.q_proj(q_in), self.rope_cos, self.rope_sin)
        if layer.pos_enc_at_cross_attn_keys:
            k_mem, k_ptr = mem + mem_pos, ptr + ptr_pos
        else:
            k_mem, k_ptr = mem, ptr
        k_mem = self._rotate_memory_keys(attn.k_proj(k_mem))
        k = torch.cat((k_mem.reshape(1, -1, k_mem.shape[-1]), attn.k_proj(k_ptr).unsqueeze(0)), dim=1)
        v = torch.cat((mem.reshape(1, -1, mem.shape[-1]), ptr.unsqueeze(0)), dim=1)
        out = self._sdpa(q, k, v, key_bias)
        return x + F.linear(out, self.folded_w[i], self.folded_b[i])

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """One-head attention [1, Q, d] over [1, K, d], in `query_chunks` blocks of queries.

        Each query's softmax row is its own, so blocks of queries give the same result while the score
        matrix held at once shrinks by the block count (ONNX Runtime materialises Q x K scores: 470 MB for
        a full SAM 2.1 bank at 1024, with its temporaries several times that)."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        blocks = q.chunk(self.query_chunks, dim=1) if self.query_chunks > 1 else (q,)
        outs = [F.scaled_dot_product_attention(b.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), attn_mask=bias,
                                               scale=scale).squeeze(1) for b in blocks]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def _rotate_memory_keys(self, k: torch.Tensor) -> torch.Tensor:
        """Spatial keys [M, HW, 256], rotated per frame by broadcasting the one HW table."""
        return _rotate(k, self.rope_cos, self.rope_sin)

    def forward(self, curr, memory, memory_pos, obj_ptrs, obj_ptr_pos):
        return self.attend(curr, memory, memory_pos, obj_ptrs, obj_ptr_pos)

    def attend(self, curr, memory, memory_pos, obj_ptrs, obj_ptr_pos, key_bias=None):
        """key_bias [1,1,1,K] is added to the cross-attention scores over the K = M*HW + 4N memory keys."""
        channels = curr.shape[1]
        h, w = curr.shape[2], curr.shape[3]
        x = curr.flatten(2).transpose(1, 2)  # [1, HW, 256]
        if self.pos_enc_at_input:
            x = x + 0.1 * self.curr_pos
        mem_dim = memory.shape[1]
        mem = memory.flatten(2).transpose(1, 2)  # [M, HW, 64]
        mem_pos = memory_pos.flatten(2).transpose(1, 2)
        # a 256-d pointer is split into four 64-d tokens, its position repeated for each
        splits = obj_ptrs.shape[1] // mem_dim
        ptr = obj_ptrs.reshape(-1, mem_dim)  # [4N, 64]
        ptr_pos = obj_ptr_pos.unsqueeze(1).expand(-1, splits, -1).reshape(-1, mem_dim)
        for i, layer in enumerate(self.layers):
            x = self._self_attention(layer, x)
            x = self._cross_attention(i, layer, x, mem, mem_pos, ptr, ptr_pos, key_bias)
            t = layer.norm3(x)
            x = x + layer.linear2(layer.activation(layer.linear1(t)))
        x = self.norm(x)
        return x.transpose(1, 2).reshape(1, channels, h, w)


class MemoryAttentionReference(nn.Module):
    """The reference module driven exactly as SAM2Base does, for parity checks (not exportable)."""

    def __init__(self, model: Any, vision_pos: torch.Tensor) -> None:
        super().__init__()
        self.ma = model.memory_attention
        self.vision_pos = vision_pos
        # EdgeTAM's SAM2Base also tells its memory attention how many memories precede the pointers
        self.count_memories = getattr(model, "spatial_perceiver", None) is not None

    def forward(self, curr, memory, memory_pos, obj_ptrs, obj_ptr_pos):
        _, c, h, w = curr.shape
        mem_dim = memory.shape[1]
        tokens = [memory.flatten(2).permute(0, 2, 1).reshape(-1, 1, mem_dim)]
        pos = [memory_pos.flatten(2).permute(0, 2, 1).reshape(-1, 1, mem_dim)]
        n = obj_ptrs.shape[0]
        if n:
            ptr = obj_ptrs.reshape(-1, 1, c // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            tokens.append(ptr)
            pos.append(obj_ptr_pos.unsqueeze(1).repeat_interleave(c // mem_dim, dim=0))
        out = self.ma(
            curr=[curr.flatten(2).permute(2, 0, 1)],
            curr_pos=[self.vision_pos.flatten(2).permute(2, 0, 1)],
            memory=torch.cat(tokens, 0),
            memory_pos=torch.cat(pos, 0),
            num_obj_ptr_tokens=n * (c // mem_dim),
            **({"num_spatial_mem": memory.shape[0]} if self.count_memories else {}),
        )
        return out.permute(1, 2, 0).reshape(1, c, h, w)


# --------------------------------------------------------------------------- memory encoder
class MemoryEncoderStage(nn.Module):
    """pix_feat [1,256,h,w] raw vision feature, mask_for_mem [1,1,S,S] (already sigmoid/binarised, x20 -10)
    -> maskmem_features [1,64,h,w] (before the no-object embedding, which the host adds)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.memory_encoder = model.memory_encoder

    def forward(self, pix_feat, mask_for_mem):
        return self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)["vision_features"]
