"""Meta's SAM2VideoPredictor on the same weights: the parity reference.

For parity the reference loads its own frames from a JPEG folder with its own loader (`init_state`),
never the engine's tensors. The benchmark, which only times it, may hand it the engine's frames instead
(`init_state_with_engine_frames`: Meta's video-file loader needs decord). The reference's hole filling,
which needs a CUDA extension and is silently skipped on CPU, gets an OpenCV connected-components
implementation so that it runs as it does on a GPU.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.export.build import BuiltModel
from engine.preprocess import frame_to_input
from engine.video import FrameSource, open_video


def _connected_components_cpu(mask):
    """Stand-in for sam2._C.get_connected_components: 8-connected labels and per-pixel component area."""
    import torch

    m = mask.detach().cpu().numpy().astype(np.uint8)
    labels = np.zeros(m.shape, np.int32)
    areas = np.zeros(m.shape, np.int32)
    for b in range(m.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(m[b, 0], connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
        area[0] = 0
        labels[b, 0] = lab
        areas[b, 0] = area[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def _perceive_each_object(perceiver: Any) -> None:
    """EdgeTAM's predictor encodes the memories of all objects as one batch, and its perceiver cannot take a
    batch: `forward_2d` views an expanded tensor, which fails for more than one object (edgetam-dimos 1.0.1).
    Running it once per object is what a batch of one computes; the engine's memory encoder does the same."""
    import torch

    batched = perceiver.forward

    def forward(x, pos=None):
        if x.shape[0] == 1:
            return batched(x, pos)
        outs = [batched(x[i:i + 1], None if pos is None else pos[i:i + 1]) for i in range(x.shape[0])]
        latents = torch.cat([o[0] for o in outs])
        return latents, (None if pos is None else torch.cat([o[1] for o in outs]))

    perceiver.forward = forward


class _LazyFrames:
    """Indexable like the reference's image tensor; preprocesses frames on demand."""

    def __init__(self, source: FrameSource, image_size: int) -> None:
        self.source = source
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        import torch

        return torch.from_numpy(frame_to_input(self.source.get(int(index)), self.image_size)[0])


@contextlib.contextmanager
def hole_filling_on_cpu() -> Iterator[None]:
    import sam2.utils.misc as misc

    original = misc.get_connected_components
    misc.get_connected_components = _connected_components_cpu
    try:
        yield
    finally:
        misc.get_connected_components = original


class ReferenceTracker:
    """Thin driver of SAM2VideoPredictor; `predictor` is the torch model itself, for direct calls."""

    def __init__(self, built: BuiltModel, fill_holes: bool = True) -> None:
        self.predictor = built.model
        if getattr(built.model, "spatial_perceiver", None) is not None:
            _perceive_each_object(built.model.spatial_perceiver)
        self.image_size = built.image_size
        self.fill_holes = fill_holes
        self.stage_log: list[tuple[str, float]] | None = None
        self.last_memory: tuple[int, int] = (0, 0)  # (memory frames, pointers) of the last memory attention

    def profile(self) -> None:
        """Log (stage, seconds) of every stage module call into `stage_log`, as the engine's profiler does
        (the prompt encoder, a few microseconds, is not counted)."""
        self.stage_log = []
        m = self.predictor
        modules = {"image_encoder": m.image_encoder, "memory_attention": m.memory_attention,
                   "mask_decoder": m.sam_mask_decoder, "memory_encoder": m.memory_encoder}
        for name, module in modules.items():
            def pre(_module, _args, name=name):
                self._started[name] = time.perf_counter()

            def post(_module, _args, _out, name=name):
                if self.stage_log is not None:
                    self.stage_log.append((name, time.perf_counter() - self._started.pop(name)))

            module.register_forward_pre_hook(pre)
            module.register_forward_hook(post)
        self._started: dict[str, float] = {}
        perceiver = getattr(m, "spatial_perceiver", None)  # EdgeTAM: a memory is the perceiver's latents
        hw = (self.image_size // 16) ** 2 if perceiver is None else perceiver.num_latents + perceiver.num_latents_2d

        def memory_size(_module, _args, kwargs):
            ptr_tokens = int(kwargs.get("num_obj_ptr_tokens", 0))
            self.last_memory = ((kwargs["memory"].shape[0] - ptr_tokens) // hw, ptr_tokens // 4)

        m.memory_attention.register_forward_pre_hook(memory_size, with_kwargs=True)

    def _ctx(self):
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        if self.fill_holes:
            stack.enter_context(hole_filling_on_cpu())
        return stack

    def init_state(self, frames_dir: str | Path, **kwargs: Any) -> dict:
        """Meta's own `init_state` on a folder of JPEG frames: it decodes and resizes them itself."""
        import sam2.utils.misc as misc

        path = Path(frames_dir)
        if not path.is_dir():
            raise ValueError(f"the reference reads a folder of JPEG frames itself; {path} is not a folder "
                             f"(decode a video file into one first)")
        misc.tqdm = lambda iterable, **_kw: iterable  # callers show their own progress
        with self._ctx():
            return self.predictor.init_state(video_path=str(path), **kwargs)

    def init_state_with_engine_frames(self, video: Any) -> dict:
        """Timing only: the reference on frames the engine decodes and preprocesses (any source)."""
        import sam2.sam2_video_predictor as svp

        source = open_video(video)
        original = svp.load_video_frames

        def load(video_path, image_size, **_kwargs):
            return _LazyFrames(source, image_size), source.height, source.width

        svp.load_video_frames = load
        try:
            with self._ctx():
                return self.predictor.init_state(video_path="<engine frames>")
        finally:
            svp.load_video_frames = original

    def add_new_points_or_box(self, state: dict, frame_idx: int, obj_id: int, **kwargs):
        with self._ctx():
            return self.predictor.add_new_points_or_box(state, frame_idx, obj_id, **kwargs)

    def add_new_mask(self, state: dict, frame_idx: int, obj_id: int, mask: np.ndarray):
        with self._ctx():
            return self.predictor.add_new_mask(state, frame_idx, obj_id, mask)

    def propagate_in_video(self, state: dict, **kwargs) -> Iterator[tuple[int, list[int], np.ndarray, np.ndarray, np.ndarray]]:
        """Yields frame_idx, obj_ids, video-res logits [n,H,W], low-res logits [n,h4,w4], object scores [n]."""
        import sam2.sam2_video_predictor as svp

        svp.tqdm = lambda iterable, **_kw: iterable  # callers show their own progress
        gen = self.predictor.propagate_in_video(state, **kwargs)
        while True:
            with self._ctx():
                try:
                    frame_idx, obj_ids, video_res = next(gen)
                except StopIteration:
                    return
            low, scores = self.frame_outputs(state, frame_idx)
            yield frame_idx, list(obj_ids), video_res[:, 0].float().numpy(), low, scores

    @staticmethod
    def frame_outputs(state: dict, frame_idx: int) -> tuple[np.ndarray, np.ndarray]:
        lows, scores = [], []
        for obj_idx in range(len(state["obj_ids"])):
            d = state["output_dict_per_obj"][obj_idx]
            out = d["cond_frame_outputs"].get(frame_idx) or d["non_cond_frame_outputs"].get(frame_idx)
            lows.append(out["pred_masks"][0, 0].float().numpy())
            scores.append(float(out["object_score_logits"].reshape(-1)[0]))
        return np.stack(lows), np.asarray(scores, np.float32)
