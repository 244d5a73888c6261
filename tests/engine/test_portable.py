"""Nothing Linux-only at import time or on a path a user runs (DirectML users are on Windows)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import require_data

LINUX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")  # "posix" itself the interpreter needs

SCRIPT = """
import sys
for name in {modules!r}:
    sys.modules[name] = None  # importing it now raises ImportError, as on Windows
from engine.cli import run_cli
from engine.track import main
code = run_cli(main, ["--config", {config!r}, "--video", {video!r}, "--point", "420,250", "--max-frames", "1",
                      "--out", {out!r}, "--no-video", "--quiet"])
import engine.batch.__main__, engine.batch.local, engine.bench, engine.live, engine.serve.app  # noqa: F401, E401
sys.exit(code)
"""


def test_track_cli_and_its_summary_without_linux_only_modules(modelset_dir, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    video = require_data() / "davis-car-shadow" / "frames"
    out = tmp_path / "out"
    script = SCRIPT.format(modules=LINUX_ONLY, config=str(config), video=str(video), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 2 and summary["memory"]["bytes"] > 0
