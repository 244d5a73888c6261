"""`onnx`: the user's detector ONNX file, run on the engine's own backends (ONNX Runtime or OpenVINO,
device and precision as for a stage).

Two output layouts are read:
- `yolo`: [1, 4+C, N], per candidate cx, cy, w, h, then C class scores (the common YOLOv5/v8/11 export);
- `end2end`: [1, N, 6], per detection x0, y0, x1, y1, score, class (YOLOv10, RT-DETR style exports).
Boxes are in the model's input pixels. The frame is letterboxed into the input (aspect kept, grey 114
padding, RGB scaled to 0-1, NCHW) and boxes are mapped back. Class names come from the model's metadata
(`names`, as Ultralytics writes it), else from `class_names:` (a text file, one name a line, or a YAML/JSON
list or mapping), else "class <id>"."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from backends.base import StageOptions
from engine.detect.base import Detection, nms
from engine.detect.settings import DetectorSettings
from engine.errors import ConfigError, ModelSetError

log = logging.getLogger("engine.detect")


def letterbox(image: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    """The frame fitted into hw with its aspect kept, centred on grey: NCHW float32 0-1, and the scale and
    padding that map the model's pixels back (frame = (model - pad) / scale)."""
    h, w = image.shape[:2]
    scale = min(hw[0] / h, hw[1] / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else image
    canvas = np.full((hw[0], hw[1], 3), 114, np.uint8)
    top, left = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0, scale, float(left), float(top)


def parse_names(value: Any) -> dict[int, str]:
    """Class names from a list, a mapping, or the text of either (JSON, YAML or a Python literal)."""
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval, yaml.safe_load):
            try:
                parsed = parse(value)
            except Exception:  # noqa: BLE001 - try the next format
                continue
            if isinstance(parsed, (list, dict)):
                value = parsed
                break
    if isinstance(value, list):
        return {i: str(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            pass
    raise ValueError(f"not a list or mapping of class names: {str(value)[:80]!r}")


def read_names_file(path: Path) -> dict[int, str]:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        data = yaml.safe_load(text)
        if isinstance(data, dict) and "names" in data:
            data = data["names"]
        try:
            return parse_names(data)
        except ValueError as exc:
            raise ConfigError(f"class_names {path}: {exc}") from None
    return {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}


def model_info(path: Path) -> tuple[list[Any], dict[str, str]]:
    """The first input's shape (ints, or None where dynamic) and the model's metadata, read with whichever
    of onnx or OpenVINO is installed."""
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        dims = m.graph.input[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        return shape, {p.key: p.value for p in m.metadata_props}
    except ImportError:
        pass
    import openvino as ov

    model = ov.Core().read_model(str(path))
    shape = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
    meta: dict[str, str] = {}
    if model.has_rt_info(["framework", "names"]):
        meta["names"] = str(model.get_rt_info(["framework", "names"]))
    return shape, meta


class OnnxDetector:
    kind = "onnx"

    def __init__(self, settings: DetectorSettings) -> None:
        from backends.registry import create_backend

        self.settings = settings
        path = settings.model
        if path is None or not path.is_file():
            raise ConfigError(f"detector model {path} not found")
        try:
            shape, meta = model_info(path)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the file's
            raise ModelSetError(f"detector {path}: cannot read it as an ONNX model ({exc})") from exc
        if len(shape) != 4 or shape[1] not in (3, None):
            raise ConfigError(f"detector {path}: its input has shape {shape}; a detector takes one image "
                              f"[1, 3, height, width]")
        fixed = tuple(shape[2:]) if None not in shape[2:] else None
        if fixed is not None and settings.input_size is not None and tuple(settings.input_size) != fixed:
            raise ConfigError(f"detector {path}: input_size {list(settings.input_size)} differs from the model's "
                              f"fixed input {list(fixed)}")
        self.input_hw = fixed or settings.input_size
        if self.input_hw is None:
            raise ConfigError(f"detector {path}: the model does not fix its input size ({shape}); set "
                              f"detector.input_size (e.g. 640)")
        self.names: dict[int, str] = {}
        if settings.class_names is not None:
            self.names = read_names_file(settings.class_names)
        elif "names" in meta:
            try:
                self.names = parse_names(meta["names"])
            except ValueError as exc:
                log.warning("detector %s: its metadata 'names' cannot be read (%s); labels are 'class <id>'",
                            path, exc)
        self.stage = create_backend(settings.backend).load(path, StageOptions(name="detector"))
        if len(self.stage.input_names) != 1:
            raise ConfigError(f"detector {path}: it takes {len(self.stage.input_names)} inputs "
                              f"{list(self.stage.input_names)}; a detector takes one image")
        self.layout: str | None = None if settings.layout == "auto" else settings.layout

    def _label(self, class_id: int) -> str:
        return self.names.get(class_id, f"class {class_id}")

    def _pick_layout(self, outputs: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
        shapes = {k: list(v.shape) for k, v in outputs.items()}
        candidates = [v for v in outputs.values() if v.ndim == 3 and v.shape[0] == 1]
        for out in candidates:
            n1, n2 = out.shape[1], out.shape[2]
            if self.layout == "end2end" and n2 == 6:
                return "end2end", out
            if self.layout == "yolo" and n1 >= 5:
                return "yolo", out
            if self.layout is None:
                if n2 == 6 and n1 != 6:
                    return "end2end", out
                if n1 >= 5 and n2 > n1:
                    return "yolo", out
        wanted = {"yolo": "[1, 4+C, N] (cx, cy, w, h, C class scores)",
                  "end2end": "[1, N, 6] (x0, y0, x1, y1, score, class)"}
        expected = wanted[self.layout] if self.layout else " or ".join(wanted.values())
        raise ConfigError(f"detector {self.settings.model}: its outputs {shapes} match no layout the engine reads; "
                          f"expected {expected}" + ("" if self.layout else "; if the model is one of these, set "
                                                    "detector.layout"))

    def detect(self, image: np.ndarray) -> list[Detection]:
        x, scale, left, top = letterbox(image, self.input_hw)
        outputs = self.stage.run({self.stage.input_names[0]: x})
        layout, out = self._pick_layout(outputs)
        self.layout = layout  # the first frame decides for the run
        out = np.asarray(out[0], np.float64)
        if layout == "yolo":
            cand = out.T  # N x (4+C)
            scores_all = cand[:, 4:]
            classes = scores_all.argmax(axis=1)
            scores = scores_all[np.arange(len(cand)), classes]
            cx, cy, w, h = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]
            boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        else:
            boxes, scores, classes = out[:, :4], out[:, 4], np.rint(out[:, 5]).astype(np.int64)
        s = self.settings
        keep = np.flatnonzero((scores >= s.score_threshold) & np.isfinite(boxes).all(axis=1))
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        if layout == "yolo":  # end-to-end models did their own suppression
            order = nms(boxes, scores, classes, s.nms_iou)
        else:
            order = np.argsort(-scores, kind="stable")
        h, w = image.shape[:2]
        found = []
        for i in order[: s.max_detections]:
            b = (boxes[i] - [left, top, left, top]) / scale
            b = np.clip(b, 0, [w, h, w, h])
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                continue
            cid = int(classes[i])
            found.append(Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(scores[i]), cid,
                                   self._label(cid)))
        return found

    def describe(self) -> dict[str, Any]:
        b = self.settings.backend
        return {"kind": self.kind, "model": str(self.settings.model), "layout": self.layout or "auto",
                "input_size": list(self.input_hw), "classes_named": len(self.names),
                "backend": None if b is None else {"name": b.name, "device": b.device, "precision": b.precision}}
