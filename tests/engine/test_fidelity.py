"""python -m engine.fidelity: a candidate configuration against the exact run, frame by frame."""

from __future__ import annotations

import json

from engine.cli import run_cli
from engine.fidelity import main as fidelity_main
from tests.conftest import require_data


def _config(tmp_path, modelset_dir, name: str, tracker: str = "") -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n{tracker}")
    return str(p)


def _run(args, capsys):
    code = run_cli(fidelity_main, [*args, "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_exact_candidate_agrees_and_writes_report_and_plot(modelset_dir, tmp_path, capsys):
    video = str(require_data() / "davis-car-shadow" / "frames")
    cand = _config(tmp_path, modelset_dir, "ort-f32", "tracker: {memory_dtype: float32}\n")
    code, out, err = _run(["--candidate", cand, "--video", video, "--frame", "6", "--point", "420,250",
                           "--direction", "both", "--max-frames", "4", "--min-iou", "0.99",
                           "--out", str(tmp_path / "f")], capsys)
    assert code == 0, out + err
    report = json.loads((tmp_path / "f" / "fidelity.json").read_text())
    for direction in ("forward", "reverse"):
        s = report["directions"][direction]["1"]
        assert s["frames"] == 5 and s["min_iou"] >= 0.99 and s["presence_disagreements"] == 0
        assert s["first_frame_below"] is None and s["p999_logit_diff"] < 1e-3
        assert 0.05 <= s["median_coverage"] <= 0.6
    assert report["frames"]["reverse"]["1"]["frame"] == [6, 5, 4, 3, 2]
    assert (tmp_path / "f" / "fidelity.png").stat().st_size > 1000


def test_a_drifting_candidate_fails_naming_the_frame(modelset_dir, tmp_path, capsys):
    video = str(require_data() / "davis-car-shadow" / "frames")
    # a raised mask threshold: a deterministic change of the masks, whatever the CPU
    cand = _config(tmp_path, modelset_dir, "shifted", "tracker: {mask_threshold: 0.05}\n")
    code, out, err = _run(["--candidate", cand, "--video", video, "--point", "420,250", "--max-frames", "3",
                           "--min-iou", "0.999"], capsys)
    assert code == 1, out + err
    assert "FAILED: forward object 1: IoU first below 0.999 on frame 0" in err


def test_a_direction_with_nothing_to_track_is_said(modelset_dir, tmp_path, capsys):
    video = str(require_data() / "davis-car-shadow" / "frames")
    cand = _config(tmp_path, modelset_dir, "ort-f32", "tracker: {memory_dtype: float32}\n")
    code, out, err = _run(["--candidate", cand, "--video", video, "--point", "420,250", "--direction", "reverse"],
                          capsys)
    assert code == 0 and "reverse: no frame to track" in err, out + err


def test_the_exact_config_runs_its_own_model_set(modelset_dir, static_modelset_dir, tmp_path, capsys):
    """A static set judged against the dynamic one: each config's `model:` is the set it runs."""
    video = str(require_data() / "davis-car-shadow" / "frames")
    cand = _config(tmp_path, static_modelset_dir, "static", "tracker: {memory_dtype: float32, max_cond_frames: 2}\n")
    exact = _config(tmp_path, modelset_dir, "dynamic", "tracker: {memory_dtype: float32}\n")
    code, out, err = _run(["--candidate", cand, "--exact", exact, "--video", video, "--point", "420,250",
                           "--max-frames", "3", "--min-iou", "0.999", "--out", str(tmp_path / "f")], capsys)
    assert code == 0, out + err
    report = json.loads((tmp_path / "f" / "fidelity.json").read_text())
    assert report["model"] != report["exact_model"]
    assert report["directions"]["forward"]["1"]["max_logit_diff"] < 1e-5
