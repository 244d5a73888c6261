"""Batch jobs: the jobs file, one job's run (the same code and outputs as `engine.track`), the ledger."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import EngineError, InputError
from engine.prompts import Prompt, finalize_prompts, load_prompts_file, parse_prompt_list
from engine.video import is_url

JOB_KEYS = ("id", "video", "prompts", "reverse", "start_frame", "max_frames", "skip_bad_frames")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Job:
    """One video and its prompts. `error` is set when the job's own entry is invalid: it then fails
    alone, without running."""

    id: str
    video: str
    prompts: tuple[Prompt, ...] = ()
    reverse: bool = False
    start_frame: int | None = None
    max_frames: int | None = None
    skip_bad_frames: bool = False
    line: int = 0
    error: str | None = None


@dataclass
class JobResult:
    id: str
    status: str  # done | failed | skipped
    worker: str = ""
    attempts: int = 1
    frames: int = 0
    seconds: float = 0.0
    fps: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def ledger_entry(self) -> dict[str, Any]:
        entry = {"id": self.id, "status": self.status, "attempts": self.attempts, "frames": self.frames,
                 "seconds": round(self.seconds, 2), "fps": self.fps, "worker": self.worker, "error": self.error,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        entry.update(self.extra)
        return entry


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _job(entry: Any, where: str, base: Path) -> Job:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a JSON object with keys {', '.join(JOB_KEYS)}")
    video = entry.get("video")
    if not isinstance(video, str) or not video.strip():
        raise InputError(f"{where}: 'video' must be a path or URL")
    if not is_url(video) and not Path(video).is_absolute():
        video = str(base / video)
    job_id = entry.get("id", Path(video.rstrip("/")).stem)
    if not isinstance(job_id, str) or not _ID.match(job_id):
        raise InputError(f"{where}: id {job_id!r} is not allowed; use letters, digits, '.', '_' and '-' "
                         f"(it names the job's output folder)")
    try:  # from here on, a problem belongs to this job alone
        unknown = [k for k in entry if k not in JOB_KEYS]
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r}; allowed: {', '.join(JOB_KEYS)}")
        raw = entry.get("prompts")
        if raw is None:  # objects come from the config's detector (run_job says so if there is none)
            found = []
        elif isinstance(raw, str):
            path = Path(raw) if Path(raw).is_absolute() else base / raw
            found = load_prompts_file(path)
        else:
            found = parse_prompt_list(raw, f"job {job_id} prompts", base=base)
        opts: dict[str, Any] = {}
        for key in ("reverse", "skip_bad_frames"):
            if key in entry:
                if not isinstance(entry[key], bool):
                    raise InputError(f"{key} must be true or false, got {entry[key]!r}")
                opts[key] = entry[key]
        for key in ("start_frame", "max_frames"):
            if entry.get(key) is not None:
                if isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] < 0:
                    raise InputError(f"{key} must be an integer >= 0, got {entry[key]!r}")
                opts[key] = entry[key]
        return Job(job_id, video, tuple(finalize_prompts(found)) if found else (), **opts)
    except InputError as exc:
        return Job(job_id, video, error=f"{where}: {exc}")


def load_jobs(path: str | Path) -> list[Job]:
    """A JSON Lines file, one job a line: {"id", "video", "prompts" (a list, or a prompts file), and
    optionally "reverse", "start_frame", "max_frames", "skip_bad_frames"}. A line that is not a job at
    all stops the batch before it starts; a job whose prompts or options are wrong fails alone."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"jobs file not found: {path}")
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc})") from None
        job = _job(entry, where, path.parent)
        if job.id in seen:
            raise InputError(f"{where}: job id {job.id!r} is also on line {seen[job.id]}; ids must be unique "
                             f"(give each job an \"id\")")
        seen[job.id] = number
        jobs.append(replace(job, line=number))
    if not jobs:
        raise InputError(f"jobs file {path} holds no job")
    return jobs


def is_complete(out: Path, job_id: str) -> bool:
    summary = out / job_id / "summary.json"
    try:
        return bool(json.loads(summary.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def run_job(tracker, job: Job, out: Path, no_png: bool = False, no_video: bool = False,
            detector=None) -> JobResult:
    """Track one job with `engine.track`'s own code, into `out/<id>/`. What an earlier, interrupted
    attempt left there is removed first, so outputs are complete or clearly incomplete, never mixed.
    With a detector (the config's `detector:`), objects are found as in `engine.track --detector`, and a
    job's prompts are optional."""
    from engine.track import track_detected, track_offline

    name = worker_name()
    job_dir = out / job.id
    if job_dir.exists():
        shutil.rmtree(job_dir)
    job_dir.mkdir(parents=True)
    (job_dir / "worker.json").write_text(json.dumps({"worker": name, "pid": os.getpid(), "started": time.time()}))
    t0 = time.perf_counter()
    if job.error:
        return JobResult(job.id, "failed", name, error=job.error)
    if not job.prompts and detector is None:
        return JobResult(job.id, "failed", name, error=f"job {job.id} has no prompts and the config has no "
                                                       f"detector: give \"prompts\" or add a detector: section")
    args = argparse.Namespace(video=job.video, out=job_dir, reverse=job.reverse, start_frame=job.start_frame,
                              max_frames=job.max_frames, no_png=no_png, no_video=no_video,
                              skip_bad_frames=job.skip_bad_frames, quiet=True)
    try:
        summary = (track_detected(args, tracker, list(job.prompts), detector) if detector is not None
                   else track_offline(args, tracker, list(job.prompts)))
    except EngineError as exc:
        return JobResult(job.id, "failed", name, seconds=time.perf_counter() - t0, error=str(exc))
    except Exception as exc:  # a bug must not take the other jobs down; the ledger keeps its type
        return JobResult(job.id, "failed", name, seconds=time.perf_counter() - t0,
                         error=f"{type(exc).__name__}: {exc}")
    status = "done" if summary.get("complete") else "failed"
    return JobResult(job.id, status, name, frames=int(summary.get("frames", 0)),
                     seconds=float(summary.get("seconds", 0.0)), fps=summary.get("fps"),
                     error=None if status == "done" else "tracking stopped before the end")


class Ledger:
    """DIR/batch.jsonl: one line per finished job, appended (and flushed) as jobs finish."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "batch.jsonl"

    def add(self, result: JobResult) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(result.ledger_entry()) + "\n")
            f.flush()
            os.fsync(f.fileno())
