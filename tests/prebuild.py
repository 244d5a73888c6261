"""The session's slow fixtures, made in the background from the start of the run.

Exporting a model set is single-threaded Python (torch.export and the ONNX passes: about 20 s a set), and
so is most of EdgeTAM's child process (three exports, then its reference runs); the parity suite's
reference runs need only the seeded model and the clips. Run one after another where a test first asks,
they leave one of the two cores idle for minutes. Once collection has shown which
of them the selected tests need, two lanes of subprocesses make them at a lower priority, while the first
tests run; a fixture waits for its job only if it is not done yet, and fails with the job's own error.

    python -m tests.prebuild NAME OUT         (NAME: a key of tests/conftest.py's TEST_SETS)
    python -m tests.prebuild reference SPEC   (Meta's predictor on the parity scenarios of one size)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the fixture each job stands in for, and the lanes: each starts where the first tests need a set
FIXTURES = {"dynamic": "modelset_dir", "static": "static_modelset_dir", "1024": "modelset_1024",
            "edgetam": "edgetam_runs", "reference": "reference_runs", "reference_1024": "reference_1024"}
LANES = (("dynamic", "edgetam", "reference", "reference_1024"), ("static", "1024"))
NICE = 5  # below the tests' own processes, whose timings some tests bound
# One thread each: runtimes whose thread pools wait by spinning burn the cores they share with the tests'
# own (measured: reference runs with torch's default two threads beside EdgeTAM's child and the tests took
# 350 CPU-seconds more and made the run 170 s longer)
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Job:
    name: str
    argv: list[str]
    out: Path
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    seconds: float = 0.0


class Background:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.procs: list[subprocess.Popen] = []
        self.stopped = False
        self.clips: dict[str, Path] | None = None  # the test clips, written before the jobs that read them

    def start(self, jobs: list[Job]) -> None:
        self.jobs = {j.name: j for j in jobs}
        for lane in LANES:
            queue = [self.jobs[n] for n in lane if n in self.jobs]
            if queue:
                threading.Thread(target=self._run, args=(queue,), daemon=True, name=f"prebuild-{lane[0]}").start()

    def _run(self, queue: list[Job]) -> None:
        for job in queue:
            t0 = time.perf_counter()
            try:
                if self.stopped:
                    raise RuntimeError("the test session ended first")
                nice = ["nice", "-n", str(NICE)] if shutil.which("nice") else []
                proc = subprocess.Popen([*nice, *job.argv], cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
                self.procs.append(proc)
                output, _ = proc.communicate()
                if proc.returncode != 0:
                    job.error = f"`{' '.join(job.argv[1:])}` exited {proc.returncode}:\n{output[-4000:]}"
            except Exception as exc:  # reported by the fixture that waits for it
                job.error = f"`{' '.join(job.argv[1:])}` could not run: {exc}"
            job.seconds = time.perf_counter() - t0
            job.done.set()

    def wait(self, name: str) -> Path | None:
        """The job's output folder once it is done (None: no job; the fixture makes it itself)."""
        job = self.jobs.get(name)
        if job is None:
            return None
        job.done.wait()
        if job.error:
            pytest.fail(f"background job {name}: {job.error}", pytrace=False)
        return job.out

    def stop(self) -> None:
        self.stopped = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


BACKGROUND = Background()


def plan(config, items, command) -> None:
    """Start the jobs the selected tests need (called once collection is done). `command(name, factory)` gives
    a job's argv and output folder, or None where its tests will skip."""
    if (os.environ.get("SAM2_EDGE_TEST_PREBUILD", "1") == "0" or hasattr(config, "workerinput")
            or config.option.collectonly):
        return  # switched off, an xdist worker (each would build its own), or nothing will run
    needed = {name for item in items for name, fixture in FIXTURES.items()
              if fixture in getattr(item, "fixturenames", ())}
    jobs = []
    for name in [n for lane in LANES for n in lane if n in needed]:
        made = command(name, config._tmp_path_factory)
        if made is not None:
            jobs.append(Job(name, *made))
    BACKGROUND.start(jobs)


def main(name: str, arg: str) -> int:
    """A test set exported into folder `arg`, or the reference runs a spec file `arg` names."""
    if name == "reference":
        import json
        import pickle

        from tests.conftest import build_test_model
        from tests.engine.test_tracker_parity import reference_records

        spec = json.loads(Path(arg).read_text())
        clips = {k: Path(v) for k, v in spec["clips"].items()}
        records = reference_records(build_test_model(spec["size"]), spec["size"], clips)
        (Path(arg).parent / "records.pkl").write_bytes(pickle.dumps(records))
        return 0
    from tests.conftest import export_test_set

    export_test_set(name, Path(arg))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
