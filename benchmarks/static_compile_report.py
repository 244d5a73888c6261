"""Compile every stage of model sets on OpenVINO and report what each compiled model leaves dynamic.

    python benchmarks/static_compile_report.py models/sam2.1_hiera_tiny models/sam2.1_hiera_tiny_static \
        --device CPU --precision f32

Prints one row per set and stage: compile seconds and the inputs/outputs whose shape is not fully known
(a static set must show none). Devices that are not present are an error, as everywhere in the engine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.base import BackendConfig  # noqa: E402
from backends.registry import create_backend  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.modelset import ModelSet  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help="model set folders")
    p.add_argument("--device", default="CPU")
    p.add_argument("--precision", default="f32")
    args = p.parse_args(argv)
    backend = create_backend(BackendConfig(name="openvino", device=args.device, precision=args.precision))
    print(f"OpenVINO {backend.describe()['version']} on {args.device}, {args.precision}")
    print("| model set | static section | stage | compile s | dynamic inputs/outputs |")
    print("| --- | --- | --- | --- | --- |")
    for root in args.models:
        ms = ModelSet.load(root)
        static = ms.manifest.static
        section = (f"{static.points} point slots; memory attention "
                   + ", ".join(f"{t.memory_slots}+{t.pointer_slots}" for t in static.tiers) + " memory+pointer slots"
                   if static else "none (dynamic)")
        for name in ms.manifest.stages:  # a static set's memory-attention tiers too
            stage = backend.load(ms.stage_path(name))
            dynamic = ", ".join(stage.dynamic_ports) or "none"
            print(f"| {root.name} | {section} | {name} | {stage.load_seconds:.2f} | {dynamic} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
