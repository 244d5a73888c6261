"""SAMURAI's own video predictor (absolutely-not-samurai, in .refs/samurai) on given weights, as a child
process: its package imports as `sam2`, the name under which the test process holds Meta's.

    python -m tests.engine.samurai_child SPEC.json
SPEC: {"weights": .pt state dict, "image_size": S, "frames": JPEG folder, "click": [x, y], "params": {...},
       "out": .npz}. It builds SAM 2.1-tiny from SAMURAI's config (samurai_mode on, the params given), loads
the weights, reads the frames itself, clicks object 1 on frame 0 and propagates; it writes every frame's
video-resolution logits, each tracked frame's scores and how many frames its filter has been stable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, str(Path(spec.get("ref", ROOT / ".refs" / "samurai"))))
    import numpy as np
    import sam2
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    # holes filled as on a GPU, as the parity suite does for Meta's predictor
    from engine.export.reference import hole_filling_on_cpu

    assert "samurai" in sam2.__file__ or ".refs" in sam2.__file__, sam2.__file__
    size = int(spec["image_size"])
    feat = size // 16
    overrides = [f"++model.image_size={size}",
                 f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
                 f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]"]
    overrides += [f"++model.{k}={v}" for k, v in spec["params"].items()]
    predictor = build_sam2_video_predictor("configs/samurai/sam2.1_hiera_t.yaml", None, device="cpu",
                                           hydra_overrides_extra=overrides)
    state_dict = torch.load(spec["weights"], map_location="cpu")
    missing, unexpected = predictor.load_state_dict(state_dict, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    predictor.eval()
    with torch.inference_mode(), hole_filling_on_cpu():
        state = predictor.init_state(spec["frames"])
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=np.array([spec["click"]], np.float32),
                                        labels=np.array([1], np.int32))
        logits = {}
        for frame_idx, _, masks in predictor.propagate_in_video(state):
            logits[frame_idx] = masks[0, 0].float().numpy()
        out = state["output_dict"]["non_cond_frame_outputs"]
        scores = {t: [float(o["best_iou_score"]), float(o["object_score_logits"]),
                      None if o.get("kf_score") is None else float(o["kf_score"])] for t, o in out.items()}
    np.savez_compressed(spec["out"], logits=np.stack([logits[t] for t in sorted(logits)]),
                        frames=np.array(sorted(logits)), scores=json.dumps(scores), stable=predictor.stable_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
