"""Unattended tracking end to end through `engine.track`, on the test model set (seeded weights): the
ground-truth clip with the `motion` detector, scored with motmetrics; HOG on real footage.

Seeded weights do not segment: their masks do not follow the shapes. So identity is scored on what the
engine says about each detection it matched (the object id it gave the detection's box on that frame),
which is the policy's work on a real SAM 2 session (new objects added to the running session, memory never
reset). With a trained checkpoint, score the mask boxes instead (benchmarks/identity.py --boxes mask)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.bench.identity_clip import IdentityClip, ids_per_actor, score_identity
from engine.track import main as track_main
from tests.conftest import require_data

EVERY = 2
ADMIT_WITHIN = 3 * EVERY  # frames after an object is half in view


def ort_config(tmp_path: Path, modelset_dir: Path) -> Path:
    cfg = tmp_path / "ort.yaml"
    cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    return cfg


def test_objects_are_found_kept_and_recognised_when_they_return(modelset_dir, tmp_path, report):
    clip = IdentityClip()
    frames = clip.write_frames(tmp_path / "clip")
    out = tmp_path / "out"
    assert track_main(["--config", str(ort_config(tmp_path, modelset_dir)), "--video", str(frames), "--detector",
                       "motion", "--detect-every", str(EVERY), "--out", str(out), "--quiet", "--no-video"]) == 0
    result = json.loads((out / "masks.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    metrics = score_identity(result["frames"], clip, EVERY)
    ids = ids_per_actor(result["frames"], clip, EVERY)
    # every actor admitted within ADMIT_WITHIN frames of being half in view
    for name in ("A", "B", "C"):
        first_visible = min(t for t in range(clip.num_frames) if name in clip.boxes(t))
        assert name in ids and min(ids[name].values()) - first_visible <= ADMIT_WITHIN, (name, ids.get(name))
    # ids never switch while an object is visible, and A, back from outside the frame, has its old id
    assert metrics["num_switches"] == 0, metrics
    assert len(ids["A"]) == 1 and max(ids["A"].values()) < 44 < max(
        f["frame"] for f in result["frames"] if any(o.get("det_box") and o["obj_id"] in ids["A"]
                                                    for o in f["objects"]))
    assert metrics["idf1"] > 0.8, metrics  # the misses: frames where two shapes cross make one motion blob
    # labels and events in the outputs
    assert {o["label"] for f in result["frames"] for o in f["objects"]} == {"motion"}
    entered = [e for e in summary["events"] if e["event"] == "entered"]
    assert len(entered) == 3 and all(o["origin"] == "detector" for o in summary["objects"].values())
    assert summary["detector"]["kind"] == "motion" and summary["detector"]["runs"] == clip.num_frames // EVERY
    report(f"identity on the ground-truth clip (engine.track --detector motion --detect-every {EVERY}, seeded "
           f"weights, detection boxes): IDF1 {metrics['idf1']:.3f}, ID switches {metrics['num_switches']:.0f}, "
           f"fragmentations {metrics['num_fragmentations']:.0f}, objects {len(summary['objects'])} for 3 actors")


def test_hog_finds_people_in_real_footage_through_engine_track(modelset_dir, tmp_path):
    data = require_data()
    out = tmp_path / "out"
    assert track_main(["--config", str(ort_config(tmp_path, modelset_dir)), "--video",
                       str(data / "videos" / "bedroom.mp4"), "--detector", "hog-people", "--detector-threshold",
                       "0.3", "--detect-every", "4", "--max-frames", "19", "--out", str(out), "--quiet",
                       "--no-video"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    result = json.loads((out / "masks.json").read_text())
    assert summary["complete"] and summary["frames"] == 20
    assert summary["objects"] and all(o["label"] == "person" and o["origin"] == "detector"
                                      for o in summary["objects"].values())
    labelled = [o for f in result["frames"] for o in f["objects"]]
    assert labelled and all(o["label"] == "person" and o["det_score"] >= 0.3 for o in labelled)
    assert summary["detector"]["kind"] == "hog-people" and summary["detector"]["runs"] == 5


def test_a_detector_run_names_what_cannot_be(modelset_dir, tmp_path):
    from engine.errors import ConfigError, InputError

    cfg = str(ort_config(tmp_path, modelset_dir))
    with pytest.raises(ConfigError, match="--detect-every needs a detector"):
        track_main(["--config", cfg, "--video", "x", "--point", "1,1", "--detect-every", "2", "--out", str(tmp_path)])
    frames = IdentityClip(num_frames=4).write_frames(tmp_path / "clip")
    with pytest.raises(InputError, match="--reverse cannot be used with a detector"):
        track_main(["--config", cfg, "--video", str(frames), "--detector", "motion", "--reverse", "--out",
                    str(tmp_path / "o")])
