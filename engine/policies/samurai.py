"""SAMURAI (Yang et al., 2024, "SAMURAI: Adapting Segment Anything Model for Zero-Shot Visual Tracking with
Motion-Aware Memory") as a tracking policy, exact to its reference (absolutely-not-samurai 1.0.0).

1. **Motion-aware mask choice.** A Kalman filter follows the object's box (centre, aspect, height and their
   velocities: the constant-velocity filter of SORT/DeepSORT). While the track is young (fewer than
   `stable_frames_threshold` frames whose best predicted IoU passed `stable_ious_threshold`), the decoder's
   best candidate is taken as Meta's rule does and the filter learns from it. Once stable, each of the three
   candidates is scored `kf_score_weight` x IoU(its box, the filter's predicted box) + (1 - weight) x its
   predicted IoU, and the best is taken; its box updates the filter unless its predicted IoU is below
   `stable_ious_threshold` (then the track starts over). Boxes are read off the candidates upsampled to the
   model's input size, as the reference does.
2. **Motion-aware memory.** Of the tracked frames before the current one (back to frame 2, newest first),
   those whose predicted IoU > `memory_bank_iou_threshold`, object score > `memory_bank_obj_score_threshold`
   and motion score > `memory_bank_kf_score_threshold` (where it has one) are candidates, up to
   `memory_scan` of them; the previous frame always is one. The newest `num_maskmem - 1` candidates are the
   memories (Meta's rule takes the newest frames, whatever they are). Object pointers keep Meta's rule.
3. An object counts as appearing while its object score > `min_obj_score_logits` (SAMURAI's configs: -1;
   Meta's rule: 0): below it, its mask is empty.

The reference keeps one filter in the model: it tracks one object. Here each object has its own filter
(`ObjectState.policy_state`), so objects do not disturb each other's; with one object the two agree. A
tracked frame that is a prompted (conditioning) frame is never a candidate (the reference assumes one
prompt, on frame 0). Memory stays bounded on streams: besides Meta's window, the newest `num_maskmem - 1`
candidates are kept, which is all the rule can select.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from engine.decode import NO_OBJ_SCORE, Decoded, mix_no_obj_ptr
from engine.memory import FrameOutput, ObjectMemory

SAMURAI_KEYS = ("stable_frames_threshold", "stable_ious_threshold", "kf_score_weight", "memory_bank_iou_threshold",
                "memory_bank_obj_score_threshold", "memory_bank_kf_score_threshold", "min_obj_score_logits",
                "memory_scan")


@dataclass(frozen=True)
class SamuraiSettings:
    """The defaults of SAMURAI's configs (configs/samurai/sam2.1_hiera_*.yaml)."""

    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = 0.0
    min_obj_score_logits: float = -1.0
    memory_scan: int | None = None  # candidates collected at most; None: the model's max_obj_ptrs_in_encoder - 1


def parse_samurai(d: Any, source: str, key: str = "tracker.samurai") -> SamuraiSettings:
    from engine.config import _check_keys, _int, _where
    from engine.errors import ConfigError

    _check_keys(d, SAMURAI_KEYS, source, key)
    s = SamuraiSettings()
    for name in SAMURAI_KEYS:
        if name not in d:
            continue
        v = d[name]
        if name in ("stable_frames_threshold", "memory_scan"):
            s = replace(s, **{name: _int(v, source, f"{key}.{name}", 1, 10_000)})
            continue
        lo, hi = (0.0, 1.0) if name in ("kf_score_weight",) else (-1e6, 1e6)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or not lo <= v <= hi:
            raise ConfigError(f"{_where(source, key + '.' + name)}: value {v!r} is not allowed; expected a number "
                              f"from {lo:g} to {hi:g}")
        s = replace(s, **{name: float(v)})
    return s


