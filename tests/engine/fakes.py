"""A stand-in for the four stage models with the real shapes, for memory-growth tests only.

Parity and behaviour are tested on real exported models; this exists so that thousands of frames
can run through the tracker's memory logic in seconds.
"""

from __future__ import annotations

import numpy as np

from engine.modelset import ModelSet
from engine.stages import HostValues


class FakeStages(HostValues):
    def __init__(self, modelset: ModelSet, present: bool = True) -> None:
        self.modelset = modelset
        self.f = modelset.manifest.feat_size
        self.present = present
        self.calls: dict[str, int] = {}

    def run(self, name: str, inputs: dict[str, np.ndarray], keep=()) -> dict[str, np.ndarray]:
        self.calls[name] = self.calls.get(name, 0) + 1
        f = self.f
        if name == "image_encoder":
            v = float(inputs["image"].mean())
            return {"vision_feat": np.full((1, 256, f, f), v, np.float32),
                    "high_res_feat0": np.zeros((1, 32, 4 * f, 4 * f), np.float32),
                    "high_res_feat1": np.zeros((1, 64, 2 * f, 2 * f), np.float32)}
        if name == "memory_attention":
            return {"pix_feat_with_mem": inputs["curr"] + 0.01 * inputs["memory"].shape[0]}
        if name == "mask_decoder":
            masks = np.full((1, 4, 4 * f, 4 * f), -5.0, np.float32)
            masks[:, :, f:3 * f, f:3 * f] = 5.0
            return {"masks": masks, "iou": np.array([[0.5, 0.9, 0.7, 0.6]], np.float32),
                    "obj_ptr": np.ones((1, 4, 256), np.float32),
                    "object_score": np.array([[3.0 if self.present else -3.0]], np.float32)}
        if name == "memory_encoder":
            return {"maskmem_features": np.full((1, 64, f, f), 0.5, np.float32)}
        raise KeyError(name)

    def describe(self) -> dict:
        return {"fake": {"runtime": "stand-in"}}
