"""The deployable package: a wheel without torch, installed with only the openvino extra, tracks a clip.

Builds the wheel (`pip wheel .`), installs it into a fresh virtual environment with the `openvino`
extra alone, checks that neither torch nor onnxruntime came with it, and runs `engine.track` there on
a model set exported by this test run. Needs the package index (as the README's install does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import require_data

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def test_openvino_only_wheel_tracks_a_clip(modelset_dir, tmp_path, report):
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], cwd=tmp_path)
    (wheel,) = wheels.glob("sam2_edge-*.whl")
    with zipfile.ZipFile(wheel) as zf:  # the live page's files travel in the package (no CDN, no build)
        page = {f"engine/serve/page/{f.name}" for f in (ROOT / "engine" / "serve" / "page").iterdir()}
        assert len(page) >= 8 and page | {"engine/serve/routes/results.py"} <= set(zf.namelist())
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[openvino]"], cwd=tmp_path)
    absent = _run([str(py), "-c", "import importlib.util as u; "
                   "print([m for m in ('torch', 'onnxruntime', 'onnx', 'sam2', 'fastapi', 'uvicorn') if u.find_spec(m)])"], cwd=tmp_path)
    assert absent.stdout.strip() == "[]", absent.stdout

    config = tmp_path / "deploy.yaml"
    config.write_text(f"model: {modelset_dir}\nbackend: {{name: openvino, device: CPU, precision: f32}}\n")
    out = tmp_path / "out"
    video = require_data() / "davis-car-shadow" / "frames"
    # run outside the checkout, so the installed wheel is what runs
    _run([str(py), "-m", "engine.track", "--config", str(config), "--video", str(video), "--point", "420,250",
          "--max-frames", "3", "--out", str(out), "--quiet"], cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["frames"] == 4
    assert summary["model"]["stages"]["image_encoder"]["runtime"] == "openvino"

    # an absent runtime is an error naming the extra, not a traceback
    config.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    proc = subprocess.run([str(py), "-m", "engine.track", "--config", str(config), "--video", str(video),
                           "--point", "420,250", "--out", str(tmp_path / "o2"), "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "sam2-edge[onnxruntime]" in proc.stderr and "Traceback" not in proc.stderr
    # so is the live service without its extra: the core package carries no web stack
    proc = subprocess.run([str(py), "-m", "engine.serve", "--config", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "sam2-edge[serve]" in proc.stderr and "Traceback" not in proc.stderr
    report(f"openvino-only environment: {_size_mb(venv):.0f} MB installed (wheel {wheel.stat().st_size / 2**10:.0f} KB)")
