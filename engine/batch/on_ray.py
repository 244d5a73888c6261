"""Ray: an actor pool in which each actor loads the model set once and tracks one video per task.

Tracking is stateful, so work is sharded by video. Retries are Ray's own: actors restart when their
process dies, and a task caught in a dead actor is retried on its restarted actor up to the retry count
(`max_task_retries`); a job whose retries are spent fails alone. Works on a local cluster or on one
given by address; every node needs this package, the config and the model set at the same paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from engine.batch.jobs import Job, JobResult
from engine.errors import ConfigError, EngineError


class TrackActor:
    """One worker: loads the tracker once in its constructor, then runs jobs."""

    def __init__(self, config: str, model: str | None, fingerprint: str, out: str, no_png: bool,
                 no_video: bool) -> None:
        from engine.batch.worker import load_tracker
        from engine.config import load_config

        self.tracker = load_tracker(config, model, fingerprint)
        self.detector = load_config(config).detector
        self.out = Path(out)
        self.options = (no_png, no_video)

    def ready(self) -> str:
        from engine.batch.jobs import worker_name

        return worker_name()

    def run(self, job: Job) -> JobResult:
        from engine.batch.jobs import run_job

        attempts = _count_attempt(self.out, job.id)
        result = run_job(self.tracker, job, self.out, *self.options, detector=self.detector)
        result.attempts = attempts
        return result


def _count_attempt(out: Path, job_id: str) -> int:
    """Attempts are counted beside the outputs: a retried task runs in a restarted actor process."""
    folder = out / ".attempts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / job_id
    n = int(path.read_text()) + 1 if path.is_file() else 1
    path.write_text(str(n))
    return n


def _import_ray():
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'sam2-edge[ray]'") from None
    return ray, ActorPool


def _creation_error(exc: Exception) -> str:
    text = str(exc)
    found = re.findall(r"(?:ModelSetError|ConfigError|BackendUnavailableError|EngineError): (.+)", text)
    return found[-1] if found else text.strip().splitlines()[-1]


def run_ray(address: str | None, config: str, model: str | None, fingerprint: str, out: Path, workers: int,
            retries: int, cpus_per_worker: float, jobs: list[Job], on_result: Callable[[JobResult], None],
            no_png: bool = False, no_video: bool = False) -> dict[str, str]:
    """Run the jobs; returns a description of the cluster for the ledger's header line."""
    ray, ActorPool = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(workers * cpus_per_worker)), include_dashboard=False, log_to_driver=False)
    try:
        # stale attempt counts of an earlier run of the same jobs
        for job in jobs:
            (out / ".attempts" / job.id).unlink(missing_ok=True)
        Actor = ray.remote(num_cpus=cpus_per_worker, max_restarts=-1, max_task_retries=retries)(TrackActor)
        actors = [Actor.remote(str(config), None if model is None else str(model), fingerprint, str(out), no_png,
                               no_video) for _ in range(workers)]
        try:
            names = ray.get([a.ready.remote() for a in actors])
        except Exception as exc:  # RayActorError and its kin carry the constructor's error as text
            raise EngineError(f"a Ray worker could not start: {_creation_error(exc)}") from None
        pool = ActorPool(actors)
        outstanding: dict[object, Job] = {}

        def submit(actor, job: Job):
            ref = actor.run.remote(job)
            outstanding[ref] = job
            return ref

        for job in jobs:
            pool.submit(submit, job)
        while pool.has_next():
            try:
                result = pool.get_next_unordered()
            except Exception as exc:  # the actor died more often than the retries allow
                ref = _failed_ref(ray, outstanding)
                job = outstanding.pop(ref) if ref is not None else None
                if job is None:
                    raise
                on_result(JobResult(job.id, "failed", "ray", retries + 1,
                                    error=f"Ray worker died during the job on every one of {retries + 1} attempts "
                                          f"({type(exc).__name__})"))
                continue
            for ref, job in list(outstanding.items()):
                if job.id == result.id:
                    del outstanding[ref]
            on_result(result)
        return {"cluster": address or "local", "workers": ", ".join(names), "nodes": str(len(ray.nodes()))}
    finally:
        if started_here:
            ray.shutdown()


def _failed_ref(ray, outstanding: dict[object, Job]):
    ready, _ = ray.wait(list(outstanding), num_returns=len(outstanding), timeout=0)
    for ref in ready:
        try:
            ray.get(ref, timeout=0)
        except Exception:
            return ref
    return None
