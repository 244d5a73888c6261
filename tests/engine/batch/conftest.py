"""A small corpus for batch tests: short jobs on the shared footage, one bad video, one bad prompt."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require_data


@pytest.fixture
def batch_config(modelset_dir, tmp_path) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu, threads: 1}}\n")
    return p


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


@pytest.fixture
def corpus(tmp_path) -> list[dict]:
    data = require_data()
    click = [{"frame": 0, "obj_id": 1, "points": [[420, 250]]}]
    return [
        {"id": "davis", "video": str(data / "davis-car-shadow" / "frames"), "prompts": click, "max_frames": 2},
        {"id": "bedroom", "video": str(data / "videos" / "bedroom.mp4"),
         "prompts": [{"frame": 0, "obj_id": 2, "box": [300, 100, 700, 500]}], "max_frames": 2},
        {"id": "missing", "video": str(tmp_path / "nowhere.mp4"), "prompts": click},
        {"id": "by-url", "video": (data / "videos" / "bedroom.mp4").resolve().as_uri(), "prompts": click,
         "max_frames": 1},
        {"id": "bad-prompt", "video": str(data / "davis-car-shadow" / "frames"),
         "prompts": [{"frame": 0, "obj_id": 1, "points": [[420, 250]], "labels": [3]}]},
    ]


def read_ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]


class Killer(threading.Thread):
    """Kills the process that starts `job_id` (read from the job's worker.json), once, mid-job."""

    def __init__(self, out: Path, job_id: str, after_s: float = 1.0, timeout_s: float = 240.0) -> None:
        super().__init__(daemon=True)
        self.marker = out / job_id / "worker.json"
        self.after_s, self.timeout_s = after_s, timeout_s
        self.killed: int | None = None

    def run(self) -> None:
        end = time.time() + self.timeout_s
        while time.time() < end:
            try:
                pid = json.loads(self.marker.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
                continue
            time.sleep(self.after_s)
            os.kill(pid, signal.SIGKILL)
            self.killed = pid
            return
