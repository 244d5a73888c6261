"""Live throughput: the tracker on a real RTSP camera against the same tracker alone, and what the capture
costs it.

    python benchmarks/live_throughput.py --config benchmarks/live/edgetam512-ov.yaml --seconds 40 \\
        --variants default,old --out benchmarks/live/throughput/edgetam512-ov

The camera is gst-rtsp-server serving bedroom.mp4 (960 x 540, H.264, 30 fps) as it is, looped
(benchmarks/rtsp_camera.py, run by the system Python): it costs the box about 1% of a core. Each run is a
process of its own, one object prompted by a click, memory bank full before measuring:

- `alone`: the clip's frames decoded into memory first, then tracked by `Tracker.stream` (no capture);
- `alone+capture`: the same, while a capture thread reads the camera and drops every frame (the capture's
  cost alone);
- `live`: engine.serve's `Service` on the camera (`realtime: latest`): what a deployment gets.

A variant sets the live plan (engine.live.plan: the deployment's `live:` keys capture_nice and
decode_threads, and whether ONNX Runtime's spinning is turned off) and backend keys (threads, cpu_pinning);
`old` is how live sources ran before the plan: the capture at the tracker's priority, FFmpeg's decode threads
(one per core), ONNX Runtime spinning. `alone` always runs the tracker as it runs offline. `--cores N` runs every process on N cores (sched_setaffinity), so
a many-core box measures the 2-core case too.

Reported per run: tracked fps, time per tracked frame p50/p95 (alone: one step; live: between results),
stage time per frame, latency capture to result p50/p95 (live), and live fps / alone fps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "videos" / "bedroom.mp4"
CLICK = (480, 270)
OLD = {"capture_nice": 0, "decode_threads": 0}
VARIANTS = {  # live: the deployment's `live:` section; live_runtime: engine.live.plan.runtime_settings applied
    "default": {"live_runtime": True},  # the engine's default plan for live sources
    "old": {"live": OLD, "live_runtime": False},  # before: no plan
    "nice-only": {"live": {**OLD, "capture_nice": 10}, "live_runtime": False},
    "decode1-only": {"live": {**OLD, "decode_threads": 1}, "live_runtime": False},
    "nospin-only": {"live": OLD, "live_runtime": True},
    "threads1": {"live_runtime": True, "backend": {"threads": 1}},
    "pinning-on": {"live_runtime": True, "backend": {"cpu_pinning": True}},
    "pinning-off": {"live_runtime": True, "backend": {"cpu_pinning": False}},
}


def camera(port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(["/usr/bin/python3", str(Path(__file__).with_name("rtsp_camera.py")), str(port),
                             str(CLIP)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        sys.exit("the RTSP camera did not start (gst-rtsp-server: Debian gir1.2-gst-rtsp-server-1.0, python3-gi)")
    return proc, line[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- one run (a child process)
def build(config: Path, variant: dict[str, Any], live: bool):
    from dataclasses import replace

    from engine.config import load_config
    from engine.live.plan import runtime_settings
    from engine.modelset import ModelSet
    from engine.profiling import ProfiledStages
    from engine.stages import StageSet
    from engine.tracker import Tracker

    cfg = load_config(config)
    over = variant.get("backend", {})
    if over:
        cfg = replace(cfg, backend=replace(cfg.backend, **over),
                      stages={k: replace(v, **over) for k, v in cfg.stages.items()})
    if live and variant.get("live_runtime", True):
        cfg = runtime_settings(cfg)
    ms = ModelSet.load(cfg.model)
    stages = ProfiledStages(StageSet.load(ms, cfg))
    return cfg, Tracker(ms, stages, cfg.tracker), stages


def clip_frames(n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def run_alone(config: Path, variant: dict[str, Any], seconds: float, url: str | None) -> dict[str, Any]:
    from engine.live import Capture
    from engine.live.plan import LivePlan

    cfg, tracker, stages = build(config, variant, live=False)  # the tracker as it runs offline
    frames = clip_frames(120)
    capture = None
    if url is not None:  # the capture's cost: a capture thread reads the camera, its frames are never taken
        plan = LivePlan(**variant.get("live", {}))
        capture = Capture(url, policy="latest", plan=plan).start()
    stream = tracker.stream()
    stream.track(frames[0])
    stream.add_new_points_or_box(1, points=[CLICK], labels=[1])
    for i in range(1, 17):  # the memory bank fills
        stream.track(frames[i])
    steps, stage_s = [], []
    t_end = time.monotonic() + seconds
    i = 17
    while time.monotonic() < t_end:
        s0, t0 = stages.total_s, time.perf_counter()
        stream.track(frames[i % len(frames)])
        steps.append(time.perf_counter() - t0)
        stage_s.append(stages.total_s - s0)
        i += 1
    if capture is not None:
        capture.stop()
    steps_ms = np.array(steps) * 1000
    return {"frames": len(steps), "fps": round(len(steps) / sum(steps), 3),
            "frame_ms": {"p50": round(float(np.percentile(steps_ms, 50)), 1),
                         "p95": round(float(np.percentile(steps_ms, 95)), 1)},
            "stage_ms_per_frame": round(1000 * float(np.mean(stage_s)), 1),
            "capture_frames_in": capture.frames_in if capture else None}


def run_live(config: Path, variant: dict[str, Any], seconds: float, url: str, warm: float) -> dict[str, Any]:
    from engine.serve.schema import parse_deployment
    from engine.serve.service import Service

    cfg, tracker, stages = build(config, variant, live=True)
    dep, _ = parse_deployment({"engine": {"backend": {"name": cfg.backend.name}}, "live": variant.get("live", {}),
                               "sources": [{"id": "cam", "url": url}]})
    service = Service(dep, tracker, stage_timer=lambda: stages.total_s)
    runner = service.sources["cam"]
    results: list[tuple[float, float, float]] = []  # (result time, latency, stage seconds so far)
    service.subscribe("cam", lambda r: r.kind == "track" and results.append(
        (time.monotonic(), r.latency_s, stages.total_s)))
    service.start()
    try:
        t0 = time.monotonic()
        while not runner.session.held_frame_ids() and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        service.prompt("cam", runner.session.held_frame_ids()[-1], 1, points=[CLICK], labels=[1])
        time.sleep(warm)
        start = len(results)
        time.sleep(seconds)
        window = results[start:]
        status = runner.status()
    finally:
        service.stop()
    times = np.array([r[0] for r in window])
    gaps = np.diff(times) * 1000
    lat = np.array([r[1] for r in window]) * 1000
    stage = np.diff([r[2] for r in window]) * 1000
    return {"frames": len(window), "fps": round((len(window) - 1) / (times[-1] - times[0]), 3),
            "frame_ms": {"p50": round(float(np.percentile(gaps, 50)), 1), "p95": round(float(np.percentile(gaps, 95)), 1)},
            "stage_ms_per_frame": round(float(np.mean(stage)), 1),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1)},
            "fps_in": status["fps_in"], "dropped": status["frames_dropped"],
            "objects_present": runner.session.last is not None and bool(runner.session.last.objects)}


def child(args: argparse.Namespace) -> int:
    spec = json.loads(args.child)
    if spec.get("cores"):
        os.sched_setaffinity(0, set(range(spec["cores"])))
    variant = VARIANTS[spec["variant"]]
    if spec["mode"] == "live":
        out = run_live(args.config, variant, args.seconds, spec["url"], args.warm)
    else:
        out = run_alone(args.config, variant, args.seconds, spec["url"] if spec["mode"] == "alone+capture" else None)
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ----------------------------------------------------------------------------- the matrix
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the engine config (model set, runtime)")
    p.add_argument("--variants", default="default,old", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--modes", default="alone,alone+capture,live")
    p.add_argument("--seconds", type=float, default=40.0, help="measured seconds per run")
    p.add_argument("--warm", type=float, default=8.0, help="live: seconds after the prompt before measuring")
    p.add_argument("--cores", type=int, default=0, help="run on this many cores (0: all)")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    cam, url = camera(free_port())
    rows = []
    try:
        for variant in args.variants.split(","):
            for mode in args.modes.split(","):
                spec = {"variant": variant, "mode": mode, "url": url, "cores": args.cores}
                cmd = [sys.executable, __file__, "--config", str(args.config), "--seconds", str(args.seconds),
                       "--warm", str(args.warm), "--child", json.dumps(spec)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the {variant} {mode} run failed")
                row = {"variant": variant, "mode": mode, "cores": args.cores or os.cpu_count(),
                       **json.loads(line[0][7:])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        cam.kill()
    alone = {r["variant"]: r["fps"] for r in rows if r["mode"] == "alone"}  # the tracker offline
    lines = ["| variant | mode | cores | tracked fps | frame ms p50 / p95 | stages ms / frame | latency p50 / p95 | "
             "live / alone |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    base = alone.get("default") or next(iter(alone.values()), None)
    for r in rows:
        lat = r.get("latency_ms")
        lat_text = f"{lat['p50']} / {lat['p95']}" if lat else "-"
        ratio = f"{r['fps'] / base:.2f}" if base and r["mode"] != "alone" else "-"
        lines.append(f"| {r['variant']} | {r['mode']} | {r['cores']} | {r['fps']:.2f} | {r['frame_ms']['p50']} / "
                     f"{r['frame_ms']['p95']} | {r['stage_ms_per_frame']} | {lat_text} | {ratio} |")
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runs.json").write_text(json.dumps({"config": str(args.config), "rows": rows}, indent=1))
        (args.out / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
