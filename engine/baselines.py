"""Stage times measured alone, kept per machine, model set and runtime settings: what a live service
compares its own stage times with, to say how much the capture and the server cost the tracker.

`python -m engine.bench` records, for each engine run it makes with one object and a full memory bank, the
median time per call of every stage (`record`). `engine.serve` looks up the record of its own stage set
(`lookup`) and reports `live / alone`: the time its stages took per frame over the last minute, against
what the same calls took alone (the per-call medians times the live call counts, so any number of objects
compares). The key is the model set's stage files (sha256), each stage's runtime settings that change its
speed (runtime, device, precision, threads, hint, streams, spinning, pinning, device-side options) and the
machine (CPU model and core count); the live plan's capture settings (engine.live.plan) are not in it.

Records are JSON files in `$SAM2_EDGE_BASELINES` (default `~/.cache/sam2-edge/baselines`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.cpu import cpu_name

ENV = "SAM2_EDGE_BASELINES"
KEY_FIELDS = ("name", "device", "precision", "threads", "performance_hint", "num_streams", "io_binding",
              "cuda_graph", "keep_on_device", "spin_wait", "cpu_pinning")


def baseline_dir() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "sam2-edge" / "baselines").expanduser()


def baseline_key(modelset: Any, stage_configs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, what it is made of) for a model set run with these per-stage backend configs."""
    def settings(c: Any) -> dict[str, Any]:
        d = {f: getattr(c, f, None) for f in KEY_FIELDS}
        d["device"] = str(d["device"]).upper()  # onnxruntime's "cpu" is the CPU as OpenVINO's is
        d["spin_wait"] = bool(d["spin_wait"])  # None is the engine's default: off
        return d

    parts = {"stages": {s: modelset.manifest.stages[s].sha256 for s in sorted(stage_configs)},
             "backends": {s: settings(c) for s, c in sorted(stage_configs.items())},
             "cpu": cpu_name(), "logical_cores": os.cpu_count()}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return digest, parts


def record(modelset: Any, stage_configs: Mapping[str, Any], per_call_ms: Mapping[str, float],
           how: str) -> Path:
    """Keep the median ms per call of each stage, measured alone, for this machine, set and settings."""
    key, parts = baseline_key(modelset, stage_configs)
    folder = baseline_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"per_call_ms": dict(per_call_ms), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "how": how, "model_set": str(modelset.root), **parts}, indent=1, default=str))
    os.replace(tmp, path)
    return path


def lookup(modelset: Any, stage_configs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record for this machine, set and settings, or None when engine.bench has not measured it."""
    key, _ = baseline_key(modelset, stage_configs)
    path = baseline_dir() / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def expected_alone_s(per_call_ms: Mapping[str, float], calls: Mapping[str, int]) -> float | None:
    """What `calls` of each stage take alone (seconds); None when a called stage was not measured."""
    total = 0.0
    for stage, n in calls.items():
        if n == 0:
            continue
        if stage not in per_call_ms:
            return None
        total += n * per_call_ms[stage] / 1000
    return total
