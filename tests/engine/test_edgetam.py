"""EdgeTAM through the same engine: export, stage parity, and whole-clip parity with EdgeTAM's own predictor.

EdgeTAM's reference imports as `sam2` like Meta's, so its PyTorch side runs in a child process
(tests/engine/edgetam_child.py) that exports the calibrated model sets and records the reference runs;
this process only runs the engine on what the child wrote. The same checks as SAM 2's parity suite apply:
IoU >= 0.99 on every object-frame where either mask is non-empty, the 99.9th percentile of the low-res
logit difference <= 1e-2, the same presence decisions, and masks that neither flood nor vanish.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendConfig
from engine.config import TrackerSettings
from engine.errors import ExportError
from engine.export.reference_env import ENV_VAR, edgetam_dir
from engine.modelset import ModelSet
from engine.stages import StageSet
from engine.tracker import Tracker
from tests.engine.edgetam_child import write_spec
from tests.engine.edgetam_scenarios import IMAGE_SIZE, SCENARIOS
from tests.engine.parity import compare, run_engine
from tests.engine.test_tracker_parity import BACKENDS, RESULTS, check, mask_of, parity_table
from tests.prebuild import BACKGROUND

ROOT = Path(__file__).resolve().parents[2]
STAGE_PARITY = 1e-4


def _require_reference() -> None:
    if not (edgetam_dir() / "sam2" / "configs" / "edgetam.yaml").is_file():
        pytest.skip(f"EdgeTAM's reference is not installed at {edgetam_dir()} (README set-up); "
                    ".ci/run installs it")


@pytest.fixture(scope="module")
def edgetam_runs(clips, tmp_path_factory) -> dict:
    """The child's model sets (by calibration) and reference runs (by scenario): made in the background from the
    start of the run (tests/prebuild.py), or here."""
    _require_reference()
    out = BACKGROUND.wait("edgetam")
    if out is None:
        out = tmp_path_factory.mktemp("edgetam")
        proc = subprocess.run([sys.executable, "-m", "tests.engine.edgetam_child", str(write_spec(out, clips))],
                              cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-4000:]
    result = pickle.loads((out / "reference.pkl").read_bytes())
    result["sets"] = {name: ModelSet.load(out / name, verify_checksums=True) for name in [*SCENARIOS, "present_static"]}
    return result


def test_manifest_names_the_family_and_its_architecture(edgetam_runs):
    m = edgetam_runs["sets"]["present"].manifest
    assert (m.variant, m.family) == ("edgetam", "edgetam")
    arch = m.architecture
    assert arch["perceiver"]["latents_global"] == 256 and arch["perceiver"]["latents_2d"] == 256
    assert arch["memory_attention_layers"] == 2 and arch["rope"]["key_grid"] == [16, 16]
    assert m.memory_grid == (1, 512)  # a memory is the perceiver's 512 latents, not the 32 x 32 grid
    assert m.rules.num_maskmem == 7 and not m.rules.no_obj_embed_spatial


def test_checkpoint_round_trip(edgetam_runs):
    """A checkpoint in Meta's layout ({"model": state_dict}) loads every EdgeTAM weight, RepViT's included."""
    ck = edgetam_runs["checkpoint"]
    assert ck["equal"] and ck["keys"] > 500
    assert ck["weights"]["source"] == "checkpoint" and len(ck["weights"]["sha256"]) == 64


def test_stage_parity_with_pytorch(edgetam_runs):
    for name, rows in edgetam_runs["stage_parity"].items():
        assert {r[0] for r in rows} == {"image_encoder", "mask_decoder", "memory_attention", "memory_encoder"}
        worst = max(rows, key=lambda r: r[4])
        assert worst[4] <= STAGE_PARITY, (name, worst)


@pytest.fixture(scope="module", params=list(BACKENDS))
def backend(request) -> str:
    return request.param


@pytest.mark.parametrize("scenario", [s for group in SCENARIOS.values() for s in group], ids=lambda s: s.name)
def test_parity_with_edgetams_predictor(scenario, backend, edgetam_runs, clips):
    calibration = next(name for name, group in SCENARIOS.items() if scenario in group)
    ms = edgetam_runs["sets"][calibration]
    tracker = Tracker(ms, StageSet.load(ms, BACKENDS[backend]), TrackerSettings())
    cmp = compare(run_engine(tracker, scenario, clips[scenario.clip], mask_of),
                  edgetam_runs["reference"][scenario.name])
    RESULTS[f"edgetam: {scenario.name} | {backend}"] = cmp
    if calibration == "absent":  # every object-frame absent: empty masks, the no-object pointer in memory
        assert cmp.present == 0 and cmp.absent > 0 and cmp.presence_disagreements == 0, cmp
        assert cmp.p999_logit_diff <= 1e-2, cmp
    else:
        check(cmp, scenario)


def test_refuses_a_missing_reference(tmp_path):
    env = {**os.environ, ENV_VAR: str(tmp_path / "nowhere")}
    proc = subprocess.run([sys.executable, "-m", "engine.export", "--variant", "edgetam", "--image-size", "512",
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "edgetam-dimos" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_one_process_holds_one_sam2_package():
    """Meta's sam2 is imported here (the SAM 2 tests use it): EdgeTAM must then be refused, not mixed in."""
    pytest.importorskip("sam2")
    _require_reference()
    from engine.export.reference_env import activate
    from engine.variants import get_variant

    with pytest.raises(ExportError, match="process of its own"):
        activate(get_variant("edgetam"))


