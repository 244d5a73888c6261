"""One stage to int8 with NNCF's post-training quantization (ONNX in, QDQ ONNX out)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from engine.errors import ExportError

# Attention stages keep softmax, layer norms and the like in float (NNCF's transformer scheme); the
# memory encoder is convolutional.
TRANSFORMER_STAGES = ("image_encoder", "memory_attention", "mask_decoder")

# Which layers get weights in 7 bits instead of 8 (NNCF's overflow fix). A CPU without VNNI (AVX2: most edge
# PCs) multiplies int8 with vpmaddubsw, which adds pairs of u8 x s8 products into a saturating int16: with
# full-range weights the sum can clip, and the layer computes something else than its graph says. Half-range
# weights cannot clip. VNNI and AMX add into int32 and never clip, so there "first-layer" (NNCF's default)
# keeps one more bit everywhere else; a set made with "all" is right on every CPU.
OVERFLOW_FIX = {"all": "enable", "first-layer": "first_layer_only", "off": "disable"}


def quantize_stage(source: Path, samples: list[dict[str, np.ndarray]], stage: str, out: Path,
                   overflow_fix: str = "all") -> None:
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(source))
    kind = nncf.ModelType.TRANSFORMER if stage in TRANSFORMER_STAGES else None
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(OVERFLOW_FIX[overflow_fix]))
    if stage == "memory_attention":
        # nncf 3.4's SmoothQuant fails on this graph (it meets a MatMul whose weight it cannot read as a
        # constant: AttributeError in _process_weight_statistics), so it is left out for this stage
        advanced.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=-1)
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), model_type=kind,
                              advanced_parameters=advanced)
    onnx.save(quantized, str(out))


def require_quantize_deps() -> None:
    """Fail with the extra to install when NNCF or what it runs on is missing."""
    missing = [m for m in ("nncf", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"quantizing needs the 'quantize' extra; missing: {', '.join(missing)} "
                          f"(pip install 'sam2-edge[quantize]')")
