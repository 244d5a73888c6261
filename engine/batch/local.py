"""Local worker processes: each loads the model set once and tracks one job at a time.

The coordinator hands each idle worker one job, so it always knows which job a worker holds: a worker
that dies (killed, out of memory) has its job retried on a fresh worker, up to the retry count.
Processes are spawned, not forked (the runtimes' thread pools do not survive a fork; Windows has none).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.batch.jobs import Job, JobResult
from engine.errors import EngineError

POLL_S = 0.2


def _worker_main(index: int, config: str, model: str | None, fingerprint: str, out: str, no_png: bool,
                 no_video: bool, tasks, events) -> None:
    from engine.batch.jobs import run_job, worker_name
    from engine.batch.worker import load_tracker
    from engine.config import load_config

    try:
        tracker = load_tracker(config, model, fingerprint)
        detector = load_config(config).detector
    except EngineError as exc:
        events.put(("fatal", index, str(exc)))
        return
    events.put(("ready", index, worker_name()))
    while True:
        job = tasks.get()
        if job is None:
            return
        result = run_job(tracker, job, Path(out), no_png, no_video, detector=detector)
        events.put(("done", index, result))


@dataclass
class _Worker:
    process: mp.Process
    tasks: object
    name: str = ""
    job: Job | None = None
    ready: bool = False


class LocalPool:
    def __init__(self, config: str, model: str | None, fingerprint: str, out: Path, workers: int, retries: int,
                 no_png: bool = False, no_video: bool = False) -> None:
        self.ctx = mp.get_context("spawn")
        self.events = self.ctx.Queue()
        self.args = (config, model, fingerprint, str(out), no_png, no_video)
        self.size = workers
        self.retries = retries
        self.workers: dict[int, _Worker] = {}
        self._next_index = 0
        self.deaths = 0

    def _start(self) -> None:
        index = self._next_index
        self._next_index += 1
        tasks = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_main, args=(index, *self.args, tasks, self.events), daemon=True)
        proc.start()
        self.workers[index] = _Worker(proc, tasks)

    def run(self, jobs: list[Job], on_result: Callable[[JobResult], None]) -> None:
        pending: deque[Job] = deque(jobs)
        attempts = {job.id: 0 for job in jobs}
        finished: set[str] = set()

        def finish(result: JobResult) -> None:
            if result.id not in finished:  # a late result of a job already retried elsewhere counts once
                finished.add(result.id)
                result.attempts = attempts[result.id]
                on_result(result)

        for _ in range(min(self.size, len(jobs))):
            self._start()
        try:
            while len(finished) < len(jobs):
                for w in self.workers.values():  # one job to each idle worker
                    while w.ready and w.job is None and pending:
                        job = pending.popleft()
                        if job.id in finished:
                            continue
                        w.job = job
                        attempts[job.id] += 1
                        w.tasks.put(job)
                try:
                    kind, index, payload = self.events.get(timeout=POLL_S)
                except queue.Empty:
                    kind, index, payload = None, -1, None
                w = self.workers.get(index)
                if kind == "fatal":
                    raise EngineError(payload)
                if kind == "ready" and w is not None:
                    w.ready, w.name = True, payload
                elif kind == "done":
                    if w is not None:
                        w.job = None
                    finish(payload)
                self._reap(pending, attempts, finish)
        finally:
            self.close()

    def _reap(self, pending: deque[Job], attempts: dict[str, int], finish: Callable[[JobResult], None]) -> None:
        """Replace dead workers; retry the job each held, or fail it when its retries are spent."""
        for index, w in list(self.workers.items()):
            if w.process.exitcode is None:
                continue
            del self.workers[index]
            self.deaths += 1
            if self.deaths > 4 * self.size + 8 * self.retries:
                raise EngineError(f"batch workers keep dying (last: {w.name or f'worker {index}'}, exit code "
                                  f"{w.process.exitcode}); stopping")
            job = w.job
            if job is not None:
                if attempts[job.id] <= self.retries:
                    pending.appendleft(job)
                else:
                    finish(JobResult(job.id, "failed", w.name, error=(
                        f"worker {w.name} died (exit code {w.process.exitcode}) during the job, on attempt "
                        f"{attempts[job.id]} of {self.retries + 1}")))
            if pending:
                self._start()

    def close(self) -> None:
        for w in self.workers.values():
            if w.process.is_alive():
                w.tasks.put(None)
        for w in self.workers.values():
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.terminate()
        self.workers.clear()
