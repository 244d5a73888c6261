"""python -m engine.track: outputs, interruption, live mode, and the bad-input table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from engine.cli import run_cli
from engine.outputs import rle_from_string
from engine.postprocess import rle_decode
from engine.track import main as track_main
from tests.conftest import require_data


@pytest.fixture
def config(modelset_dir, tmp_path) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    return p


@pytest.fixture
def davis() -> Path:
    return require_data() / "davis-car-shadow"


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = run_cli(track_main, [*args, "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_outputs_png_rle_overlay_summary(config, davis, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["--config", str(config), "--video", str(davis / "frames"), "--point", "420,250",
                             "--obj-id", "3", "--box", "600,300,700,400", "--max-frames", "3", "--out", str(out)],
                            capsys)
    assert code == 0, err
    assert "4 frames" in stdout and "complete" in stdout
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(4)]
    from PIL import Image

    im = Image.open(pngs[1])
    assert im.mode == "P"
    labels = np.array(im)
    assert set(np.unique(labels)) <= {0, 1, 3}
    pal = im.getpalette()
    assert pal[3 * 3:3 * 3 + 3] == [128, 128, 0]  # VOC colour of id 3
    data = json.loads((out / "masks.json").read_text())
    assert data["complete"] and [f["frame"] for f in data["frames"]] == [0, 1, 2, 3]
    import pycocotools.mask as cm

    objects = data["frames"][1]["objects"]
    assert [o["obj_id"] for o in objects] == [1, 3]
    decoded = {}
    for obj in objects:
        seg = obj["segmentation"]
        mask = cm.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(rle_decode({"size": seg["size"], "counts": rle_from_string(seg["counts"])}),
                                      mask)
        assert obj["area"] == int(mask.sum()) > 0
        decoded[obj["obj_id"]] = mask
    # the PNG paints objects in order, a later one winning where they overlap: each id's pixels are its
    # RLE mask less what later objects cover, and the background is what no mask covers
    np.testing.assert_array_equal(labels == 3, decoded[3])
    np.testing.assert_array_equal(labels == 1, decoded[1] & ~decoded[3])
    np.testing.assert_array_equal(labels == 0, ~(decoded[1] | decoded[3]))
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 854
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 4 and set(summary["objects"]) == {"1", "3"}
    assert not list(out.rglob("*.partial*"))


def test_prompts_file_and_reverse(config, davis, tmp_path, capsys):
    prompts = tmp_path / "p.yaml"
    prompts.write_text(yaml.safe_dump([{"frame": 39, "obj_id": 1, "points": [[420, 250], [100, 50]],
                                        "labels": [1, 0]},
                                       {"frame": 39, "obj_id": 2, "mask": str(davis / "masks" / "00039.png")}]))
    out = tmp_path / "out"
    code, stdout, err = run(["--config", str(config), "--video", str(davis / "frames"), "--prompts", str(prompts),
                             "--reverse", "--max-frames", "2", "--out", str(out), "--no-video"], capsys)
    assert code == 0, err
    frames = [f["frame"] for f in json.loads((out / "masks.json").read_text())["frames"]]
    assert frames == [37, 38, 39]
    assert not (out / "overlay.mp4").exists()


def test_interrupted_run_leaves_nothing_that_looks_complete(config, davis, tmp_path, capsys, monkeypatch):
    from engine import track

    real_add = track.Outputs.add
    calls = []

    def add(self, *a):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_add(self, *a)

    monkeypatch.setattr(track.Outputs, "add", add)
    out = tmp_path / "out"
    code, stdout, err = run(["--config", str(config), "--video", str(davis / "frames"), "--point", "420,250",
                             "--max-frames", "5", "--out", str(out)], capsys)
    assert code == 130 and "interrupted" in stdout
    assert not (out / "masks.json").exists() and not (out / "overlay.mp4").exists()
    assert (out / "masks.incomplete.json").exists() and (out / "overlay.partial.mp4").exists()
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert len(list((out / "masks").glob("*.png"))) == 2


def test_live_source_writes_as_it_goes_and_stops_on_ctrl_c(config, tmp_path, capsys, monkeypatch):
    from engine import tracker as tracker_mod

    video = require_data() / "videos" / "bedroom.mp4"
    real_track = tracker_mod.Stream.track
    seen = []

    def track(self, frame):
        seen.append(1)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return real_track(self, frame)

    monkeypatch.setattr(tracker_mod.Stream, "track", track)
    out = tmp_path / "live"
    code, stdout, err = run(["--config", str(config), "--video", f"file://{video}", "--point", "480,270",
                             "--frame", "1", "--obj-id", "2", "--point", "670,380", "--out", str(out)], capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "masks.jsonl").read_text().splitlines()]
    # capture ids: the file is read as fast as it decodes and the newest frame is kept, so which frame is
    # tracked first depends on how the two threads are scheduled (usually 0; later on a loaded machine)
    frames = [x["frame"] for x in lines]
    assert len(frames) == 3 and frames == sorted(set(frames))
    # object 1 (prompted on frame 0) is there from the first tracked frame; object 2 (prompted on frame 1)
    # joins on the first tracked frame from 1 on
    assert [sorted(o["obj_id"] for o in x["objects"]) for x in lines] == [[1, 2] if f >= 1 else [1] for f in frames]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "Ctrl-C" and summary["complete"]
    assert (out / "overlay.mp4").exists()


def _copy_set(modelset_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ms"
    shutil.copytree(modelset_dir, dst)
    return dst


def _cfg_for(model: Path, tmp_path: Path) -> Path:
    p = tmp_path / "c2.yaml"
    p.write_text(f"model: {model}\nbackend: {{name: onnxruntime}}\n")
    return p


def _folder_with_truncated_jpeg(tmp_path: Path, davis: Path, bad: int = 3, n: int = 6) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted((davis / "frames").glob("*.jpg"))[:n]:
        data = f.read_bytes()
        (folder / f.name).write_bytes(data[: len(data) // 2] if f.name == f"{bad:05d}.jpg" else data)
    return folder


def _truncated_video(tmp_path: Path, davis: Path) -> Path:
    files = sorted((davis / "frames").glob("*.jpg"))[:12]
    full = tmp_path / "full.avi"
    w = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (854, 480))
    for f in files:
        w.write(cv2.imread(str(f)))
    w.release()
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    return cut


def _size_changing_folder(tmp_path: Path, davis: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(sorted((davis / "frames").glob("*.jpg"))[:3]):
        img = cv2.imread(str(f))
        if i == 2:
            img = cv2.resize(img, (640, 360))
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
    return folder


BAD_INPUTS = {
    "missing model file": (lambda ms, t, d: ((ms / "memory_encoder.onnx").unlink(), {})[1],
                           "memory_encoder.onnx of memory_encoder is missing"),
    "corrupt model file": (lambda ms, t, d: ((ms / "image_encoder.onnx").write_bytes(b"\x08\x01garbage"), {})[1],
                           "checksum differs from the manifest"),
    "model of another kind than the manifest": (
        lambda ms, t, d: (shutil.copy(ms / "memory_encoder.onnx", ms / "mask_decoder.onnx"),
                          _blank_checksums(ms), {})[2], "does not match the manifest"),
    "manifest of another format version": (lambda ms, t, d: (_set_manifest(ms, "format_version", 7), {})[1],
                                           "format_version 7 is not supported"),
    "missing video": (lambda ms, t, d: {"--video": str(t / "nope.mp4")}, "video not found"),
    "corrupt video": (lambda ms, t, d: {"--video": str(_write(t / "bad.mp4", b"\x00" * 4096))},
                      "cannot open video"),
    "truncated video": (lambda ms, t, d: {"--video": str(_truncated_video(t, d))},
                        "the file is truncated or corrupt"),
    "truncated JPEG in a folder": (lambda ms, t, d: {"--video": str(_folder_with_truncated_jpeg(t, d))},
                                   "00003.jpg (frame 3): image file is truncated"),
    "prompt outside the frame": (lambda ms, t, d: {"--point": "2000,100"}, "outside the 854 x 480 frame"),
    "prompt on a frame past the end": (lambda ms, t, d: {"--frame": "99"}, "prompt on frame 99, but the video has 40"),
    "object id 0 (the background)": (lambda ms, t, d: {"--obj-id": "0"}, "--obj-id: expected an integer >= 1"),
    "object id not a number": (lambda ms, t, d: {"--obj-id": "car"}, "--obj-id: expected an integer, got 'car'"),
    "no prompt": (lambda ms, t, d: {"--point": None}, "no prompt given"),
    "empty mask": (lambda ms, t, d: {"--point": None, "--mask": str(_blank_png(t))}, "is empty: no pixel is set"),
    "empty prompt in a prompts file": (lambda ms, t, d: {"--point": None, "--prompts": str(
        _write(t / "p.json", b'[{"frame": 0, "obj_id": 1}]'))}, "empty prompt for object 1 on frame 0"),
    "frames change size": (lambda ms, t, d: {"--video": str(_size_changing_folder(t, d))},
                           "frame 2 is 640 x 360, but the video is 854 x 480"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _blank_png(tmp: Path) -> Path:
    p = tmp / "blank.png"
    cv2.imwrite(str(p), np.zeros((480, 854), np.uint8))
    return p


def _set_manifest(ms: Path, key: str, value) -> None:
    m = yaml.safe_load((ms / "modelset.yaml").read_text())
    m[key] = value
    (ms / "modelset.yaml").write_text(yaml.safe_dump(m))


def _blank_checksums(ms: Path) -> None:
    m = yaml.safe_load((ms / "modelset.yaml").read_text())
    for s in m["stages"].values():
        s["sha256"] = ""
    (ms / "modelset.yaml").write_text(yaml.safe_dump(m))


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case, modelset_dir, davis, tmp_path, capsys):
    make, message = BAD_INPUTS[case]
    ms = _copy_set(modelset_dir, tmp_path)
    changes = make(ms, tmp_path, davis)
    sticky = {k: changes.pop(k) for k in ("--frame", "--obj-id") if k in changes}  # they bind later prompts
    args = {"--config": str(_cfg_for(ms, tmp_path)), "--video": str(davis / "frames"), **sticky,
            "--point": "420,250", "--out": str(tmp_path / "out"), **changes}
    argv = [x for k, v in args.items() if v is not None for x in (k, v)]
    code, stdout, err = run(argv, capsys)
    assert code == 2, (stdout, err)
    assert message in err, err
    assert "Traceback" not in err and err.startswith("error: ")


def test_truncated_video_with_skip_bad_frames(modelset_dir, davis, tmp_path, capsys):
    video = _truncated_video(tmp_path, davis)
    out = tmp_path / "out"
    code, stdout, err = run(["--config", str(_cfg_for(modelset_dir, tmp_path)), "--video", str(video),
                             "--point", "420,250", "--out", str(out), "--skip-bad-frames", "--no-video"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 12
    cap, good = cv2.VideoCapture(str(video)), 0
    while cap.read()[0]:
        good += 1
    assert summary["bad_frames_replaced"] == list(range(good, 12)) and "could not be decoded" in stdout


def test_nan_from_a_stage_stops_with_a_clear_error(config, davis, tmp_path, capsys, monkeypatch):
    from engine.stages import StageSet

    real = StageSet.run

    def run_nan(self, name, inputs, keep=()):
        out = real(self, name, inputs, keep)
        if name == "mask_decoder":
            out["object_score"] = np.full_like(out["object_score"], np.inf)
        return out

    monkeypatch.setattr(StageSet, "run", run_nan)
    code, stdout, err = run(["--config", str(config), "--video", str(davis / "frames"), "--point", "420,250",
                             "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "stage mask_decoder returned NaN or Inf in object_score" in err


def test_truncated_jpeg_with_skip_bad_frames(modelset_dir, davis, tmp_path, capsys):
    folder = _folder_with_truncated_jpeg(tmp_path, davis, bad=3)
    out = tmp_path / "out"
    code, stdout, err = run(["--config", str(_cfg_for(modelset_dir, tmp_path)), "--video", str(folder),
                             "--point", "420,250", "--out", str(out), "--skip-bad-frames", "--no-video"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 6 and summary["bad_frames_replaced"] == [3]
    (entry,) = summary["bad_frames"]
    assert entry["frame"] == 3 and "00003.jpg" in entry["error"] and "truncated" in entry["error"]
    # the replaced frame is tracked (on the previous frame's pixels) and written like every other
    assert (out / "masks" / "00003.png").is_file()
