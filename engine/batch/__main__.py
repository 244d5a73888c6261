"""python -m engine.batch: track many videos, each with its prompts, on local workers or on Ray.

    python -m engine.batch --config configs/openvino-cpu.yaml --jobs jobs.jsonl --out runs/ [--workers 2]
    python -m engine.batch ... --ray                 # a local Ray cluster
    python -m engine.batch ... --ray 10.0.0.5:6379   # an existing cluster (every node: package, config, models)

Each job's outputs are those of `engine.track` (the same code), under OUT/<job id>/; OUT/batch.jsonl
records each job as it finishes. A rerun skips jobs whose outputs are complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.batch.jobs import JobResult, Ledger, is_complete, load_jobs
from engine.cli import run_cli
from engine.config import load_config
from engine.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.batch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="deployment YAML (as for engine.track)")
    p.add_argument("--model", type=Path, help="model set folder (default: the config's)")
    p.add_argument("--jobs", type=Path, required=True,
                   help='JSON Lines, one job a line: {"id": "a", "video": "a.mp4", "prompts": [...] or '
                        '"prompts.yaml", "reverse": false, "start_frame": null, "max_frames": null}')
    p.add_argument("--out", type=Path, required=True, help="output folder: OUT/<job id>/ and OUT/batch.jsonl")
    p.add_argument("--workers", type=int, default=1, help="worker processes or Ray actors (default 1)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: a local cluster, or the cluster at ADDRESS (host:port, ray://host:port, auto)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPUs each actor reserves (default 1)")
    p.add_argument("--retries", type=int, default=2,
                   help="how often a job whose worker died is tried again (default 2)")
    p.add_argument("--no-png", action="store_true", help="do not write per-frame PNG masks")
    p.add_argument("--no-video", action="store_true", help="do not write overlay videos")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class Progress:
    """One bar over jobs, with frames tracked and the aggregate frame rate."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.bar = None
        self.frames = 0
        self.t0 = time.perf_counter()
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="jobs", unit="job")

    def update(self, result: JobResult) -> None:
        self.frames += result.frames
        if self.bar is not None:
            fps = self.frames / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix(frames=self.frames, fps=f"{fps:.2f}", last=f"{result.id} {result.status}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {args.workers}")
    if args.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {args.retries}")
    cfg = load_config(args.config)  # a bad config fails here, before any worker starts
    model = args.model or cfg.model
    if model is None:
        raise ConfigError(f"config {args.config} names no model set: add `model:` or pass --model")
    from engine.batch.worker import model_fingerprint
    from engine.modelset import ModelSet

    fingerprint = model_fingerprint(ModelSet.load(model, verify_checksums=True).root)
    jobs = load_jobs(args.jobs)
    ledger = Ledger(args.out)
    todo = []
    for job in jobs:
        if is_complete(args.out, job.id):
            ledger.add(JobResult(job.id, "skipped", attempts=0, extra={"reason": "complete in an earlier run"}))
        else:
            todo.append(job)
    print(f"{len(jobs)} jobs: {len(jobs) - len(todo)} complete already, {len(todo)} to run on "
          f"{'Ray' if args.ray is not None else 'local workers'} ({args.workers} worker(s))")
    counts = {"done": 0, "failed": 0}
    progress = Progress(len(todo), args.quiet)

    def on_result(result: JobResult) -> None:
        ledger.add(result)
        counts[result.status] = counts.get(result.status, 0) + 1
        progress.update(result)
        if result.status == "failed":
            print(f"job {result.id} failed: {result.error}", file=sys.stderr)

    t0 = time.perf_counter()
    try:
        if not todo:
            pass
        elif args.ray is not None:
            from engine.batch.on_ray import run_ray

            run_ray(args.ray or None, str(args.config.resolve()), str(Path(model).resolve()), fingerprint,
                    args.out.resolve(), args.workers, args.retries, args.cpus_per_worker, todo, on_result,
                    args.no_png, args.no_video)
        else:
            from engine.batch.local import LocalPool

            LocalPool(str(args.config.resolve()), str(Path(model).resolve()), fingerprint, args.out.resolve(),
                      args.workers, args.retries, args.no_png, args.no_video).run(todo, on_result)
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    rate = f", {3600 * len(todo) / seconds:.0f} jobs/hour" if todo and seconds > 0 else ""
    print(f"{counts['done']} done, {counts['failed']} failed, {len(jobs) - len(todo)} skipped in {seconds:.1f} s"
          f"{rate}; ledger: {ledger.path}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
