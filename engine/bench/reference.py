"""The PyTorch reference on the model set's own weights, rebuilt from its provenance (timing only)."""

from __future__ import annotations

import time

from engine.errors import ConfigError


def torch_reference(ms, args):
    from engine.export.build import Calibration, build_model, require_export_deps
    from engine.export.reference import ReferenceTracker
    from engine.modelset import file_sha256
    from engine.variants import get_variant

    variant = get_variant(ms.variant)
    require_export_deps(variant)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = ms.manifest.provenance.get("weights", {})
    t0 = time.perf_counter()
    if weights.get("source") == "checkpoint":
        if args.checkpoint is None:
            raise ConfigError("this model set was exported from a checkpoint: pass --checkpoint with the same .pt "
                              "for --reference torch")
        if file_sha256(args.checkpoint) != weights.get("sha256"):
            raise ConfigError(f"--checkpoint {args.checkpoint} is not the checkpoint this model set was made from")
        built = build_model(variant, ms.manifest.image_size, checkpoint=args.checkpoint)
    else:
        overrides = weights.get("overrides") or {}
        if any(not isinstance(v, (int, float)) for v in overrides.values()):
            raise ConfigError(f"cannot rebuild the reference: the model set's weight overrides {overrides} "
                              f"are not plain values")
        cal = weights.get("calibration")
        built = build_model(variant, ms.manifest.image_size, seed=int(weights.get("seed", 0)),
                            param_overrides=overrides or None, calibration=Calibration(**cal) if cal else None)
    ref = ReferenceTracker(built)
    ref.profile()
    describe = {"runtime": "torch", "version": str(torch.__version__), "device": "CPU", "provider": "eager",
                "precision": "f32 (memory features bf16)", "threads": torch.get_num_threads()}
    return ref, describe, time.perf_counter() - t0
