"""python -m engine.bench: per-stage latency of SAM 2 tracking on each backend/device, PyTorch side by side.

Method (as Meta's own speed test): one click per object on the first frame, then tracking; the first
`--warmup` tracked frames (which fill the memory bank: 6 recent memories, 16 pointers) are reported
apart from the steady state, and so are model load/compile times. Each backend configuration runs in
its own process, so that its peak memory is its own.

Modules: `plan` (what runs: runtimes, precisions, compared sets), `runs` (one run: tracking and timing),
`reference` (the PyTorch reference on the same weights), `cli` (options, one process per run, report).
"""

from engine.bench.cli import main, parser

__all__ = ["main", "parser"]
