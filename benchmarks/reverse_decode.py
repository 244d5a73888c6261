"""Cost per frame of reading a video file backwards (reverse propagation), before and after chunking.

    python benchmarks/reverse_decode.py ../shared/data/videos/bedroom.mp4

"seek per frame" is what the engine did before: a seek to every frame (OpenCV decodes from the previous
key frame each time). "chunked" is engine.video.VideoFileSource: a chunk decoded forward from one seek,
served from memory. Both are checked frame for frame against a forward decode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.video import VideoFileSource  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", type=Path)
    p.add_argument("--frames", type=int, default=60, help="frames of the seek-per-frame run (it is slow)")
    args = p.parse_args()
    cap = cv2.VideoCapture(str(args.video))
    forward, t0 = [], time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        forward.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    n = len(forward)
    fwd_ms = (time.perf_counter() - t0) / n * 1000

    last = range(n - 1, max(n - 1 - args.frames, -1), -1)
    t0 = time.perf_counter()
    for i in last:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = cap.read()
        assert ok and np.array_equal(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), forward[i]), i
    seek_ms = (time.perf_counter() - t0) / len(last) * 1000

    src = VideoFileSource(args.video)
    t0 = time.perf_counter()
    for i in reversed(range(n)):
        assert np.array_equal(src.get(i), forward[i]), i
    chunk_ms = (time.perf_counter() - t0) / n * 1000
    print(f"{args.video.name}: {n} frames {src.width}x{src.height}")
    print(f"  forward decode:          {fwd_ms:6.2f} ms/frame")
    print(f"  reverse, seek per frame: {seek_ms:6.2f} ms/frame (last {len(last)} frames)")
    print(f"  reverse, chunked:        {chunk_ms:6.2f} ms/frame ({src.decoded} decodes, {src.seeks} seeks, "
          f"chunks of {src.chunk_frames})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
