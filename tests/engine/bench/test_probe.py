"""`python -m engine.bench --probe`: which configs run here, each refusal the error tracking would give. The
expectations ask the runtimes what the devices can do, never the CPU's name; a CPU without bf16 is also
faked on machines that have it."""

from __future__ import annotations

import json

import pytest

import backends.openvino as openvino_backend
from backends.registry import available_backends
from engine.bench.cli import main as bench_main
from engine.bench.probe import probe


def _configs(folder, modelset_dir):
    folder.mkdir()
    (folder / "ov-f32.yaml").write_text(f"model: {modelset_dir}\nbackend: {{name: openvino, device: CPU, precision: f32}}\n")
    (folder / "ov-bf16.yaml").write_text("model: ../nowhere\nbackend: {name: openvino, device: CPU, precision: bf16}\n")
    (folder / "ort-cuda.yaml").write_text("backend: {name: onnxruntime, device: cuda}\n")
    (folder / "deploy.yaml").write_text(f"engine: {{model: {modelset_dir}, backend: {{name: onnxruntime}}}}\n"
                                        "sources: [{id: cam, url: camera:0}]\n")
    (folder / "broken.yaml").write_text("backend: {name: tensorflow}\n")
    return folder


@pytest.mark.parametrize("cpu", ["this machine", "a CPU without bf16"])
def test_each_config_runs_or_says_why_not(tmp_path, modelset_dir, monkeypatch, cpu):
    if cpu == "a CPU without bf16":
        monkeypatch.setattr(openvino_backend, "device_capabilities", lambda device: ["FP32", "INT8"])
    result = probe(_configs(tmp_path / "configs", modelset_dir))
    rows = {c["config"]: c for c in result["configs"]}
    assert rows["ov-f32.yaml"]["runs"] and "model set built" in rows["ov-f32.yaml"]["notes"]
    assert rows["deploy.yaml"]["runs"]  # a deployment file: its engine section
    bf16 = rows["ov-bf16.yaml"]
    if "BF16" in openvino_backend.device_capabilities("CPU"):
        assert bf16["runs"] and any("model set not built yet" in n for n in bf16["notes"])
    else:
        assert not bf16["runs"] and "cannot run precision bf16 (its capabilities: FP32, INT8" in bf16["why_not"]
    cuda = rows["ort-cuda.yaml"]
    assert cuda["runs"] == ("CUDA" in available_backends()["onnxruntime"])
    if not cuda["runs"]:
        assert "onnxruntime device CUDA (CUDAExecutionProvider) is not available" in cuda["why_not"]
    assert not rows["broken.yaml"]["runs"] and "tensorflow" in rows["broken.yaml"]["why_not"]
    if result["machine"].get("cpu_flags"):  # Linux: every instruction set shown is either had or not
        assert "avx2" in result["isa"] + result["isa_missing"]


def test_the_command_prints_the_table_and_writes_json(tmp_path, modelset_dir, capsys):
    folder = _configs(tmp_path / "configs", modelset_dir)
    assert bench_main(["--probe", str(folder), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("CPU: ") and "instruction sets:" in text and "openvino: CPU " in text
    assert "ov-f32.yaml" in text and "configs run on this machine" in text
    saved = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert len(saved["configs"]) == 5
