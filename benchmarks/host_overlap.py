"""Host time per tracked frame when the stages run elsewhere (a GPU), with and without frame prefetching.

The stages are stand-ins with the real output shapes that sleep for --stage-ms per frame (the thread
waits, as it waits for a GPU), so what remains of the frame beyond that is host work: frame decode and
resize, mask selection, memory-encoder mask, hole filling, upsampling to the video. Keeping memory on the
device removes the memory stacking from it (measured by gpu_check on a GPU).

    python benchmarks/host_overlap.py --model models/sam2.1_hiera_tiny --stage-ms 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.bench.synthetic import SyntheticSource  # noqa: E402
from engine.config import TrackerSettings  # noqa: E402
from engine.modelset import ModelSet  # noqa: E402
from engine.tracker import Tracker  # noqa: E402
from tests.engine.fakes import FakeStages  # noqa: E402


class SleepingStages(FakeStages):
    def __init__(self, modelset: ModelSet, stage_ms: float) -> None:
        super().__init__(modelset)
        self.stage_s = stage_ms / 1000.0

    def run(self, name, inputs, keep=()):
        if name == "image_encoder":  # the whole frame's device time, in one wait
            time.sleep(self.stage_s)
        return super().run(name, inputs, keep)


def frame_ms(ms: ModelSet, stage_ms: float, prefetch: bool, frames: int) -> float:
    tracker = Tracker(ms, SleepingStages(ms, stage_ms), TrackerSettings(prefetch_frames=prefetch))
    source = SyntheticSource(num_frames=frames + 11)
    state = tracker.init_state(source)
    tracker.add_new_points_or_box(state, 0, 1, points=[list(source.centre(0, 0))], labels=[1])
    gen = tracker.propagate_in_video(state)
    for _ in range(10):
        next(gen)
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        next(gen)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/sam2.1_hiera_tiny"))
    p.add_argument("--stage-ms", type=float, default=10.0, help="device time per frame the stand-in waits")
    p.add_argument("--frames", type=int, default=30)
    args = p.parse_args()
    ms = ModelSet.load(args.model)
    print(f"{ms.variant} at {ms.manifest.image_size}, 640x480 synthetic frames, stages wait {args.stage_ms} ms a frame")
    for prefetch in (False, True, False, True):  # interleaved: the machine is shared
        t = frame_ms(ms, args.stage_ms, prefetch, args.frames)
        host = t - args.stage_ms
        print(f"prefetch_frames {str(prefetch):<5}: frame {t:6.1f} ms, host {host:5.1f} ms ({100 * host / t:4.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
