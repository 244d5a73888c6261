"""The EdgeTAM half of tests/engine/test_edgetam.py, run as a child process.

EdgeTAM's reference package imports as `sam2`, the name under which the pytest process already holds
Meta's package (engine/export/reference_env.py), so everything that needs EdgeTAM's PyTorch code runs here:
build each calibrated model, export it as a model set, check its stages against PyTorch, and run
EdgeTAM's own video predictor on the test scenarios (it reads its frames from the JPEG folders itself).

    python -m tests.engine.edgetam_child SPEC.json   (SPEC: {"out": dir, "clips": {name: dir}})
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

from tests.engine.edgetam_scenarios import CALIBRATIONS, IMAGE_SIZE, PER_OBJECT, SCENARIOS, SEED, mask_of
from tests.engine.parity import run_reference, run_reference_per_object


def write_spec(out: Path, clips: dict[str, Path], **extra) -> Path:
    """A background job's spec (this child's, or tests/prebuild.py's reference runs): it writes its results
    into `out` and reads the clips named; `extra` adds job-specific fields."""
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "clips": {k: str(v) for k, v in clips.items()}, **extra}))
    return spec


def main(spec_path: str) -> int:
    from engine.export.build import Calibration, build_model
    from engine.export.exporter import export_model_set
    from engine.export.reference import ReferenceTracker
    from engine.export.verify import verify_model_set
    from engine.modelset import ModelSet
    from engine.static import StaticShapes
    from engine.variants import get_variant

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    clips = {k: Path(v) for k, v in spec["clips"].items()}
    result: dict = {"stage_parity": {}, "reference": {}}
    for name, (offset, shift) in CALIBRATIONS.items():
        built = build_model(get_variant("edgetam"), IMAGE_SIZE, seed=SEED, calibration=Calibration(offset, shift))
        export_model_set(built, out / name, log=lambda _msg: None)
        rows = verify_model_set(built, ModelSet.load(out / name), log=lambda _msg: None)
        result["stage_parity"][name] = [(r.stage, r.case, r.backend, r.output, r.rel) for r in rows]
        if name == "present":  # the same weights with fixed shapes (2 prompted-frame slots, 8 point slots)
            static = StaticShapes.for_model(built.model.num_maskmem, built.model.max_obj_ptrs_in_encoder, 2, 8)
            export_model_set(built, out / "present_static", log=lambda _msg: None, static=static)
        ref = ReferenceTracker(built)
        for scenario in SCENARIOS[name]:
            run = run_reference_per_object if scenario.name in PER_OBJECT else run_reference
            result["reference"][scenario.name] = run(ref, scenario, clips[scenario.clip], mask_of)
    # --checkpoint: the weights saved as Meta's checkpoints hold them ({"model": state_dict}) load back whole
    import torch

    ckpt = out / "edgetam.pt"
    torch.save({"model": built.model.state_dict()}, ckpt)
    loaded = build_model(get_variant("edgetam"), IMAGE_SIZE, checkpoint=ckpt)
    mine, theirs = built.model.state_dict(), loaded.model.state_dict()
    result["checkpoint"] = {"weights": loaded.weights, "keys": len(mine),
                            "equal": mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)}
    (out / "reference.pkl").write_bytes(pickle.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
