"""What `engine.track` writes: indexed PNG masks, COCO RLE JSON, an overlay video, a summary.

Every file is written under a temporary name and renamed when complete, so an interrupted run never
leaves a file that looks complete but is not.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from engine.postprocess import rle_encode


def palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: object id k always gets the same colour."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


PALETTE = palette()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def indexed_png(labels: np.ndarray) -> bytes:
    """An 8-bit palette PNG of a label image (0 background, k object id k), in the DAVIS colour map."""
    if labels.dtype != np.uint8:
        raise ValueError("labels must be uint8")
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    img.putpalette(PALETTE.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def label_image(masks: np.ndarray, obj_ids: list[int]) -> np.ndarray:
    """Objects painted in order: a later object wins where masks overlap. Ids above 255 are an error."""
    h, w = masks.shape[1:]
    out = np.zeros((h, w), np.uint8)
    for mask, obj_id in zip(masks, obj_ids, strict=True):
        if not 0 < obj_id < 256:
            raise ValueError(f"object id {obj_id} does not fit an 8-bit indexed PNG (1 to 255)")
        out[mask] = obj_id
    return out


# ----------------------------------------------------------------------------- COCO RLE (pycocotools)
def rle_to_string(counts: list[int]) -> str:
    """pycocotools' compressed counts string (maskApi.c rleToString)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_from_string(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """{'size': [h, w], 'counts': str} as pycocotools.mask.encode gives (after decoding the bytes)."""
    rle = rle_encode(mask)
    return {"size": rle["size"], "counts": rle_to_string(rle["counts"])}


class RleWriter:
    """Collects per-frame RLEs; writes masks.json atomically at the end (or masks.jsonl as it goes)."""

    def __init__(self, out: Path, video_hw: tuple[int, int], source: str, streaming: bool) -> None:
        self.out = out
        self.streaming = streaming
        self.header = {"video": source, "height": video_hw[0], "width": video_hw[1]}
        self.frames: list[dict[str, Any]] = []
        self._lines = open(out / "masks.jsonl", "w") if streaming else None

    def add(self, frame_idx: int, obj_ids: list[int], masks: np.ndarray, scores: np.ndarray,
            infos: list[dict[str, Any] | None] | None = None, events: list[dict[str, Any]] | None = None) -> None:
        """One frame's objects; with a detector, each object's `infos` (label, det_score, origin, state,
        det_box) and the frame's events."""
        infos = infos or [None] * len(obj_ids)
        entry: dict[str, Any] = {"frame": frame_idx, "objects": [
            {"obj_id": int(o), "segmentation": coco_rle(m), "area": int(m.sum()), "score": float(s), **(i or {})}
            for o, m, s, i in zip(obj_ids, masks, scores, infos, strict=True)]}
        if events:
            entry["events"] = events
        if self._lines is not None:
            self._lines.write(json.dumps(entry) + "\n")
            self._lines.flush()
        else:
            self.frames.append(entry)

    def close(self, complete: bool) -> Path:
        if self._lines is not None:
            self._lines.close()
            return self.out / "masks.jsonl"
        name = "masks.json" if complete else "masks.incomplete.json"
        path = self.out / name
        atomic_write_bytes(path, json.dumps({**self.header, "complete": complete,
                                             "frames": sorted(self.frames, key=lambda f: f["frame"])}).encode())
        return path


def overlay_bgr(frame: np.ndarray, obj_ids: list[int], masks: np.ndarray) -> np.ndarray:
    """The frame (RGB) with each object's mask tinted in its palette colour and outlined, as BGR for OpenCV."""
    img = frame.astype(np.float32)
    for obj_id, mask in zip(obj_ids, masks, strict=True):
        colour = PALETTE[obj_id % 256].astype(np.float32)
        img[mask] = img[mask] * 0.45 + colour * 0.55
    bgr = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR)
    for obj_id, mask in zip(obj_ids, masks, strict=True):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = PALETTE[obj_id % 256]
        cv2.drawContours(bgr, contours, -1, (int(c[2]), int(c[1]), int(c[0])), 2)
    return bgr


class OverlayWriter:
    """An MP4 preview: the frame with each object's mask tinted in its palette colour and outlined."""

    def __init__(self, path: Path, video_hw: tuple[int, int], fps: float) -> None:
        self.path = path
        self.tmp = path.with_name(path.stem + ".partial" + path.suffix)
        h, w = video_hw
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not self.writer.isOpened():
            raise OSError(f"OpenCV cannot write {self.tmp}")

    def add(self, frame: np.ndarray, obj_ids: list[int], masks: np.ndarray) -> None:
        self.writer.write(overlay_bgr(frame, obj_ids, masks))

    def close(self, complete: bool) -> Path:
        self.writer.release()
        if complete:
            os.replace(self.tmp, self.path)
            return self.path
        return self.tmp
