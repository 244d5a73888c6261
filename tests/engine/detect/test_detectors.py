"""The detectors: the user's ONNX detector in both output layouts (graphs built here, boxes that depend on
the input) on ONNX Runtime and OpenVINO, a model of another layout refused; motion on the identity clip;
OpenCV's HOG people detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.detect import build_detector, parse_detector
from engine.errors import ConfigError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

SIZE = 64  # the detectors' input, H = W


def detector_graph(path: Path, out_shape: list[int], base: np.ndarray, gain: np.ndarray,
                   names: str | None = "{0: 'person', 1: 'car'}") -> Path:
    """out = base + gain * mean(image): boxes that move with the picture's brightness."""
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m3"]),
             helper.make_node("Mul", ["m3", "gain"], ["g"]),
             helper.make_node("Add", ["g", "base"], ["output0"])]
    init = [helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 1]),
            helper.make_tensor("gain", TensorProto.FLOAT, gain.shape, gain.ravel().tolist()),
            helper.make_tensor("base", TensorProto.FLOAT, base.shape, base.ravel().tolist())]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                           [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names})
    onnx.save(model, str(path))
    return path


def yolo_graph(path: Path) -> Path:
    # [1, 4+2, 8]: candidate 0 a person at (cx 32, cy 32, 16 x 16), 1 a weak car, 2 a duplicate of 0, the
    # rest scoring 0
    base = np.zeros((1, 6, 8), np.float32)
    base[0, :, :3] = [[32, 50, 33], [32, 50, 32], [16, 8, 16], [16, 8, 16], [0.9, 0.0, 0.8], [0.0, 0.2, 0.0]]
    gain = np.zeros_like(base)
    gain[0, 0, :] = 20.0  # the boxes move right with the image's mean (0..1)
    return detector_graph(path, [1, 6, 8], base, gain)


def end2end_graph(path: Path) -> Path:
    base = np.array([[[24, 24, 40, 40, 0.9, 1], [0, 0, 8, 8, 0.1, 0]]], np.float32)
    gain = np.zeros_like(base)
    gain[0, 0, 0] = gain[0, 0, 2] = 20.0
    return detector_graph(path, [1, 2, 6], base, gain)


BACKENDS = [{"name": "onnxruntime", "device": "cpu"}, {"name": "openvino", "device": "CPU"}]


def make(path: Path, backend: dict, **kw):
    pytest.importorskip("onnxruntime" if backend["name"] == "onnxruntime" else "openvino")
    return build_detector(parse_detector({"kind": "onnx", "model": str(path), "backend": backend, **kw}, None, "t"))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b["name"])
def test_the_yolo_layout_is_read_letterboxed_suppressed_and_named(tmp_path, backend):
    det = make(yolo_graph(tmp_path / "yolo.onnx"), backend)
    image = np.zeros((64, 128, 3), np.uint8)  # letterboxed into 64 x 64: scale 0.5, 16 rows of padding above
    found = det.detect(image)
    assert det.layout == "yolo" and len(found) == 1  # the duplicate suppressed, the 0.2 car under threshold
    d = found[0]
    assert d.label == "person" and d.class_id == 0 and d.score == pytest.approx(0.9)
    mean = 0.5 * 114 / 255  # the model's input: half black frame, half grey (114) padding
    cx = 32 + 20 * mean
    assert d.box == pytest.approx(((cx - 8) / 0.5, (24 - 16) / 0.5, (cx + 8) / 0.5, (40 - 16) / 0.5), abs=0.05)
    brighter = det.detect(np.full((64, 128, 3), 255, np.uint8))[0]
    assert brighter.box[0] > d.box[0] + 10  # the boxes depend on the input


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b["name"])
def test_the_end_to_end_layout_is_read_with_names_from_a_file(tmp_path, backend):
    names = tmp_path / "names.txt"
    names.write_text("bicycle\nbus\n")
    det = make(end2end_graph(tmp_path / "e2e.onnx"), backend, class_names=str(names), score_threshold=0.3)
    found = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert det.layout == "end2end" and [(d.label, d.class_id) for d in found] == [("bus", 1)]
    assert found[0].box == pytest.approx((24, 24, 40, 40), abs=1e-3)
    assert det.detect(np.full((64, 64, 3), 255, np.uint8))[0].box[0] == pytest.approx(44, abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b["name"])
def test_a_model_of_another_layout_is_refused_naming_its_outputs(tmp_path, backend):
    path = detector_graph(tmp_path / "seg.onnx", [1, 4, 4], np.zeros((1, 4, 4), np.float32),
                          np.zeros((1, 4, 4), np.float32))
    det = make(path, backend)
    with pytest.raises(ConfigError, match=r"outputs \{'\w+': \[1, 4, 4\]\} match no layout"):
        det.detect(np.zeros((64, 64, 3), np.uint8))


def test_detector_settings_name_the_bad_key(tmp_path):
    with pytest.raises(ConfigError, match="detector.model.*required for kind onnx"):
        parse_detector({"kind": "onnx"}, None, "t")
    with pytest.raises(ConfigError, match="detector.kind"):
        parse_detector({"kind": "yolo"}, None, "t")
    with pytest.raises(ConfigError, match="'detector.layout': only kind onnx"):
        parse_detector({"kind": "motion", "layout": "yolo"}, None, "t")
    with pytest.raises(ConfigError, match="detector.every"):
        parse_detector({"kind": "motion", "every": 0}, None, "t")
    with pytest.raises(ConfigError, match="does not exist"):
        parse_detector({"kind": "onnx", "model": str(tmp_path / "none.onnx")}, None, "t")


def test_motion_finds_the_clip_s_moving_shapes():
    from engine.bench.identity_clip import IdentityClip
    from engine.detect.base import box_iou

    clip = IdentityClip()
    det = build_detector(parse_detector({"kind": "motion"}, None, "t"))
    hits = total = 0
    for t in range(clip.num_frames):
        found = det.detect(clip.get(t))
        if t == 0:
            assert found == []  # the first frame is the background
        for gt in clip.boxes(t, min_visible=1.0).values():
            total += 1
            hits += any(box_iou(np.array(d.box), np.array(gt))[0, 0] > 0.5 for d in found)
    assert total > 80 and hits / total > 0.8  # all but where shapes cross (one blob for two)


def test_hog_people_finds_people_in_real_footage():
    import cv2

    from tests.conftest import require_data

    data = require_data()
    det = build_detector(parse_detector({"kind": "hog-people", "score_threshold": 0.3}, None, "t"))
    cap = cv2.VideoCapture(str(data / "videos" / "bedroom.mp4"))
    found = []
    for _ in range(24):
        ok, frame = cap.read()
        assert ok
        found += det.detect(frame[:, :, ::-1].copy())
    cap.release()
    assert len(found) >= 3 and {d.label for d in found} == {"person"}
    assert all(0 <= d.box[0] < d.box[2] <= 960 and 0 <= d.box[1] < d.box[3] <= 540 for d in found)
