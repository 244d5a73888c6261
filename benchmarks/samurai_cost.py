"""SAMURAI's host cost per frame and object, and what the policy indirection costs Meta's default path.

    python benchmarks/samurai_cost.py --model models/edgetam_512 --model models/fid512 --out benchmarks/samurai/

Each model set tracks one clicked object through the DAVIS clip on OpenVINO CPU (f32), once under Meta's
rules and once under SAMURAI's default parameters. The policy's own work (its mask choice, memory selection
and eviction) is timed around those calls; the frame time is the whole tracked frame. The stage models are
the same in both runs: the policy adds no network compute."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from engine.config import parse_config
from engine.tracker import Tracker

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-car-shadow" / "frames"


def timed(obj, name: str, sink: list[float]) -> None:
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(obj, name, wrapper)


def run(model: Path, policy: str, frames: int) -> dict:
    cfg = parse_config({"model": str(model), "backend": {"name": "openvino", "device": "CPU"},
                        "tracker": {"policy": policy, "offline_memory": "window"}})
    tracker = Tracker.from_config(cfg)
    spent: list[float] = []
    for name in ("select", "recent_memories", "evict"):
        timed(tracker.policy, name, spent)
    state = tracker.init_state(str(CLIP))
    tracker.add_new_points_or_box(state, 0, 1, points=[[420, 250]], labels=[1])
    stamps = []
    spent.clear()
    for _ in tracker.propagate_in_video(state, max_frame_num_to_track=frames - 1):
        stamps.append((time.perf_counter(), sum(spent)))
    # steady state: after the filter is stable (SAMURAI's 15 frames) and the memory is full
    t = np.array([s[0] for s in stamps])
    p = np.array([s[1] for s in stamps])
    steady = slice(16, None)
    frame_ms = 1000 * float(np.median(np.diff(t)[steady]))
    policy_ms = 1000 * float(np.median(np.diff(p)[steady]))
    return {"model": model.name, "policy": policy, "frame_ms": round(frame_ms, 1), "policy_ms": round(policy_ms, 3),
            "share": round(policy_ms / frame_ms, 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = [run(m, policy, args.frames) for m in args.model for policy in ("meta", "samurai")]
    print(f"{'model':<16} {'policy':<8} {'frame ms':>9} {'policy ms':>10} {'share':>7}")
    for r in rows:
        print(f"{r['model']:<16} {r['policy']:<8} {r['frame_ms']:>9.1f} {r['policy_ms']:>10.3f} {100 * r['share']:>6.2f}%")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "samurai_cost.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
