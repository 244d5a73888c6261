import numpy as np
import torch

from engine.postprocess import fill_holes, rle_decode, rle_encode


def test_fill_holes_matches_reference_with_cpu_components():
    import sam2.utils.misc as misc

    from engine.export.reference import hole_filling_on_cpu

    rng = np.random.default_rng(3)
    logits = rng.standard_normal((64, 64)).astype(np.float32) + 0.8
    with hole_filling_on_cpu():
        want = misc.fill_holes_in_mask_scores(torch.from_numpy(logits)[None, None], 8)[0, 0].numpy()
    got = fill_holes(logits, 8)
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got != logits) > 0


def test_fill_holes_only_small_background():
    x = np.ones((20, 20), np.float32)
    x[2:4, 2:4] = -1  # 4-pixel hole: filled
    x[10:15, 10:15] = -1  # 25-pixel hole: kept
    out = fill_holes(x, 8)
    assert np.all(out[2:4, 2:4] == np.float32(0.1)) and np.all(out[10:15, 10:15] == -1)
    np.testing.assert_array_equal(fill_holes(x, 0), x)


def test_rle_round_trip_and_column_major():
    m = np.zeros((3, 4), bool)
    m[0, 0] = m[1, 0] = m[2, 3] = True
    rle = rle_encode(m)
    assert rle == {"size": [3, 4], "counts": [0, 2, 9, 1]}
    np.testing.assert_array_equal(rle_decode(rle), m)
    empty = np.zeros((5, 5), bool)
    np.testing.assert_array_equal(rle_decode(rle_encode(empty)), empty)
