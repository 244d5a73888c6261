"""The export wrappers against the reference modules, in PyTorch (before any ONNX)."""

import torch

from engine.export.stages import ImageEncoderStage, MemoryAttentionReference, MemoryAttentionStage
from tests.conftest import TEST_SIZE

FEAT = TEST_SIZE // 16  # the test model set's feature grid


def test_image_encoder_wrapper_matches_forward_image(built_tiny):
    m = built_tiny.model
    img = torch.randn(1, 3, TEST_SIZE, TEST_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ImageEncoderStage(m)(img)
        ref = m.forward_image(img)
    want = (ref["backbone_fpn"][0], ref["backbone_fpn"][1], ref["vision_features"])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_real_rope_memory_attention_matches_complex_reference(built_tiny, modelset):
    m = built_tiny.model
    pos = torch.from_numpy(modelset.constants["vision_pos_enc"])
    gen = torch.Generator().manual_seed(1)
    stage, ref = MemoryAttentionStage(m, pos), MemoryAttentionReference(m, pos)
    for frames, ptrs in ((1, 0), (2, 3), (7, 16)):
        args = (torch.randn(1, 256, FEAT, FEAT, generator=gen), torch.randn(frames, 64, FEAT, FEAT, generator=gen),
                torch.randn(frames, 64, FEAT, FEAT, generator=gen), torch.randn(ptrs, 256, generator=gen),
                torch.randn(ptrs, 64, generator=gen))
        with torch.no_grad():
            got, want = stage(*args), ref(*args)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_query_blocks_change_nothing(built_tiny, modelset):
    """Memory attention in blocks of queries (less memory on ONNX Runtime) equals the one-block stage."""
    m = built_tiny.model
    pos = torch.from_numpy(modelset.constants["vision_pos_enc"])
    gen = torch.Generator().manual_seed(2)
    args = (torch.randn(1, 256, FEAT, FEAT, generator=gen), torch.randn(3, 64, FEAT, FEAT, generator=gen),
            torch.randn(3, 64, FEAT, FEAT, generator=gen), torch.randn(5, 256, generator=gen),
            torch.randn(5, 64, generator=gen))
    with torch.no_grad():
        whole = MemoryAttentionStage(m, pos)(*args)
        for blocks in (2, 16):
            got = MemoryAttentionStage(m, pos, query_chunks=blocks)(*args)
            assert (got - whole).abs().max() <= 1e-6 * whole.abs().max(), blocks
