"""Jobs per hour of `engine.batch` on this machine: 1 and 2 local workers, and a local Ray cluster.

    python benchmarks/batch_throughput.py --model models/sam2.1_hiera_tiny_512 --jobs 6 --frames 10

Every run tracks the same jobs (DAVIS car-shadow, one click, --frames + 1 frames each, PNG and RLE
outputs) on ONNX Runtime CPU with threads = cores / workers, from a fresh output folder. Reports wall
time, jobs/hour, the summed in-job tracking time, and the overhead per job outside tracking (worker
start and model loading included), as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("SAM2_EDGE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run(model: Path, jobs: int, frames: int, workers: int, ray: bool, root: Path) -> dict:
    cores = os.cpu_count() or 1
    cfg = root / f"cfg-{workers}.yaml"
    cfg.write_text(f"model: {model.resolve()}\nbackend: {{name: onnxruntime, device: cpu, "
                   f"threads: {max(1, cores // workers)}}}\n")
    video = DATA / "davis-car-shadow" / "frames"
    lines = [json.dumps({"id": f"job{i}", "video": str(video), "max_frames": frames,
                         "prompts": [{"frame": 0, "obj_id": 1, "points": [[420 + i, 250]]}]}) for i in range(jobs)]
    (root / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    out = root / f"out-{workers}-{'ray' if ray else 'local'}"
    cmd = [sys.executable, "-m", "engine.batch", "--config", str(cfg), "--jobs", str(root / "jobs.jsonl"),
           "--out", str(out), "--workers", str(workers), "--no-video", "--quiet"] + (["--ray"] if ray else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    ledger = [json.loads(x) for x in (out / "batch.jsonl").read_text().splitlines()]
    assert all(e["status"] == "done" for e in ledger), ledger
    tracking = sum(e["seconds"] for e in ledger)
    return {"run": f"{'Ray (local cluster)' if ray else 'local'}, {workers} worker(s)", "wall_s": wall,
            "jobs_per_hour": 3600 * jobs / wall, "tracking_s": tracking,
            "overhead_per_job_s": (wall * workers - tracking) / jobs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--frames", type=int, default=10)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, ray in ((1, False), (2, False), (2, True)):
            rows.append(run(args.model, args.jobs, args.frames, workers, ray, Path(tmp)))
            print(rows[-1], file=sys.stderr)
    print(f"{args.jobs} jobs x {args.frames + 1} frames, model {args.model.name}, {os.cpu_count()} cores\n")
    print("| run | wall s | jobs/hour | tracking s (sum) | overhead per job s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['wall_s']:.1f} | {r['jobs_per_hour']:.0f} | {r['tracking_s']:.1f} | "
              f"{r['overhead_per_job_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
