"""What machine a benchmark ran on: CPU model, cores, the instruction sets that matter for inference."""

from __future__ import annotations

import os
import platform
from typing import Any

from engine.cpu import cpu_flags, cpu_name

FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
         "amx_int8")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "logical_cores": os.cpu_count()}
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["cpu"] = cpu_name()
    flags = cpu_flags()
    if flags is not None:
        info["cpu_flags"] = {f: f in flags for f in FLAGS}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import openvino

        info["openvino"] = openvino.get_version()
    except ImportError:
        pass
    return info
