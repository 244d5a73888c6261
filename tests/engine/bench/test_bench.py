import csv
import json

import pytest

from engine.bench import main as bench_main
from engine.bench.flops import count_flops
from engine.bench.machine import FLAGS
from engine.bench.report import STAGE_ORDER, TIMED
from engine.cli import run_cli
from engine.modelset import ModelSet
from tests.conftest import TEST_SIZE


def test_bench_end_to_end(modelset_dir, tmp_path, capsys):
    out = tmp_path / "b"
    code = run_cli(bench_main, ["--backend", "onnxruntime,openvino", "--model", str(modelset_dir), "--warmup", "2",
                                "--frames", "2", "--objects", "1,2", "--memory-frames", "2,7", "--out", str(out)])
    console = capsys.readouterr().out
    assert code == 0, console
    assert "random weights" in console and "latency does not depend on the weights" in console
    report = json.loads((out / "report.json").read_text())
    assert {"machine", "model", "method", "runs"} <= set(report)
    m = report["machine"]
    # every flag that matters is reported, present or not (the test holds on any CPU)
    assert m["cpu"] and m["logical_cores"] >= 1 and set(m["cpu_flags"]) == set(FLAGS)
    assert all(isinstance(v, bool) for v in m["cpu_flags"].values())
    assert report["roofline"]["gemm_gflop_per_s"]["f32"] > 0
    runs = report["runs"]
    for r in runs:  # each stage's share of the probed GEMM rate, and the frame's time at that rate
        roof = r["roofline"]
        assert set(roof["stage_fraction"]) == set(STAGE_ORDER) and all(v > 0 for v in roof["stage_fraction"].values())
        assert 0 < roof["frame_roofline_ms"] and roof["frame_fraction"] > 0
    assert "roofline: this machine's GEMM rate f32" in console
    assert len(runs) == 2 * 2 * 2 and {r["backend"]["runtime"] for r in runs} == {"onnxruntime", "openvino"}
    for r in runs:
        assert {"label", "objects", "memory_frames", "backend", "load_seconds", "prompt_seconds", "first_frames",
                "steady", "peak_rss_mb", "memory_in_steady_state"} <= set(r)
        d = r["backend"]
        assert {"runtime", "version", "device", "provider", "precision", "threads", "stages"} <= set(d)
        st = r["steady"]
        assert st["frame"]["count"] == 2 and st["fps"] > 0 and 0 <= st["host_fraction"] < 1
        assert set(st["stages"]) == set(TIMED)
        for name, s in st["stages"].items():
            assert {"median_ms", "p90_ms", "min_ms", "count"} <= set(s["per_call"])
            if name != "memory_bank":  # stacking and storing memories: copies, no FLOPs to count
                assert s["gflop_per_call"] > 0 and s["gflop_per_s"] > 0
        # a keep and a gather per object and tracked frame
        assert st["stages"]["memory_bank"]["per_call"]["count"] == 2 * 2 * r["objects"]
        # the image encoder runs once per frame whatever the object count
        assert st["stages"]["image_encoder"]["per_call"]["count"] == 2
        assert st["stages"]["mask_decoder"]["per_call"]["count"] == 2 * r["objects"]
        assert r["memory_in_steady_state"]["memory_frames"] == 1 + min(r["memory_frames"] - 1, 3)  # frame 4
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert {row["stage"] for row in rows} >= {"frame", "host_overhead", *STAGE_ORDER}
    assert (out / "report.png").stat().st_size > 1000


def test_bench_reference_refuses_weights_it_cannot_rebuild(modelset_dir, tmp_path, capsys):
    import os

    import yaml

    ms = tmp_path / "edited"
    ms.mkdir()
    for f in modelset_dir.iterdir():
        if f.name != "modelset.yaml":
            os.symlink(f, ms / f.name)
    raw = yaml.safe_load((modelset_dir / "modelset.yaml").read_text())
    raw["provenance"]["weights"]["overrides"] = {"sam_mask_decoder.some.bias": "shifted by hand"}
    (ms / "modelset.yaml").write_text(yaml.safe_dump(raw))
    code = run_cli(bench_main, ["--model", str(ms), "--reference", "torch", "--warmup", "1", "--frames", "1"])
    err = capsys.readouterr()
    assert code == 2 and "cannot rebuild the reference" in err.out + err.err


def test_bench_reference_runs(modelset_dir, tmp_path, capsys):
    """The test set's calibrated random weights are rebuilt from its manifest for the PyTorch column."""
    ms = modelset_dir
    out = tmp_path / "b"
    code = run_cli(bench_main, ["--backend", "openvino", "--model", str(ms), "--reference", "torch", "--warmup", "1",
                                "--frames", "2", "--out", str(out)])
    console = capsys.readouterr().out
    assert code == 0, console
    runs = json.loads((out / "report.json").read_text())["runs"]
    assert [r["backend"]["runtime"] for r in runs] == ["openvino", "torch"]
    assert set(runs[1]["steady"]["stages"]) == set(STAGE_ORDER)  # the PyTorch run: its four stages
    assert runs[0]["memory_in_steady_state"] == runs[1]["memory_in_steady_state"] == {"memory_frames": 3,
                                                                                       "object_pointers": 3}
    assert "vs torch" in console and "1.00x" in console