def test_latent_memories_through_the_numpy_core(edgetam_runs):
    """The tracker stores what the memory encoder returns: [64, 1, 512] latents per frame."""
    ms = edgetam_runs["sets"]["present"]
    tracker = Tracker(ms, StageSet.load(ms, BackendConfig(name="onnxruntime", device="cpu")), TrackerSettings())
    assert tracker.bytes_per_stored_frame() == (IMAGE_SIZE // 4) ** 2 * 4 + 256 * 4 + 64 * 512 * 2
    frame = np.full((240, 320, 3), 128, np.uint8)
    stream = tracker.stream()
    stream.track(frame)
    r = stream.add_new_points_or_box(1, points=[[160.0, 120.0]], labels=[1])
    assert r.masks.shape == (1, 240, 320)
    r = stream.track(frame)
    assert r.obj_ids == [1] and np.isfinite(r.low_res_logits).all()


def test_the_parity_check_sees_the_predictor_generation(edgetam_runs, clips):
    """Under Meta's current rule (a corrected frame is tracked anew when propagation passes it) the engine
    departs from EdgeTAM's predictor on a correction of a tracked frame: the manifest's rule matters."""
    from dataclasses import replace

    ms = edgetam_runs["sets"]["present"]
    assert ms.manifest.rules.retrack_corrected_frames is False
    tracker = Tracker(ms, StageSet.load(ms, BACKENDS["onnxruntime-cpu"]), TrackerSettings())
    tracker.rules = replace(tracker.rules, retrack_corrected_frames=True)
    scenario = next(s for s in SCENARIOS["present"] if s.name == "forward, correct far back, reverse")
    cmp = compare(run_engine(tracker, scenario, clips[scenario.clip], mask_of),
                  edgetam_runs["reference"][scenario.name])
    RESULTS[f"edgetam: {scenario.name} | onnxruntime-cpu, Meta's current rule (must fail)"] = cmp
    with pytest.raises(AssertionError):
        check(cmp, scenario)


@pytest.mark.parametrize("name", ["click", "negative+refine"])
def test_static_set_matches_edgetams_predictor(name, edgetam_runs, clips):
    """EdgeTAM's static set (latent memory slots masked as SAM 2's) within its 2 prompted-frame slots."""
    ms = edgetam_runs["sets"]["present_static"]
    assert ms.manifest.static is not None and not ms.manifest.dynamic_axes()
    tracker = Tracker(ms, StageSet.load(ms, BACKENDS["openvino-cpu-f32"]), TrackerSettings(max_cond_frames=2))
    scenario = next(s for s in SCENARIOS["present"] if s.name == name)
    cmp = compare(run_engine(tracker, scenario, clips[scenario.clip], mask_of), edgetam_runs["reference"][name])
    RESULTS[f"edgetam: {name} | openvino-cpu-f32, static set"] = cmp
    check(cmp, scenario)


def test_track_cli_and_yaml_config(edgetam_runs, clips, tmp_path, capsys):
    """The same CLI and YAML as SAM 2: the model set alone says EdgeTAM."""
    from engine.cli import run_cli
    from engine.track import main as track_main

    cfg = tmp_path / "edgetam.yaml"
    cfg.write_text(f"model: {edgetam_runs['sets']['present'].root}\nbackend: {{name: openvino, device: CPU}}\n")
    out = tmp_path / "out"
    code = run_cli(track_main, ["--config", str(cfg), "--video", str(clips["davis"]), "--point", "420,250",
                                "--max-frames", "3", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    tracker = Tracker.from_config(cfg)
    assert tracker.describe()["variant"] == "edgetam"
    state = tracker.init_state(str(clips["davis"]))
    tracker.add_new_points_or_box(state, 0, 1, points=[[420.0, 250.0]], labels=[1])
    last = list(tracker.propagate_in_video(state, max_frame_num_to_track=3))[-1]
    from PIL import Image

    written = np.array(Image.open(out / "masks" / "00003.png")) == 1
    assert last.frame_idx == 3 and 0.05 < last.masks[0].mean() < 0.6
    assert np.array_equal(written, last.masks[0])


def test_print_edgetam_parity_table(report):
    """Not a check: reports EdgeTAM's rows of the parity table (the end of the run's log shows it)."""
    report(parity_table("edgetam:"))
