"""`python -m engine.bench --probe`: what this machine can run. Its CPU and the instruction sets that matter
for inference, what each runtime says its devices can do, and for every config in a folder (default
`configs/`) whether it runs here: each stage's backend is created exactly as tracking creates it (the same
checks: runtime installed, device present, precision among the device's capabilities), so a refusal is
the error tracking would give, word for word. Whether the config's model set is built is said apart: it
is one export away, not a property of the machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.bench.machine import FLAGS as ISA_SHOWN
from engine.bench.machine import machine_info
from engine.errors import EngineError
from engine.modelset import STAGES


@dataclass
class ConfigProbe:
    config: str
    runs: bool
    why_not: str | None = None  # the first refusal, as tracking would say it
    notes: list[str] = field(default_factory=list)  # fallbacks taken, the model set's state

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "runs": self.runs, "why_not": self.why_not, "notes": self.notes}


def device_capabilities() -> dict[str, Any]:
    """Runtime -> device -> what it reports (OpenVINO: OPTIMIZATION_CAPABILITIES; ONNX Runtime: providers)."""
    from backends.registry import available_backends

    out: dict[str, Any] = {}
    for runtime, devices in available_backends().items():
        if runtime == "openvino" and devices:
            from backends.openvino import device_capabilities as caps

            out[runtime] = {d: caps(d) for d in devices}
        else:
            out[runtime] = devices
    return out


def _engine_config(path: Path):
    from engine.config import load_config

    data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else None
    if isinstance(data, dict) and "sources" in data:  # a deployment file: its engine section
        from engine.serve.schema import load_deployment

        return load_deployment(path)[1]
    return load_config(path)


def probe_config(path: Path) -> ConfigProbe:
    from backends.registry import create_backend
    from engine.modelset import ModelSet

    name = path.name
    try:
        cfg = _engine_config(path)
    except (EngineError, ImportError) as exc:
        return ConfigProbe(name, False, f"the config itself: {exc}")
    probe = ConfigProbe(name, True)
    seen = []
    for stage in STAGES:
        bc = cfg.backend_for(stage)
        if bc in seen:
            continue
        seen.append(bc)
        try:
            backend = create_backend(bc)
        except EngineError as exc:
            return ConfigProbe(name, False, f"{stage}: {exc}")
        if backend.fallback_from is not None:
            probe.notes.append(f"{stage} runs on its configured fallback {bc.name}:{backend.config.device}")
    if cfg.model is None:
        probe.notes.append("names no model set")
    else:
        try:
            ModelSet.load(cfg.model)
            probe.notes.append("model set built")
        except EngineError:  # its own error names the export command; running the config says it
            probe.notes.append(f"model set not built yet ({cfg.model.resolve()}: see engine.export)")
    return probe


def probe(folder: Path) -> dict[str, Any]:
    import logging

    # a fallback taken or refused is a note of the table here, not a warning
    logging.getLogger("backends").setLevel(logging.ERROR)
    info = machine_info()
    flags = info.get("cpu_flags", {})
    return {"machine": info, "isa": sorted(f for f in ISA_SHOWN if flags.get(f)),
            "isa_missing": sorted(f for f in ISA_SHOWN if f in flags and not flags[f]),
            "devices": device_capabilities(),
            "configs": [probe_config(p).to_json() for p in sorted(folder.glob("*.yaml"))]}


def format_probe(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"CPU: {m.get('cpu', '?')}, {m.get('logical_cores')} logical cores",
             f"  instruction sets: {' '.join(result['isa']) or 'unknown (no /proc/cpuinfo)'}"
             + (f"; not: {' '.join(result['isa_missing'])}" if result["isa_missing"] else "")]
    for runtime, devices in result["devices"].items():
        if isinstance(devices, dict):
            lines.append(f"  {runtime}: " + "; ".join(f"{d} {', '.join(c) or '?'}" for d, c in devices.items()))
        else:
            lines.append(f"  {runtime}: " + (", ".join(devices) or "not installed"))
    width = max(len(c["config"]) for c in result["configs"]) if result["configs"] else 10
    lines.append("")
    lines.append(f"{'config':<{width}}  runs here  why not / notes")
    for c in result["configs"]:
        note = c["why_not"] if not c["runs"] else "; ".join(c["notes"])
        lines.append(f"{c['config']:<{width}}  {'yes' if c['runs'] else 'no':<9}  {note}")
    runs = sum(c["runs"] for c in result["configs"])
    lines.append(f"{runs} of {len(result['configs'])} configs run on this machine")
    return "\n".join(lines)
