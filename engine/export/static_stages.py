"""Fixed-shape variants of the memory-attention and mask-decoder stages, for NPUs and graph compilers.

NPUs, TensorRT engines and CUDA graphs need every shape known when the model is compiled, while a
tracked frame attends to a varying number of memories and pointers and a prompt has any number of
points. The static stages take a fixed number of slots plus a validity vector per kind of slot. An
empty slot's keys get a score bias of -65504 (the largest float16 magnitude, so the bias survives f16
devices): after the softmax their weight is exactly zero, and the valid keys' weights and the result
are those of the dynamic graph up to summation order. Queries of empty slots (the decoder's padding
tokens) are computed and never read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.export.stages import MaskDecoderStage, MemoryAttentionStage

MASKED_SCORE = -65504.0


def key_bias(valid: torch.Tensor) -> torch.Tensor:
    """valid [K] (1 keep, 0 empty) -> additive score bias [1, 1, 1, K]."""
    return ((valid - 1.0) * -MASKED_SCORE).reshape(1, 1, 1, -1)


class StaticMemoryAttentionStage(MemoryAttentionStage):
    """MemoryAttentionStage over S memory slots and P pointer slots.

    memory_valid [S] and obj_ptr_valid [P] are 1 for a slot that holds a memory, 0 for an empty one
    (whose contents must be finite; the host fills zeros). At least one memory slot must be valid.
    """

    def forward(self, curr, memory, memory_pos, memory_valid, obj_ptrs, obj_ptr_pos, obj_ptr_valid):
        hw = memory.shape[2] * memory.shape[3]  # tokens per memory
        splits = obj_ptrs.shape[1] // memory.shape[1]
        keep = torch.cat((memory_valid.reshape(-1, 1).expand(-1, hw).reshape(-1),
                          obj_ptr_valid.reshape(-1, 1).expand(-1, splits).reshape(-1)))
        return self.attend(curr, memory, memory_pos, obj_ptrs, obj_ptr_pos, key_bias(keep))


def _attention(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
    """sam2's Attention.forward with an additive bias on the scores (keys of empty slots)."""
    heads = attn.num_heads

    def split(x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, heads, c // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(attn.q_proj(q)), split(attn.k_proj(k)), split(attn.v_proj(v)),
                                         attn_mask=bias)
    b, _, n, _ = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, -1))


def _two_way(transformer: Any, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor,
             bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TwoWayTransformer.forward where tokens are keys only through `bias`: the token self-attention and
    the image-to-token attention skip empty point slots; token-to-image attention has image keys only."""
    keys = image.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    queries = tokens
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = _attention(layer.self_attn, queries, queries, queries, bias)
        else:
            q = queries + tokens
            queries = queries + _attention(layer.self_attn, q, q, queries, bias)
        queries = layer.norm1(queries)
        q, k = queries + tokens, keys + key_pe
        queries = layer.norm2(queries + _attention(layer.cross_attn_token_to_image, q, k, keys, None))
        queries = layer.norm3(queries + layer.mlp(queries))
        q, k = queries + tokens, keys + key_pe
        keys = layer.norm4(keys + _attention(layer.cross_attn_image_to_token, k, q, queries, bias))
    q, k = queries + tokens, keys + key_pe
    queries = queries + _attention(transformer.final_attn_token_to_image, q, k, keys, None)
    return transformer.norm_final_attn(queries), keys


class StaticMaskDecoderStage(MaskDecoderStage):
    """MaskDecoderStage over K point slots; point_valid [1,K] is 1 for a point, 0 for an empty slot.

    The prompt encoder appends its padding point (label -1) after the K slots, as SAM does after the
    real points, and that token stays valid: results equal the dynamic decoder's on the valid points.
    """

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        dec = self.mask_decoder
        if not dec.use_high_res_features or not dec.pred_obj_scores:
            raise NotImplementedError("the static decoder is written for SAM 2 decoders with high-res "
                                      "features and object scores (all SAM 2 / 2.1 configs)")
        self.output_tokens = nn.Parameter(torch.cat(
            (dec.obj_score_token.weight, dec.iou_token.weight, dec.mask_tokens.weight)).detach().clone(),
            requires_grad=False)

    def forward(self, image_embed, high_res_feat0, high_res_feat1, point_coords, point_labels, point_valid,
                mask_input, has_mask_input):
        dec = self.mask_decoder
        sparse, _ = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        mask_dense = self.prompt_encoder.mask_downscaling(mask_input)
        has = has_mask_input.reshape(1, 1, 1, 1)
        dense = has * mask_dense + (1.0 - has) * no_mask.expand_as(mask_dense)

        n_out = self.output_tokens.shape[0]
        tokens = torch.cat((self.output_tokens.unsqueeze(0), sparse), dim=1)
        ones = torch.ones(n_out, dtype=point_valid.dtype)
        keep = torch.cat((ones, point_valid.reshape(-1), ones[:1]))
        hs, src = _two_way(dec.transformer, image_embed + dense, self.dense_pe, tokens, key_bias(keep))

        b, c, h, w = image_embed.shape
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = dec.output_upscaling
        upscaled = act1(ln1(dc1(src) + high_res_feat1))
        upscaled = act2(dc2(upscaled) + high_res_feat0)
        mask_tokens = hs[:, 2:2 + dec.num_mask_tokens, :]
        hyper = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
                            dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        iou = dec.iou_prediction_head(hs[:, 1, :])
        score = dec.pred_obj_score_head(hs[:, 0, :])
        return masks, iou, self.obj_ptr_proj(mask_tokens), score
