"""YAML deployment config -> typed, validated config.

Every error names the key, the bad value and what is allowed; unknown keys are errors. Relative
paths (model set, cache dir) are resolved against the config file's folder, so a deployment is
one YAML file next to its models, wherever it is started from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from backends.base import BACKEND_NAMES, PRECISIONS, BackendConfig
from engine.errors import ConfigError
from engine.modelset import STAGES

TOP_KEYS = ("model", "backend", "stages", "tracker", "detector")
BACKEND_KEYS = ("name", "device", "precision", "threads", "performance_hint", "num_streams", "cache_dir",
                "provider_options", "io_binding", "cuda_graph", "keep_on_device", "spin_wait", "cpu_pinning",
                "fallback")
RUNTIME_ONLY = {"spin_wait": "onnxruntime", "cpu_pinning": "openvino"}  # keys one runtime honours
ORT_DEVICES = ("cpu", "cuda", "tensorrt", "directml", "dml")
OV_DEVICE_RE = re.compile(r"^(CPU|GPU(\.\d+)?|NPU|AUTO|(AUTO|MULTI|HETERO):[A-Z0-9.,]+)$")
OV_DEVICES_TEXT = "CPU, GPU, GPU.<n>, NPU, AUTO, AUTO:<dev>,<dev>"
MEMORY_DTYPES = ("bfloat16", "float32")
OFFLINE_MEMORY = ("all", "window")


@dataclass(frozen=True)
class TrackerSettings:
    memory_frames: int = 7  # spatial memories in attention (cond + recent), as SAM 2's num_maskmem
    max_obj_ptrs: int = 16  # object pointers in attention
    fill_hole_area: int | None = None  # None: the model set's value (8 for SAM 2's video predictor)
    mask_threshold: float = 0.0  # logits above this are foreground
    memory_dtype: str = "bfloat16"  # how memory features are kept; the reference keeps bfloat16
    non_overlap_masks: bool | None = None  # None: the model set's value
    # offline runs (init_state / propagate_in_video): "all" keeps every frame's output, as Meta's predictor
    # does, so any order of prompts, propagations and corrections gives its masks; "window" drops tracked
    # frames farther than the memory rules reach from the frame being tracked (bounded memory, but a later
    # correction or pass far from the last tracked frame sees less memory than Meta's). Streams always window.
    offline_memory: str = "all"
    # prompted (conditioning) frames memory attention attends to, the closest to the frame being tracked
    # (Meta's select_closest_cond_frames); None: the model's rule (-1, all of them, for every SAM 2 model).
    # A static model set needs a cap within its slots; results depart from Meta's only on videos with more
    # prompted frames than the cap.
    max_cond_frames: int | None = None
    # offline runs: decode and resize the frame propagation tracks next in a background thread while the
    # stages run on this one (the same input either way; on a GPU the resize takes longer than the stages)
    prefetch_frames: bool = True
    # how a mask is chosen among the decoder's candidates and which tracked frames are memories:
    # "meta" (SAM2VideoPredictor's rules) or "samurai" (engine.policies.samurai, its keys under samurai:)
    policy: str = "meta"
    samurai: Any = None  # engine.policies.samurai.SamuraiSettings; None: SAMURAI's defaults


@dataclass(frozen=True)
class EngineConfig:
    model: Path | None
    backend: BackendConfig
    stages: dict[str, BackendConfig] = field(default_factory=dict)  # resolved, one per stage
    tracker: TrackerSettings = TrackerSettings()
    source: str = "<dict>"
    detector: Any = None  # engine.detect.DetectorSettings: objects found by a detector (None: by people only)

    def backend_for(self, stage: str) -> BackendConfig:
        return self.stages.get(stage, self.backend)


def _where(source: str, key: str) -> str:
    return f"config {source}: key '{key}'"


def _check_keys(d: Any, allowed: tuple[str, ...], source: str, key: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{_where(source, key)}: expected a mapping, got {type(d).__name__} {d!r}")
    unknown = [k for k in d if k not in allowed]
    if unknown:
        where = str(unknown[0]) if key == "<top level>" else f"{key}.{unknown[0]}"
        raise ConfigError(f"{_where(source, where)}: unknown key; allowed keys: "
                          f"{', '.join(allowed)}")
    return d


def _int(value: Any, source: str, key: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ConfigError(f"{_where(source, key)}: value {value!r} is not allowed; expected {rng}")
    return value


def _choice(value: Any, allowed: tuple[str, ...], source: str, key: str) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ConfigError(f"{_where(source, key)}: value {value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value.lower()


def _bool(value: Any, source: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(source, key)}: value {value!r} is not allowed; expected true or false")
    return value


def _path(value: Any, base: Path | None, source: str, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_where(source, key)}: value {value!r} is not allowed; expected a path")
    p = Path(value).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def _backend(d: dict[str, Any], parent: BackendConfig, base: Path | None, source: str, key: str,
             allow_fallback: bool = True) -> BackendConfig:
    _check_keys(d, BACKEND_KEYS, source, key)
    cfg = parent
    if "name" in d:
        cfg = replace(cfg, name=_choice(d["name"], BACKEND_NAMES, source, f"{key}.name"))
        if cfg.name != parent.name:  # another runtime: the parent's settings of its own runtime do not carry
            cfg = replace(cfg, spin_wait=None, cpu_pinning=None)
    if "device" in d:
        cfg = replace(cfg, device=d["device"])
    if not isinstance(cfg.device, str):
        raise ConfigError(f"{_where(source, key + '.device')}: value {cfg.device!r} is not allowed; expected a "
                          f"device name")
    if cfg.name == "onnxruntime":
        _choice(cfg.device, ORT_DEVICES, source, f"{key}.device")
    elif not OV_DEVICE_RE.match(cfg.device.upper()):
        raise ConfigError(f"{_where(source, key + '.device')}: value {cfg.device!r} is not allowed for openvino; "
                          f"allowed: {OV_DEVICES_TEXT}")
    if "precision" in d:
        cfg = replace(cfg, precision=_choice(d["precision"], PRECISIONS, source, f"{key}.precision"))
    if "threads" in d:
        cfg = replace(cfg, threads=None if d["threads"] is None else _int(d["threads"], source, f"{key}.threads", 1, 1024))
    if "performance_hint" in d:
        cfg = replace(cfg, performance_hint=_choice(d["performance_hint"], ("latency", "throughput"), source,
                                                    f"{key}.performance_hint"))
    if "num_streams" in d:
        cfg = replace(cfg, num_streams=None if d["num_streams"] is None
                      else _int(d["num_streams"], source, f"{key}.num_streams", 1, 64))
    if "cache_dir" in d:
        cfg = replace(cfg, cache_dir=None if d["cache_dir"] is None
                      else str(_path(d["cache_dir"], base, source, f"{key}.cache_dir")))
    if "provider_options" in d:
        po = d["provider_options"]
        if not isinstance(po, dict) or not all(isinstance(k, str) for k in po):
            raise ConfigError(f"{_where(source, key + '.provider_options')}: value {po!r} is not allowed; "
                              f"expected a mapping of option names to values")
        cfg = replace(cfg, provider_options=dict(po))
    if "io_binding" in d:
        cfg = replace(cfg, io_binding=_bool(d["io_binding"], source, f"{key}.io_binding"))
    if "cuda_graph" in d:
        cfg = replace(cfg, cuda_graph=_bool(d["cuda_graph"], source, f"{key}.cuda_graph"))
    if cfg.cuda_graph and (cfg.name, cfg.device.lower()) != ("onnxruntime", "cuda"):
        raise ConfigError(f"{_where(source, key + '.cuda_graph')}: CUDA graphs are an onnxruntime CUDA feature; "
                          f"this backend is {cfg.name} on {cfg.device}")
    if "keep_on_device" in d:
        cfg = replace(cfg, keep_on_device=_bool(d["keep_on_device"], source, f"{key}.keep_on_device"))
    if cfg.keep_on_device and (cfg.name != "onnxruntime" or cfg.device.lower() not in ("cpu", "cuda", "tensorrt")):
        raise ConfigError(f"{_where(source, key + '.keep_on_device')}: values are kept on the device by onnxruntime "
                          f"on cpu, cuda or tensorrt; this backend is {cfg.name} on {cfg.device}")
    for name, runtime in RUNTIME_ONLY.items():
        if name in d:
            if cfg.name != runtime:
                raise ConfigError(f"{_where(source, key + '.' + name)}: {name} is an {runtime} setting; this backend "
                                  f"is {cfg.name}")
            cfg = replace(cfg, **{name: None if d[name] is None else _bool(d[name], source, f"{key}.{name}")})
    cfg = replace(cfg, fallback=())
    if "fallback" in d:
        if not allow_fallback:
            raise ConfigError(f"{_where(source, key + '.fallback')}: a fallback cannot have fallbacks of its own")
        fb = d["fallback"]
        if not isinstance(fb, list):
            raise ConfigError(f"{_where(source, key + '.fallback')}: value {fb!r} is not allowed; expected a list "
                              f"of backend mappings, e.g. [{{name: openvino, device: CPU}}]")
        alts = tuple(_backend(item, cfg, base, source, f"{key}.fallback[{i}]", allow_fallback=False)
                     for i, item in enumerate(fb))
        cfg = replace(cfg, fallback=alts)
    elif parent.fallback and allow_fallback:
        cfg = replace(cfg, fallback=parent.fallback)
    return cfg


def _tracker(d: Any, source: str) -> TrackerSettings:
    names = tuple(f.name for f in fields(TrackerSettings))
    _check_keys(d, names, source, "tracker")
    t = TrackerSettings()
    if "memory_frames" in d:
        t = replace(t, memory_frames=_int(d["memory_frames"], source, "tracker.memory_frames", 1, 64))
    if "max_obj_ptrs" in d:
        t = replace(t, max_obj_ptrs=_int(d["max_obj_ptrs"], source, "tracker.max_obj_ptrs", 0, 64))
    if "fill_hole_area" in d:
        t = replace(t, fill_hole_area=None if d["fill_hole_area"] is None
                    else _int(d["fill_hole_area"], source, "tracker.fill_hole_area", 0))
    if "mask_threshold" in d:
        v = d["mask_threshold"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise ConfigError(f"{_where(source, 'tracker.mask_threshold')}: value {v!r} is not allowed; "
                              f"expected a number (a logit, 0.0 = probability 0.5)")
        t = replace(t, mask_threshold=float(v))
    if "memory_dtype" in d:
        t = replace(t, memory_dtype=_choice(d["memory_dtype"], MEMORY_DTYPES, source, "tracker.memory_dtype"))
    if "non_overlap_masks" in d:
        t = replace(t, non_overlap_masks=None if d["non_overlap_masks"] is None
                    else _bool(d["non_overlap_masks"], source, "tracker.non_overlap_masks"))
    if "offline_memory" in d:
        t = replace(t, offline_memory=_choice(d["offline_memory"], OFFLINE_MEMORY, source, "tracker.offline_memory"))
    if "max_cond_frames" in d:
        v = d["max_cond_frames"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not (v == -1 or 2 <= v <= 64)):
            raise ConfigError(f"{_where(source, 'tracker.max_cond_frames')}: value {v!r} is not allowed; expected "
                              f"-1 (every prompted frame, Meta's default) or an integer from 2 to 64 (Meta's rule "
                              f"keeps at least the closest prompted frame before and after)")
        t = replace(t, max_cond_frames=v)
    if "prefetch_frames" in d:
        t = replace(t, prefetch_frames=_bool(d["prefetch_frames"], source, "tracker.prefetch_frames"))
    if "policy" in d:
        t = replace(t, policy=_choice(d["policy"], ("meta", "samurai"), source, "tracker.policy"))
    if d.get("samurai") is not None:
        from engine.policies.samurai import parse_samurai

        if t.policy != "samurai":
            raise ConfigError(f"{_where(source, 'tracker.samurai')}: SAMURAI's keys need tracker.policy: samurai "
                              f"(the policy is {t.policy})")
        t = replace(t, samurai=parse_samurai(d["samurai"], source))
    return t


def parse_config(data: Any, base: Path | None = None, source: str = "<dict>") -> EngineConfig:
    """Validate a config mapping (as loaded from YAML)."""
    if data is None:
        data = {}
    _check_keys(data, TOP_KEYS, source, "<top level>")
    model = _path(data["model"], base, source, "model") if data.get("model") is not None else None
    backend = _backend(data.get("backend") or {}, BackendConfig(), base, source, "backend")
    stages: dict[str, BackendConfig] = {}
    overrides = data.get("stages") or {}
    _check_keys(overrides, STAGES, source, "stages")
    for stage, d in overrides.items():
        stages[stage] = _backend(d or {}, backend, base, source, f"stages.{stage}")
    tracker = _tracker(data.get("tracker") or {}, source)
    from engine.detect.settings import parse_detector  # it reads backends with this module's helpers

    detector = parse_detector(data.get("detector"), base, source, engine_backend=backend)
    return EngineConfig(model=model, backend=backend, stages=stages, tracker=tracker, source=source,
                        detector=detector)


def load_config(path: str | Path) -> EngineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not a text file ({exc})") from exc
    return parse_config(data, base=path.parent.resolve(), source=str(path))
