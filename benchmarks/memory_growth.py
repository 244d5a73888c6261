"""Resident memory of the engine while it propagates through a long video (real stage models).

    python benchmarks/memory_growth.py --config configs/openvino-cpu-bf16.yaml --video ../shared/data/videos/bedroom.mp4

Prints RSS and the memory bank's size after 20, 50, 100, 150 and 200 tracked frames, with every output
kept (the default, Meta's rule) or with `--offline-memory window` (bounded).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import load_config  # noqa: E402
from engine.tracker import Tracker  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("configs/openvino-cpu-bf16.yaml"))
    p.add_argument("--video", default="../shared/data/videos/bedroom.mp4")
    p.add_argument("--checkpoints", default="20,50,100,150,200")
    p.add_argument("--offline-memory", choices=("all", "window"), default="all",
                   help="all: every frame's output is kept (Meta's rule, grows); window: bounded")
    args = p.parse_args()
    marks = {int(x) for x in args.checkpoints.split(",")}
    cfg = load_config(args.config)
    cfg = replace(cfg, tracker=replace(cfg.tracker, offline_memory=args.offline_memory))
    tracker = Tracker.from_config(cfg)
    state = tracker.init_state(args.video)
    tracker.add_new_points_or_box(state, 0, 1, points=[[state.video_hw[1] / 2, state.video_hw[0] / 2]], labels=[1])
    proc = psutil.Process()
    t0 = time.perf_counter()
    print("frames  RSS MB  bank MB  stored frames  s")
    for n, _result in enumerate(tracker.propagate_in_video(state), start=1):
        if n in marks:
            gc.collect()
            print(f"{n:>6}  {proc.memory_info().rss / 2**20:>6.0f}  {state.memory_bytes() / 2**20:>7.1f}  "
                  f"{state.stored_frames():>13}  {time.perf_counter() - t0:.0f}", flush=True)
        if n >= max(marks):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
