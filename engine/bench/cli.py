"""python -m engine.bench: options, one process per run, and the report."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import engine.bench as package
from engine.bench.plan import DEFAULT_MODEL, RunSpec, ensure_model_set, int_list, plan_runs
from engine.bench.runs import single_run
from engine.errors import ConfigError, EngineError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=package.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="a deployment YAML (configs/); flags below override its backend")
    p.add_argument("--backend", help="onnxruntime, openvino, or a comma list of both")
    p.add_argument("--device", help="device for the backend(s): cpu/cuda/directml (onnxruntime), CPU/GPU/NPU/AUTO (openvino)")
    p.add_argument("--precision", help="f32, bf16, f16, or a comma list (unsupported pairs are skipped)")
    p.add_argument("--threads", type=int, help="threads for every runtime, PyTorch included (default: all cores)")
    p.add_argument("--model", type=Path, help=f"model set folder (default: the --config's model, else {DEFAULT_MODEL}, exported if "
                        "missing)")
    p.add_argument("--video", help="video file or image folder (default: a synthetic clip of moving shapes)")
    p.add_argument("--frames", type=int, default=8, help="steady-state frames to measure (default 8)")
    p.add_argument("--warmup", type=int, default=16,
                   help="tracked frames before measuring; 16 fills the memory bank (default 16)")
    p.add_argument("--objects", default="1", help="object counts to sweep, e.g. 1,2,4")
    p.add_argument("--memory-frames", default="7", help="memory frames to sweep, e.g. 1,3,7")
    p.add_argument("--static-model", type=Path,
                   help="a static model set (engine.export --static) of the same model: every runtime run is "
                        "repeated on it, so static and dynamic shapes are compared in one run")
    p.add_argument("--compare-model", action="append", type=Path, default=[], metavar="SET",
                   help="another model set (e.g. EdgeTAM beside SAM 2.1-tiny): every run, the PyTorch reference "
                        "included, is repeated on it in the same bench run; repeat the flag for more")
    p.add_argument("--reference", choices=["torch"], help="also time the PyTorch reference on the same weights")
    p.add_argument("--checkpoint", type=Path, help="for --reference with a checkpoint-made model set: the .pt file")
    p.add_argument("--out", type=Path, help="write report.json, report.csv and report.png here")
    p.add_argument("--probe", nargs="?", const=Path(__file__).resolve().parents[2] / "configs", type=Path,
                   metavar="FOLDER", help="say which configs of FOLDER (default: configs/) this machine can run, "
                                          "each refusal's reason, and the CPU's instruction sets; then exit "
                                          "(with --out: probe.json there)")
    p.add_argument("--detector", choices=["onnx", "hog-people", "motion"],
                   help="also time this detector on the same frames (default: the --config's detector:, if any)")
    p.add_argument("--detector-model", type=Path, help="--detector onnx: the detector's .onnx file")
    p.add_argument("--single-run", help=argparse.SUPPRESS)
    return p


def _child(spec: RunSpec, argv: list[str], workdir: Path) -> list[dict[str, Any]]:
    tag = "".join(c if c.isalnum() or c in ".-" else "_" for c in spec.tag)
    out = workdir / f"run-{spec.runtime}-{spec.device}-{spec.precision}-{tag}.json"
    cmd = [sys.executable, "-m", "engine.bench", *argv, "--single-run", json.dumps(asdict(spec)) + "@" + str(out)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr stays live: progress bars
    if proc.returncode != 0:
        error = out.with_suffix(".error")
        why = error.read_text() if error.is_file() else proc.stdout.strip()[-2000:]
        raise EngineError(f"the {spec.label} run failed: {why}")
    return json.loads(out.read_text())


def run_probe(folder: Path, out: Path | None) -> int:
    from engine.bench.probe import format_probe, probe

    if not folder.is_dir():
        raise ConfigError(f"--probe {folder}: not a folder of configs")
    result = probe(folder)
    print(format_probe(result))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "probe.json").write_text(json.dumps(result, indent=1))
    return 0


def _strip_out(argv: list[str]) -> list[str]:
    clean, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        if a.startswith("--out="):
            continue
        clean.append(a)
    return clean


def _detector_settings(args: argparse.Namespace) -> Any:
    from engine.config import load_config
    from engine.detect.settings import parse_detector

    if args.detector is not None:
        d: dict[str, Any] = {"kind": args.detector}
        if args.detector_model is not None:
            d["model"] = str(args.detector_model)
        backend = load_config(args.config).backend if args.config else None
        return parse_detector(d, Path.cwd(), "the command line", engine_backend=backend)
    if args.detector_model is not None:
        raise ConfigError("--detector-model needs --detector onnx")
    return load_config(args.config).detector if args.config else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be at least 1 and --warmup at least 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be at least 1")
    if args.probe is not None:
        return run_probe(args.probe, args.out)
    int_list(args.objects, "objects", 1, 64)
    int_list(args.memory_frames, "memory-frames", 1, 64)
    if args.model is None and args.config is not None:  # the config's own model set, as engine.track runs it
        from engine.config import load_config

        args.model = load_config(args.config).model
    if args.single_run:
        spec_json, _, out = args.single_run.rpartition("@")
        spec = RunSpec(**json.loads(spec_json))
        try:
            Path(out).write_text(json.dumps(single_run(spec, args, ensure_model_set(args.model))))
        except EngineError as exc:  # the parent reports it
            Path(out).with_suffix(".error").write_text(str(exc))
            raise
        return 0

    from engine.bench.machine import machine_info
    from engine.bench.report import format_table, run_label, write_chart, write_csv, write_json
    from engine.modelset import ModelSet

    runs = plan_runs(args)
    if args.video is not None:
        from engine.video import open_video

        open_video(args.video).close()  # fail early on a bad path
    model_dir = ensure_model_set(args.model)
    ms = ModelSet.load(model_dir)
    if args.static_model:
        twin = ModelSet.load(args.static_model)
        if twin.manifest.static is None or ms.manifest.static is not None:
            raise ConfigError(f"--static-model must be a static set and --model a dynamic one: {args.static_model} "
                              f"is {'static' if twin.manifest.static else 'dynamic'}, {model_dir} is "
                              f"{'static' if ms.manifest.static else 'dynamic'}")
        if (twin.variant, twin.manifest.image_size) != (ms.variant, ms.manifest.image_size):
            raise ConfigError(f"--static-model {args.static_model} holds {twin.variant} at {twin.manifest.image_size}, "
                              f"--model {model_dir} {ms.variant} at {ms.manifest.image_size}")
    weights = ms.manifest.provenance.get("weights", {})
    what = ("random weights (seed {}); latency does not depend on the weights".format(weights.get("seed"))
            if weights.get("source") == "random" else f"checkpoint {weights.get('checkpoint')}")
    print(f"model set {model_dir}: {ms.variant} at {ms.manifest.image_size}x{ms.manifest.image_size}, {what}")
    print(f"method: one click per object on frame 0, {args.warmup} warm-up tracked frames, then {args.frames} "
          f"measured frames with the memory bank full")
    results: list[dict[str, Any]] = []
    if len(runs) == 1 and runs[0].runtime != "torch":
        results = single_run(runs[0], args, model_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for spec in runs:
                print(f"running {spec.label} ...", flush=True)
                results += _child(spec, _strip_out(argv), Path(tmp))
    from engine.bench.roofline import PROBE_SIZE, fractions, probe

    rates = probe(args.threads)
    for r in results:
        precision = str(r["backend"].get("precision"))
        r["roofline"] = fractions(r["steady"], rates.get("bf16" if precision == "bf16" else "f32")
                                  if precision in ("f32", "bf16") or r["backend"]["runtime"] == "torch" else None,
                                  r.get("converted_stages") or tuple(r.get("int8_stages", ())))
    report = {
        "machine": machine_info(),
        "roofline": {"probe": f"OpenVINO CPU MatMul {PROBE_SIZE}x{PROBE_SIZE}, best of 5, threads {args.threads}",
                     "gemm_gflop_per_s": rates},
        "model": {"variant": ms.variant, "image_size": ms.manifest.image_size, "weights": weights,
                  "path": str(model_dir), "static_path": str(args.static_model) if args.static_model else None,
                  "compared": [str(p) for p in args.compare_model]},
        "method": {"warmup_frames": args.warmup, "measured_frames": args.frames,
                   "video": args.video or "synthetic moving shapes", "threads": args.threads,
                   "clicks": "one positive click per object on frame 0"},
        "runs": results,
    }
    print(format_table(results))
    detector = _detector_settings(args)
    if detector is not None:
        from engine.bench.detector import shares, time_detector
        from engine.bench.runs import _video

        timing = time_detector(detector, _video(args, args.frames + 2))
        report["detector"] = timing
        print(f"detector {timing['kind']}: {timing['median_ms']:.1f} ms a run (median of {timing['frames']}) on "
              f"{timing['frame_hw'][1]} x {timing['frame_hw'][0]} frames")
        print("\n".join(shares(timing, results)))
    print(f"roofline: this machine's GEMM rate f32 {rates['f32']} GFLOP/s, bf16 {rates['bf16']} GFLOP/s")
    for r in results:
        roof = r["roofline"]
        if roof:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in roof["stage_fraction"].items())
            frame = (f"frame at the roofline {roof['frame_roofline_ms']:.0f} ms ({roof['frame_fraction']:.0%} "
                     f"achieved)" if roof["frame_roofline_ms"] else roof["not_judged"])
            print(f"  {run_label(r)}: {frame}; of the GEMM rate: {shares}")
    for r in results:
        d = r["backend"]
        print(f"  {r['label']}: {d.get('runtime')} {d.get('version')} on {d.get('device')} "
              f"load {r['load_seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(report, args.out / "report.json")
        write_csv(results, args.out / "report.csv")
        charted = write_chart(results, args.out / "report.png")
        print(f"wrote {args.out}/report.json, report.csv" + (", report.png" if charted else
                                                                " (no chart: matplotlib is not installed)"))
    return 0
