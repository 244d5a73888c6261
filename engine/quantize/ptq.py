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


def quantize_stage(source: Path, samples: list[dict[str, np.ndarray]], stage: str, out: Path) -> None:
    import nncf
    import onnx

    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(source))
    kind = nncf.ModelType.TRANSFORMER if stage in TRANSFORMER_STAGES else None
    advanced = None
    if stage == "memory_attention":
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )

        # nncf 3.4's SmoothQuant fails on this graph (it meets a MatMul whose weight it cannot read as a
        # constant: AttributeError in _process_weight_statistics), so it is left out for this stage
        advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), model_type=kind,
                              advanced_parameters=advanced)
    onnx.save(quantized, str(out))


def require_quantize_deps() -> None:
    """Fail with the extra to install when NNCF or what it runs on is missing."""
    missing = [m for m in ("nncf", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"quantizing needs the 'quantize' extra; missing: {', '.join(missing)} "
                          f"(pip install 'sam2-edge[quantize]')")
