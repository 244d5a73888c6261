"""Shared command-line plumbing: engine errors become one clear line and a non-zero exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from engine.errors import EngineError

EXIT_USAGE = 2


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return main(argv)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB, on any OS (no Linux-only module): Windows
    reports its peak working set through psutil; Linux its high-water mark in /proc; elsewhere the
    current resident size is the best available."""
    import psutil

    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return float(peak if peak is not None else info.rss) / 2**20
