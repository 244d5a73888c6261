"""tracker.policy samurai against SAMURAI's own predictor (absolutely-not-samurai 1.0.0, in .refs/samurai,
run in a child process: tests/engine/samurai_child.py) on the same seeded weights, reading its own frames.

The clip makes the policy show with seeded weights: a textured patch moving over black (on whole frames
the random decoder's candidates all span the frame, so a box filter cannot tell them apart), a filter
stable after one frame with its motion score weighted 0.9, and a memory threshold on the object score that
rejects some frames. Both counts against Meta's rules on the same clip must be above zero, so the parity
is SAMURAI's, not Meta's path in disguise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.config import TrackerSettings
from engine.policies.samurai import SamuraiSettings
from tests.conftest import require_data, require_part

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / ".refs" / "samurai"
PARAMS = {"stable_frames_threshold": 1, "kf_score_weight": 0.9, "memory_bank_obj_score_threshold": 0.0735}
CLICK = [200, 240]
FRAMES = 30


@pytest.fixture(scope="module")
def patch_clip(tmp_path_factory) -> Path:
    """DAVIS frames' middle, as a 300 x 280 patch moving right over black, 12 pixels a frame (JPEG, 95)."""
    import cv2

    data = require_data()
    folder = tmp_path_factory.mktemp("samurai-clip")
    for i, src in enumerate(sorted((data / "davis-car-shadow" / "frames").glob("*.jpg"))[:FRAMES]):
        frame = cv2.imread(str(src))
        out = np.zeros_like(frame)
        x = 60 + 12 * i
        out[100:380, x:x + 300] = frame[100:380, 300:600]
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


@pytest.fixture(scope="module")
def reference(built_tiny, patch_clip, tmp_path_factory) -> dict:
    require_part((REF / "sam2" / "configs" / "samurai").is_dir(),
                 f"SAMURAI's reference is not installed at {REF}: SAM2_BUILD_CUDA=0 pip install --no-deps "
                 f"--no-build-isolation --target .refs/samurai 'absolutely-not-samurai==1.0.0' loguru (the README's "
                 f"set-up does)")
    import torch

    work = tmp_path_factory.mktemp("samurai-ref")
    torch.save(built_tiny.model.state_dict(), work / "weights.pt")
    spec = work / "spec.json"
    spec.write_text(json.dumps({"weights": str(work / "weights.pt"), "image_size": built_tiny.image_size,
                                "frames": str(patch_clip), "click": CLICK, "params": PARAMS,
                                "out": str(work / "ref.npz"), "ref": str(REF)}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.engine.samurai_child", str(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(work / "ref.npz")
    return {"logits": ref["logits"], "frames": ref["frames"], "stable": int(ref["stable"])}


def track(modelset, backend: str, policy: str):
    from engine.stages import StageSet
    from engine.tracker import Tracker

    device = "cpu" if backend == "onnxruntime" else "CPU"
    cfg_backend = {"name": backend, "device": device}
    from engine.config import parse_config

    cfg = parse_config({"backend": cfg_backend})
    samurai = SamuraiSettings(**PARAMS) if policy == "samurai" else None
    tracker = Tracker(modelset, StageSet.load(modelset, cfg), TrackerSettings(policy=policy, samurai=samurai))
    tracker.return_video_logits = True
    return tracker


def run(tracker, clip: Path):
    state = tracker.init_state(str(clip))
    tracker.add_new_points_or_box(state, 0, 1, points=[CLICK], labels=[1])
    logits = {r.frame_idx: r.video_logits[0] for r in tracker.propagate_in_video(state)}
    return state, logits


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_samurai_policy_matches_samurai_s_predictor_and_departs_from_meta_s(modelset, patch_clip, reference,
                                                                           backend, report):
    pytest.importorskip(backend)
    samurai = track(modelset, backend, "samurai")
    state, logits = run(samurai, patch_clip)
    meta = track(modelset, backend, "meta")
    meta_state, _ = run(meta, patch_clip)
    ious, diffs, cover = [], [], []
    for k, t in enumerate(reference["frames"]):
        ref, mine = reference["logits"][k], logits[int(t)]
        a, b = mine > 0, ref > 0
        ious.append((a & b).sum() / max((a | b).sum(), 1))
        diffs.append(float(np.abs(mine - ref).max()))
        cover.append(b.mean())
    assert len(ious) == FRAMES
    assert 0.2 < min(cover) and max(cover) < 0.9  # moderate masks on every frame: IoU means something
    assert min(ious) >= 0.999 and max(diffs) < 1e-3, (min(ious), max(diffs))
    # the policy did its own work: chosen masks and memories differ from Meta's rules on the same clip
    bank, meta_bank = state.objects[1].bank, meta_state.objects[1].bank
    chosen = [t for t in bank.non_cond if bank.non_cond[t].candidate != meta_bank.non_cond[t].candidate]
    memory = [t for t in range(1, FRAMES)
              if samurai.planner.plan(bank, t, FRAMES, False).memory_frames
              != meta.planner.plan(bank, t, FRAMES, False).memory_frames]
    assert len(chosen) > 0 and len(memory) > 0, (chosen, memory)
    assert state.objects[1].policy_state.stable_frames == reference["stable"]
    report(f"SAMURAI policy vs SAMURAI's predictor ({backend}, {FRAMES} frames of a moving DAVIS patch, 256², seeded "
           f"weights, {PARAMS}): min IoU {min(ious):.6f}, max |logit diff| {max(diffs):.2e}, mask cover "
           f"{min(cover):.2f}-{max(cover):.2f}; against Meta's rules: chosen mask differs on {len(chosen)} frames, "
           f"memory on {len(memory)}")


def test_a_static_set_tracks_by_samurai_s_policy_too(static_modelset_dir, patch_clip, reference):
    """The policy selects as many memories as Meta's rule, so a static set's slots hold them."""
    from engine.config import parse_config
    from engine.modelset import ModelSet
    from engine.stages import StageSet
    from engine.tracker import Tracker

    pytest.importorskip("onnxruntime")
    static = ModelSet.load(static_modelset_dir)
    tracker = Tracker(static, StageSet.load(static, parse_config({"backend": {"name": "onnxruntime", "device": "cpu"}})),
                      TrackerSettings(policy="samurai", samurai=SamuraiSettings(**PARAMS), max_cond_frames=2))
    tracker.return_video_logits = True
    _, logits = run(tracker, patch_clip)
    ious = []
    for k, t in enumerate(reference["frames"]):
        a, b = logits[int(t)] > 0, reference["logits"][k] > 0
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    assert min(ious) >= 0.999, min(ious)
