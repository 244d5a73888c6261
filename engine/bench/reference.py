"""The PyTorch reference on the model set's own weights, rebuilt from its provenance (timing only)."""

from __future__ import annotations

import time


def torch_reference(ms, args):
    from engine.export.build import rebuild_model, require_export_deps
    from engine.export.reference import ReferenceTracker
    from engine.variants import get_variant

    require_export_deps(get_variant(ms.variant))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    built = rebuild_model(ms, args.checkpoint)
    ref = ReferenceTracker(built)
    ref.profile()
    describe = {"runtime": "torch", "version": str(torch.__version__), "device": "CPU", "provider": "eager",
                "precision": "f32 (memory features bf16)", "threads": torch.get_num_threads()}
    return ref, describe, time.perf_counter() - t0