class BoxKalman:
    """The constant-velocity Kalman filter on a box (x, y, a, h): x, y its centre, a its width / height, h its
    height, with their velocities; process and measurement noise scale with the height (DeepSORT's choice)."""

    POS, VEL = 1.0 / 20, 1.0 / 160

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = z[3]
        std = [2 * self.POS * h, 2 * self.POS * h, 1e-2, 2 * self.POS * h,
               10 * self.VEL * h, 10 * self.VEL * h, 1e-5, 10 * self.VEL * h]
        return np.r_[z, np.zeros(4)], np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        q = np.diag(np.square([self.POS * h, self.POS * h, 1e-2, self.POS * h,
                               self.VEL * h, self.VEL * h, 1e-5, self.VEL * h]))
        return self.F @ mean, self.F @ cov @ self.F.T + q

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.square([self.POS * h, self.POS * h, 1e-1, self.POS * h]))
        s = self.H @ cov @ self.H.T + r
        gain = np.linalg.solve(s, (cov @ self.H.T).T).T  # cov H^T s^-1 (s is symmetric)
        return mean + gain @ (z - self.H @ mean), cov - gain @ s @ gain.T


def to_xyah(box: list[float]) -> np.ndarray:
    """[x0, y0, x1, y1] -> [x, y, a, h]; a box of no height counts as height 1 (as the reference)."""
    x0, y0, x1, y1 = box
    h = (y1 - y0) or 1
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / h, h], np.float64)


def to_xyxy(xyah: np.ndarray) -> list[float]:
    x, y, a, h = xyah[:4]
    return [x - a * h / 2, y - h / 2, x + a * h / 2, y + h / 2]


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of the filter's box and a candidate's; an empty candidate ([0, 0, 0, 0]) scores 0."""
    if list(b) == [0, 0, 0, 0]:
        return 0.0
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union != 0 else 0.0


def candidate_box(low_res: np.ndarray, size: int) -> list[int]:
    """The box of a candidate mask at the model's input size (bilinear, half-pixel centres, as torch's
    interpolate with align_corners=False): x0, y0, x1, y1 of the pixels above 0, inclusive; [0, 0, 0, 0] when
    none is."""
    high = cv2.resize(low_res.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    rows = np.flatnonzero((high > 0).any(axis=1))
    if rows.size == 0:
        return [0, 0, 0, 0]
    cols = np.flatnonzero((high > 0).any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


@dataclass
class Track:
    """One object's filter and how long its track has been stable."""

    mean: np.ndarray | None = None
    cov: np.ndarray | None = None
    stable_frames: int = 0
    overruled: int = 0  # frames where the motion score changed the choice from the best predicted IoU


