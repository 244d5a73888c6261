"""python -m engine.batch on local worker processes: ledger, outputs, reruns, failures, killed workers."""

from __future__ import annotations

import json

from engine.batch.__main__ import main as batch_main
from engine.cli import run_cli
from tests.engine.batch.conftest import Killer, read_ledger, write_jobs


def _run(args, capsys) -> tuple[int, str]:
    code = run_cli(batch_main, [*args, "--quiet"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_jobs_run_fail_alone_and_reruns_skip_completed(batch_config, corpus, tmp_path, capsys):
    jobs, out = write_jobs(tmp_path / "jobs.jsonl", corpus), tmp_path / "out"
    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(out), "--workers", "2",
                          "--no-video"], capsys)
    assert code == 1, console  # two jobs failed; the others went on
    ledger = {e["id"]: e for e in read_ledger(out)}
    assert set(ledger) == {"davis", "bedroom", "missing", "by-url", "bad-prompt"}
    assert ledger["by-url"]["status"] == "done" and ledger["by-url"]["frames"] == 2
    for good in ("davis", "bedroom"):
        e = ledger[good]
        assert e["status"] == "done" and e["frames"] == 3 and e["fps"] > 0 and e["attempts"] == 1 and e["worker"]
        summary = json.loads((out / good / "summary.json").read_text())
        assert summary["complete"] and summary["frames"] == 3
        assert len(json.loads((out / good / "masks.json").read_text())["frames"]) == 3
        assert sorted(p.name for p in (out / good / "masks").iterdir()) == [f"{i:05d}.png" for i in range(3)]
    assert ledger["missing"]["status"] == "failed" and "video not found" in ledger["missing"]["error"]
    assert ledger["bad-prompt"]["status"] == "failed" and "labels must be 1" in ledger["bad-prompt"]["error"]
    assert len({ledger["davis"]["worker"], ledger["bedroom"]["worker"]} - {""}) >= 1

    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(out), "--no-video"],
                         capsys)
    assert code == 1 and "3 complete already" in console, console
    second = read_ledger(out)[5:]
    assert {e["id"]: e["status"] for e in second} == {"davis": "skipped", "bedroom": "skipped", "by-url": "skipped",
                                                      "missing": "failed", "bad-prompt": "failed"}


def test_a_killed_worker_is_replaced_and_its_job_retried(batch_config, corpus, tmp_path, capsys):
    job = {**corpus[0], "id": "long", "max_frames": 20}
    jobs, out = write_jobs(tmp_path / "jobs.jsonl", [job, corpus[1]]), tmp_path / "out"
    killer = Killer(out, "long")
    killer.start()
    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(out), "--workers", "1",
                          "--retries", "1", "--no-video", "--no-png"], capsys)
    killer.join()
    assert killer.killed, "the job never started"
    assert code == 0, console
    ledger = {e["id"]: e for e in read_ledger(out)}
    assert ledger["long"]["status"] == "done" and ledger["long"]["attempts"] == 2
    assert not ledger["long"]["worker"].endswith(f":{killer.killed}")
    assert json.loads((out / "long" / "summary.json").read_text())["frames"] == 21
    assert ledger["bedroom"]["status"] == "done"


def test_a_job_whose_retries_are_spent_is_failed_not_complete(batch_config, corpus, tmp_path, capsys):
    job = {**corpus[0], "id": "long", "max_frames": 20}
    jobs, out = write_jobs(tmp_path / "jobs.jsonl", [job]), tmp_path / "out"
    killer = Killer(out, "long")
    killer.start()
    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(out), "--retries", "0",
                          "--no-video"], capsys)
    killer.join()
    assert code == 1, console
    (entry,) = read_ledger(out)
    assert entry["status"] == "failed" and f":{killer.killed}" in entry["error"] and "died" in entry["error"]
    summary = out / "long" / "summary.json"
    assert not summary.exists() or not json.loads(summary.read_text())["complete"]
    assert not (out / "long" / "masks.json").exists()  # only masks.incomplete.json, if anything


def test_a_worker_with_another_model_set_is_named(batch_config, corpus, tmp_path, capsys, monkeypatch):
    import engine.batch.worker as worker

    monkeypatch.setattr(worker, "model_fingerprint", lambda root: "0" * 64)  # the coordinator's view only
    jobs, out = write_jobs(tmp_path / "jobs.jsonl", corpus[:1]), tmp_path / "out"
    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(out)], capsys)
    assert code == 2, console
    assert "error: worker " in console and "differs from the coordinator's" in console


def test_bad_jobs_files(batch_config, tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    for text, message in [("{not json\n", "line 1: not JSON"),
                          ('{"video": "a.mp4"}\n{"video": "b/a.mp4"}\n', "job id 'a' is also on line 1"),
                          ('{"id": "../x", "video": "a.mp4"}\n', "id '../x' is not allowed"),
                          ("\n", "holds no job")]:
        jobs.write_text(text)
        code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(tmp_path / "o")],
                             capsys)
        assert code == 2 and message in console, console


def test_a_config_with_a_detector_runs_jobs_without_prompts(batch_config, tmp_path, capsys):
    """engine.batch with the config's detector: jobs need no prompts and their outputs carry labels and
    events; without a detector, a job without prompts fails alone, saying why."""
    from engine.bench.identity_clip import IdentityClip

    clip = IdentityClip(num_frames=12).write_frames(tmp_path / "clip")
    with_detector = tmp_path / "detector.yaml"
    with_detector.write_text(batch_config.read_text() + "detector: {kind: motion, every: 2}\n")
    jobs, out = write_jobs(tmp_path / "jobs.jsonl", [{"id": "yard", "video": str(clip)}]), tmp_path / "out"
    code, console = _run(["--config", str(with_detector), "--jobs", str(jobs), "--out", str(out), "--no-video"],
                         capsys)
    assert code == 0, console
    summary = json.loads((out / "yard" / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 12 and summary["detector"]["kind"] == "motion"
    assert [e["event"] for e in summary["events"]] == ["entered", "entered"]  # A and B enter in 12 frames
    assert {o["label"] for o in summary["objects"].values()} == {"motion"}

    code, console = _run(["--config", str(batch_config), "--jobs", str(jobs), "--out", str(tmp_path / "o2"),
                          "--no-video"], capsys)
    ledger = read_ledger(tmp_path / "o2")
    assert code == 1 and ledger[0]["status"] == "failed" and "no prompts and the config has no detector" in \
        ledger[0]["error"]