@pytest.mark.parametrize("args,message", [
    (["--backend", "tensorrt"], "--backend 'tensorrt' is not known"),
    (["--precision", "int8"], "--precision 'int8' is not known"),
    (["--objects", "0"], "--objects values must lie between 1 and 64"),
    (["--objects", "a,b"], "--objects expects comma-separated integers"),
    (["--memory-frames", "9"], "--memory-frames values must lie between 1"),
    (["--frames", "0"], "--frames must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--video", "/nonexistent.mp4"], "video not found"),
    (["--model", "/nonexistent-model"], "model set /nonexistent-model not found"),
    (["--backend", "onnxruntime", "--device", "cuda"], "onnxruntime device CUDA"),
])
def test_bench_bad_arguments(args, message, modelset_dir, capsys):
    argv = args if "--model" in args else [*args, "--model", str(modelset_dir)]
    short = ["--warmup", "1"] + ([] if "--frames" in args else ["--frames", "1"])
    code = run_cli(bench_main, [*argv, *short])
    err = capsys.readouterr()
    assert code == 2
    assert message in err.err, err.err
    assert "Traceback" not in err.err


def test_bench_times_static_and_dynamic_sets_in_one_run(modelset_dir, static_modelset_dir, tmp_path, capsys):
    out = tmp_path / "b"
    code = run_cli(bench_main, ["--backend", "onnxruntime", "--model", str(modelset_dir), "--static-model",
                                str(static_modelset_dir), "--warmup", "3", "--frames", "1", "--out", str(out)])
    console = capsys.readouterr().out
    assert code == 0, console
    runs = {r["label"]: r for r in json.loads((out / "report.json").read_text())["runs"]}
    assert set(runs) == {"onnxruntime cpu f32", "onnxruntime cpu f32, static set"}
    dynamic, static = runs["onnxruntime cpu f32"], runs["onnxruntime cpu f32, static set"]
    # frame 4: the prompt and 3 recent memories selected by both; the static set runs its one-prompt
    # graph, which attends over all 7 memory slots, and the work counted is that graph's
    assert dynamic["memory_in_steady_state"] == static["memory_in_steady_state"] == {"memory_frames": 4,
                                                                                     "object_pointers": 4}
    work = [r["steady"]["stages"]["memory_attention"]["gflop_per_call"] for r in (dynamic, static)]
    print(f"memory attention GFLOP per call: dynamic {work[0]:.1f}, static {work[1]:.1f}")
    # each counted on its own graph at the shapes it ran: the dynamic one at 4 memories and 4 pointers, the
    # static one-prompt tier at its fixed 7 memory and 16 pointer slots
    feat = TEST_SIZE // 16
    shapes = {"curr": (1, 256, feat, feat), "memory": (4, 64, feat, feat), "memory_pos": (4, 64, feat, feat),
              "obj_ptrs": (4, 256), "obj_ptr_pos": (4, 64)}
    fixed = {t.name: t.shape for t in ModelSet.load(static_modelset_dir).manifest.stages["memory_attention_1cond"].inputs}
    assert fixed["memory"][0] == 7 and fixed["obj_ptrs"][0] == 16
    assert work[0] == round(count_flops(modelset_dir / "memory_attention.onnx", shapes) / 1e9, 3)
    assert work[1] == round(count_flops(static_modelset_dir / "memory_attention_1cond.onnx", fixed) / 1e9, 3)
    assert work[1] > work[0]


def test_bench_static_model_must_be_static(modelset_dir, capsys):
    code = run_cli(bench_main, ["--backend", "onnxruntime", "--model", str(modelset_dir), "--static-model",
                                str(modelset_dir), "--frames", "1", "--warmup", "0"])
    assert code != 0
    assert "--static-model must be a static set" in capsys.readouterr().err


def test_bench_runs_the_configs_model_and_compares_models(modelset_dir, static_modelset_dir, tmp_path, capsys):
    """--config without --model times the config's own model set; --compare-model repeats each run on
    another set in the same bench run, labelled by variant."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    out = tmp_path / "b"
    code = run_cli(bench_main, ["--config", str(cfg), "--compare-model", str(static_modelset_dir), "--warmup", "2",
                                "--frames", "1", "--out", str(out)])
    console = capsys.readouterr().out
    assert code == 0, console
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["path"] == str(modelset_dir) and report["model"]["compared"] == [str(static_modelset_dir)]
    labels = [r["label"] for r in report["runs"]]
    name = f"onnxruntime cpu f32, sam2.1_hiera_tiny {TEST_SIZE}"
    assert labels == [name, f"{name} static"]
    # the run's stage times alone are recorded for engine.serve, found by the config it loads (engine.baselines)
    from engine.baselines import lookup
    from engine.config import load_config
    from engine.modelset import STAGES, ModelSet

    engine_cfg = load_config(cfg)  # as engine.serve loads it
    alone = lookup(ModelSet.load(modelset_dir), {s: engine_cfg.backend_for(s) for s in STAGES})
    assert alone is not None and alone["per_call_ms"] == {
        s: v["per_call"]["median_ms"] for s, v in report["runs"][0]["steady"]["stages"].items() if s in STAGES}
    assert report["runs"][0]["alone_baseline"].endswith(".json")