class SamuraiPolicy:
    name = "samurai"

    def __init__(self, rules: Any, settings: SamuraiSettings, image_size: int) -> None:
        self.rules = rules
        self.settings = settings
        self.image_size = image_size
        self.kf = BoxKalman()
        self.scan = settings.memory_scan or max(rules.max_obj_ptrs_in_encoder - 1, 1)

    # ------------------------------------------------------------------ the mask
    def select(self, outputs: dict[str, np.ndarray], multimask: bool, obj: Any, no_obj_ptr: np.ndarray) -> Decoded:
        rules, s = self.rules, self.settings
        masks, ious = outputs["masks"][0], outputs["iou"][0]
        ptrs = outputs["obj_ptr"][0]
        score = float(outputs["object_score"].reshape(-1)[0])
        appearing = score > s.min_obj_score_logits if rules.pred_obj_scores else True
        kf_score = None
        if multimask:
            cand, cand_iou = masks[1:], ious[1:].astype(np.float64)
            if not appearing:
                cand = np.full_like(cand, NO_OBJ_SCORE)
            best, kf_score = self._choose(obj, cand, cand_iou)
            low_res = cand[best].astype(np.float32, copy=True)
            token = 1 + best if rules.use_multimask_token_for_obj_ptr else 0
            iou, candidate = float(cand_iou[best]), 1 + best
        else:  # one mask: as Meta's (no stability fallback: SAMURAI's heads take token 0 here)
            low_res = (masks[0] if appearing else np.full_like(masks[0], NO_OBJ_SCORE)).astype(np.float32)
            token, iou, candidate = 0, float(ious[0]), 0
        ptr = ptrs[token].astype(np.float32, copy=True)
        if rules.pred_obj_scores:
            if rules.soft_no_obj_ptr:
                ptr = mix_no_obj_ptr(ptr, score, rules, no_obj_ptr)
            else:  # the hard choice follows this policy's appearing threshold
                lam = float(appearing)
                ptr = ((lam * ptr if rules.fixed_no_obj_ptr else ptr) + (1 - lam) * no_obj_ptr).astype(np.float32)
        return Decoded(low_res=low_res, obj_ptr=ptr, object_score=score, iou=iou, kf_score=kf_score,
                       candidate=candidate)

    def _choose(self, obj: Any, cand: np.ndarray, ious: np.ndarray) -> tuple[int, float | None]:
        s, kf = self.settings, self.kf
        track = obj.policy_state if obj is not None and isinstance(obj.policy_state, Track) else Track()
        if obj is not None:
            obj.policy_state = track
        if track.mean is None or track.stable_frames == 0:
            best = int(np.argmax(ious))
            track.mean, track.cov = kf.initiate(to_xyah(candidate_box(cand[best], self.image_size)))
            track.stable_frames += 1
            return best, None
        track.mean, track.cov = kf.predict(track.mean, track.cov)
        if track.stable_frames < s.stable_frames_threshold:
            best = int(np.argmax(ious))
            if ious[best] > s.stable_ious_threshold:
                box = candidate_box(cand[best], self.image_size)
                track.mean, track.cov = kf.update(track.mean, track.cov, to_xyah(box))
                track.stable_frames += 1
            else:
                track.stable_frames = 0
            return best, None
        boxes = [candidate_box(c, self.image_size) for c in cand]
        predicted = to_xyxy(track.mean)
        kf_ious = np.array([box_iou(predicted, b) for b in boxes])
        best = int(np.argmax(s.kf_score_weight * kf_ious + (1 - s.kf_score_weight) * ious))
        track.overruled += int(best != int(np.argmax(ious)))
        if ious[best] < s.stable_ious_threshold:
            track.stable_frames = 0
        else:
            track.mean, track.cov = kf.update(track.mean, track.cov, to_xyah(boxes[best]))
        return best, float(kf_ious[best])

    # ------------------------------------------------------------------ the memory
    def _candidate(self, out: FrameOutput) -> bool:
        s = self.settings
        return (out.iou > s.memory_bank_iou_threshold and out.object_score > s.memory_bank_obj_score_threshold
                and (out.kf_score is None or out.kf_score > s.memory_bank_kf_score_threshold))

    def memory_frames(self, bank: ObjectMemory, frame_idx: int) -> list[int]:
        """The frames whose memories are attended to (oldest first), as the reference selects them."""
        valid: list[int] = []
        for t in sorted((t for t in bank.non_cond if 1 < t < frame_idx), reverse=True):
            if self._candidate(bank.non_cond[t]):
                valid.insert(0, t)
            if len(valid) >= self.scan:
                break
        if frame_idx - 1 not in valid:
            valid.append(frame_idx - 1)
        return valid[-(self.rules.num_maskmem - 1):] if self.rules.num_maskmem > 1 else []

    def recent_memories(self, planner: Any, bank: ObjectMemory, frame_idx: int, reverse: bool,
                        unselected: dict[int, FrameOutput]) -> list[tuple[int, int, FrameOutput]]:
        if reverse:  # the reference selects backwards in time only
            from engine.errors import InputError

            raise InputError("tracker.policy samurai tracks forward only (its memory rule looks back in time)")
        frames = self.memory_frames(bank, frame_idx)
        frames = frames[-planner.recent:] if planner.recent else []  # memory_frames below num_maskmem
        first = self.rules.num_maskmem - len(frames)
        entries = []
        for k, t in enumerate(frames):
            out = bank.non_cond.get(t, unselected.get(t))
            if out is not None:
                entries.append((first + k, t, out))
        return entries

    def evict(self, bank: ObjectMemory, frame_idx: int, window: int) -> None:
        keep = set(self.memory_frames(bank, frame_idx + 1))  # what the next frame can still select
        for t in [t for t in bank.non_cond if abs(t - frame_idx) > window and t not in keep]:
            del bank.non_cond[t]
