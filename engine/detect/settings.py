"""The `detector:` section of an engine config (and of a deployment's source): which detector, how often,
and the identity policy's rules. One typed, frozen object; every error names the key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backends.base import BackendConfig
from engine.config import _backend, _bool, _check_keys, _choice, _int, _path, _where
from engine.errors import ConfigError

KINDS = ("onnx", "hog-people", "motion")
LAYOUTS = ("auto", "yolo", "end2end")


@dataclass(frozen=True)
class IdentitySettings:
    """How detections become objects and objects keep their ids (engine.detect.identity)."""

    match_iou: float = 0.3  # a detection is an object's when their boxes overlap this much ...
    cover: float = 0.5  # ... or the object's mask covers this share of the detection's box
    lost_after_s: float = 1.0  # object score at or below 0 this long: lost
    expire_after_s: float = 30.0  # lost this long: expired and removed, its slot freed
    reacquire_distance: float = 1.0  # a lost object's last box, grown by this many of its sizes each way, ...
    reacquire_size: float = 2.0  # ... and sizes within this factor: where a detection re-acquires it
    max_objects: int = 16  # objects per source; detections past it are counted, not admitted
    removed_block_s: float = 60.0  # where a person removed an object, nothing is admitted this long
    correct: bool = False  # re-prompt a matched object whose mask disagrees with its detection
    correct_iou: float = 0.3  # ... when the mask's box and the detection's box overlap less than this


@dataclass(frozen=True)
class DetectorSettings:
    kind: str
    every: int = 5  # run on every N-th tracked frame (and on demand)
    score_threshold: float = 0.5
    classes: tuple[str | int, ...] | None = None  # wanted classes (names or ids); None: all
    nms_iou: float = 0.5
    max_detections: int = 100
    # onnx
    model: Path | None = None
    backend: BackendConfig | None = None  # None: the engine's backend
    layout: str = "auto"
    input_size: tuple[int, int] | None = None  # H, W where the model does not fix it
    class_names: Path | None = None
    # motion
    min_area: float = 0.002  # blobs smaller than this share of the frame are noise
    history: int = 100
    var_threshold: float = 16.0
    # hog-people
    hog_scale: float = 1.05
    max_width: int = 640  # frames wider than this are shrunk for HOG (it is slow at full size)
    identity: IdentitySettings = field(default_factory=IdentitySettings)


DETECTOR_KEYS = tuple(f for f in DetectorSettings.__dataclass_fields__)
IDENTITY_KEYS = tuple(IdentitySettings.__dataclass_fields__)


def _number(value: Any, source: str, key: str, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
    if ok and (value < lo or value > hi or (lo_open and value == lo)):
        ok = False
    if not ok:
        bound = f"{'above' if lo_open else 'at least'} {lo} and at most {hi}"
        raise ConfigError(f"{_where(source, key)}: value {value!r} is not allowed; expected a number {bound}")
    return float(value)


def _identity(d: Any, source: str, key: str) -> IdentitySettings:
    _check_keys(d, IDENTITY_KEYS, source, key)
    s = IdentitySettings()
    for name in ("match_iou", "cover", "correct_iou"):
        if name in d:
            s = replace(s, **{name: _number(d[name], source, f"{key}.{name}", 0.0, 1.0, lo_open=True)})
    for name in ("lost_after_s", "expire_after_s", "removed_block_s"):
        if name in d:
            s = replace(s, **{name: _number(d[name], source, f"{key}.{name}", 0.0, 10_000_000.0)})
    if "reacquire_distance" in d:
        s = replace(s, reacquire_distance=_number(d["reacquire_distance"], source, f"{key}.reacquire_distance",
                                                  0.0, 100.0))
    if "reacquire_size" in d:
        s = replace(s, reacquire_size=_number(d["reacquire_size"], source, f"{key}.reacquire_size", 1.0, 100.0))
    if "max_objects" in d:
        s = replace(s, max_objects=_int(d["max_objects"], source, f"{key}.max_objects", 1, 10_000))
    if "correct" in d:
        s = replace(s, correct=_bool(d["correct"], source, f"{key}.correct"))
    if s.expire_after_s < s.lost_after_s:
        raise ConfigError(f"{_where(source, key + '.expire_after_s')}: {s.expire_after_s} is shorter than "
                          f"lost_after_s ({s.lost_after_s}); an object expires only after it is lost")
    return s


def parse_detector(d: Any, base: Path | None, source: str, key: str = "detector",
                   engine_backend: BackendConfig | None = None) -> DetectorSettings | None:
    """A `detector:` mapping (None or false: no detector)."""
    if d is None or d is False:
        return None
    _check_keys(d, DETECTOR_KEYS, source, key)
    if "kind" not in d:
        raise ConfigError(f"{_where(source, key + '.kind')}: required; one of {', '.join(KINDS)}")
    s = DetectorSettings(kind=_choice(d["kind"], KINDS, source, f"{key}.kind"))
    if "every" in d:
        s = replace(s, every=_int(d["every"], source, f"{key}.every", 1, 100_000))
    if "score_threshold" in d:
        s = replace(s, score_threshold=_number(d["score_threshold"], source, f"{key}.score_threshold", -100.0, 100.0))
    if "nms_iou" in d:
        s = replace(s, nms_iou=_number(d["nms_iou"], source, f"{key}.nms_iou", 0.0, 1.0, lo_open=True))
    if "max_detections" in d:
        s = replace(s, max_detections=_int(d["max_detections"], source, f"{key}.max_detections", 1, 100_000))
    if d.get("classes") is not None:
        classes = d["classes"]
        if (not isinstance(classes, list) or not classes
                or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)):
            raise ConfigError(f"{_where(source, key + '.classes')}: value {classes!r} is not allowed; expected a "
                              f"list of class names or ids, e.g. [person, car]")
        s = replace(s, classes=tuple(classes))
    if s.kind == "onnx":
        if d.get("model") is None:
            raise ConfigError(f"{_where(source, key + '.model')}: required for kind onnx: the detector's .onnx "
                              f"file (the engine ships none; see the README's 'Detectors')")
        s = replace(s, model=_path(d["model"], base, source, f"{key}.model"))
        if not s.model.is_file():
            raise ConfigError(f"{_where(source, key + '.model')}: {s.model} does not exist")
        parent = engine_backend or BackendConfig()
        s = replace(s, backend=_backend(d.get("backend") or {}, parent, base, source, f"{key}.backend",
                                        allow_fallback=False))
        if "layout" in d:
            s = replace(s, layout=_choice(d["layout"], LAYOUTS, source, f"{key}.layout"))
        if d.get("input_size") is not None:
            v = d["input_size"]
            hw = [v, v] if isinstance(v, int) else v
            if (not isinstance(hw, list) or len(hw) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and 32 <= x <= 8192 for x in hw)):
                raise ConfigError(f"{_where(source, key + '.input_size')}: value {v!r} is not allowed; expected "
                                  f"an integer or [height, width], each 32 to 8192")
            s = replace(s, input_size=(hw[0], hw[1]))
        if d.get("class_names") is not None:
            s = replace(s, class_names=_path(d["class_names"], base, source, f"{key}.class_names"))
            if not s.class_names.is_file():
                raise ConfigError(f"{_where(source, key + '.class_names')}: {s.class_names} does not exist")
    else:
        misplaced = [k for k in ("model", "backend", "layout", "input_size", "class_names") if k in d]
        if misplaced:
            raise ConfigError(f"{_where(source, key + '.' + misplaced[0])}: only kind onnx takes it "
                              f"(this detector is {s.kind})")
    if "min_area" in d:
        s = replace(s, min_area=_number(d["min_area"], source, f"{key}.min_area", 0.0, 1.0))
    if "history" in d:
        s = replace(s, history=_int(d["history"], source, f"{key}.history", 1, 100_000))
    if "var_threshold" in d:
        s = replace(s, var_threshold=_number(d["var_threshold"], source, f"{key}.var_threshold", 0.0, 10_000.0,
                                             lo_open=True))
    if "hog_scale" in d:
        s = replace(s, hog_scale=_number(d["hog_scale"], source, f"{key}.hog_scale", 1.0, 2.0, lo_open=True))
    if "max_width" in d:
        s = replace(s, max_width=_int(d["max_width"], source, f"{key}.max_width", 64, 8192))
    if "identity" in d:
        s = replace(s, identity=_identity(d["identity"] or {}, source, f"{key}.identity"))
    return s
