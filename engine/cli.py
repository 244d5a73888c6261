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
    """Peak resident memory of this process so far, in MB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024.0
