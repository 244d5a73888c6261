"""python -m engine.batch --ray on a local Ray cluster (2 CPUs): an actor killed mid-job is retried."""

from __future__ import annotations

import json

import pytest

from engine.batch.__main__ import main as batch_main
from engine.cli import run_cli
from tests.engine.batch.conftest import Killer, read_ledger, write_jobs

pytest.importorskip("ray")


def test_ray_actor_pool_retries_a_killed_actor(batch_config, corpus, tmp_path, capsys):
    jobs = [{**corpus[0], "id": "long", "max_frames": 16}, corpus[1], corpus[2]]
    path, out = write_jobs(tmp_path / "jobs.jsonl", jobs), tmp_path / "out"
    killer = Killer(out, "long", after_s=1.0)
    killer.start()
    code = run_cli(batch_main, ["--config", str(batch_config), "--jobs", str(path), "--out", str(out), "--ray",
                                "--workers", "2", "--retries", "1", "--no-video", "--quiet"])
    console = capsys.readouterr()
    killer.join()
    assert killer.killed, "the job never started"
    assert code == 1, console  # the missing video fails alone
    ledger = {e["id"]: e for e in read_ledger(out)}
    assert ledger["long"]["status"] == "done" and ledger["long"]["attempts"] == 2, ledger["long"]
    assert not ledger["long"]["worker"].endswith(f":{killer.killed}")
    assert json.loads((out / "long" / "summary.json").read_text())["complete"]
    assert ledger["bedroom"]["status"] == "done" and ledger["bedroom"]["frames"] == 3
    assert ledger["missing"]["status"] == "failed" and "video not found" in ledger["missing"]["error"]
