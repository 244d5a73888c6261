"""What this CPU is and which instruction sets it has (from /proc/cpuinfo on Linux; elsewhere the name
only): for reports, for keying measured stage times, and for the int8 warning below."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# int8 products summed in int32 (no saturation): with one of these a full-range int8 weight is safe
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str | None, frozenset[str] | None]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None, None
    name, flags = None, None
    for line in path.read_text(errors="replace").splitlines():
        if name is None and line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
        elif flags is None and line.startswith("flags"):
            flags = frozenset(line.split(":", 1)[1].split())
        if name is not None and flags is not None:
            break
    return name, flags


def cpu_name() -> str:
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags, or None where the OS does not say (not Linux)."""
    return _cpuinfo()[1]


def int8_may_saturate() -> bool:
    """True on a CPU known to lack every int32-accumulating int8 dot product (AVX2 without VNNI): its int8
    kernels add u8 x s8 pairs into int16 and saturate on full-range weights."""
    flags = cpu_flags()
    return flags is not None and not any(f in flags for f in INT8_DOT_FLAGS)
