"""What the tracker keeps about a video: its objects, their prompts and memory banks, the cached image
features; and what it answers per frame."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.memory import ObjectMemory
from engine.prefetch import FramePrefetcher
from engine.video import FrameSource


@dataclass
class FrameFeatures:
    """The image encoder's outputs: numpy arrays, or DeviceTensors on a stage set that keeps them on its device."""

    vision_feat: Any  # [1, 256, h, w]
    high_res_feat0: Any
    high_res_feat1: Any


@dataclass
class ObjectState:
    obj_id: int
    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model-space coords, labels
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # S x S bool mask prompts
    bank: ObjectMemory = field(default_factory=ObjectMemory)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse
    policy_state: Any = None  # what the tracking policy keeps per object (SAMURAI: its Kalman filter)


class InferenceState:
    """Everything the tracker knows about one video."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.objects: OrderedDict[int, ObjectState] = OrderedDict()
        self.cached: tuple[int, FrameFeatures] | None = None
        self.correct_as_cond = False  # streams make every correction a conditioning frame
        self.bounded = False  # drop tracked frames the memory rules can no longer reach (streams, or by config)
        self.inputs: FramePrefetcher | None = None  # model inputs of frames; the next one prepared ahead
        self.next_frame: int | None = None  # that frame, while propagate_in_video runs

    @property
    def num_frames(self) -> int | None:
        return self.source.num_frames

    @property
    def video_hw(self) -> tuple[int, int]:
        return self.source.height, self.source.width

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    def memory_bytes(self) -> int:
        feats = 0 if self.cached is None else sum(a.nbytes for a in vars(self.cached[1]).values())
        return feats + sum(o.bank.nbytes() for o in self.objects.values())

    def stored_frames(self) -> int:
        return sum(len(o.bank.cond) + len(o.bank.non_cond) + len(o.bank.temp_cond) + len(o.bank.temp_non_cond)
                   for o in self.objects.values())


@dataclass
class FrameResult:
    """Masks of every object on one frame. Unpacks as (frame_idx, obj_ids, masks) like the reference."""

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray  # [n_obj, H, W] bool at the video's size
    low_res_logits: np.ndarray  # [n_obj, h4, w4] float32 (model's mask resolution)
    object_scores: np.ndarray  # [n_obj] float32 (> 0: the object is present)
    video_logits: np.ndarray | None = None  # [n_obj, H, W], when asked for

    def __iter__(self):
        return iter((self.frame_idx, self.obj_ids, self.masks))
