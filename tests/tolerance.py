"""How far two float32 runs of the same stage may differ, and why: the bound every comparison of two kernels
(two runtimes, or a static graph against the dynamic one) uses instead of a number tuned on one CPU.

Both runs compute the same sums of products, in other orders: other kernels, other blockings, AVX2 against
AVX-512 vector widths, a static graph's padded slots whose softmax weight is exactly 0. A float32 sum of n
terms carries a rounding error of at most about n·ε·Σ|terms|, and about √n·ε·Σ|terms| when the errors do not
all fall one way (Higham, Accuracy and Stability of Numerical Algorithms, ch. 4: the probabilistic bound).
A stage chains L such reductions (the matrix products of its layers); their errors are independent too, so
they add up like √L, not L. Layer norms keep activations at about unit size, so the difference of two runs,
on the scale of their outputs (at least 1, the size at which a logit or a normalised feature means anything),
is about ε·√n·√L. `SAFETY` covers the constant of these estimates (the errors of each product's own
rounding, exp and division in softmax).

A real fault is orders of magnitude above this: an unmasked padding slot or point moves a stage's outputs
by ~0.1 to 1 of their scale (DESIGN.md: 1.6 in logits), a bf16 stage by ~1e-2.
"""

from __future__ import annotations

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
SAFETY = 4.0


def reorder_bound(reduction: int, layers: int) -> float:
    """Relative bound between two float32 evaluations: `reduction`, the longest sum (e.g. the keys one query
    attends to), and `layers`, the reductions chained from the inputs to the output."""
    return SAFETY * EPS32 * math.sqrt(reduction) * math.sqrt(layers)


def stage_reduction(modelset, stage: str, memory_frames: int = 7, pointers: int = 16, points: int = 8) -> tuple[int, int]:
    """(longest reduction, chained reductions) of a SAM 2 stage of `modelset` for one call's sizes:
    memory attention's queries attend to every memory token and 4 tokens per pointer, through its layers
    (self and cross attention: scores and values; the output projection; the MLP); the decoder's tokens and
    image attend to each other through its two-way blocks and the final attention, then the heads' MLPs."""
    m = modelset.manifest
    tokens = m.feat_size ** 2
    a, b = m.memory_grid
    if stage == "memory_attention":
        return max(memory_frames * a * b + 4 * pointers, 256 * 4), m.architecture.get("memory_attention_layers", 4) * 8
    if stage == "mask_decoder":
        return max(tokens, 256 * 8), 2 * 8 + 3 + 3
    if stage == "image_encoder":
        return 256 * 4 * 9, 40
    return 256 * 9, 8  # memory_encoder: a few convolutions


def assert_close(got: np.ndarray, want: np.ndarray, bound: float, what: object) -> None:
    """|got - want| <= bound * max(|want|, 1), over the whole tensor."""
    scale = max(float(np.abs(want).max()), 1.0)
    diff = float(np.abs(got - want).max())
    assert diff <= bound * scale, (what, f"max difference {diff:.3g} > {bound:.3g} x {scale:.3g}")
