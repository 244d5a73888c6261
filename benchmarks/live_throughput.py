"""Live throughput: the tracker on a real RTSP camera against the same tracker alone, and what the capture
costs it, in phases that take turns so the machine's own drift (shared, noisy boxes) falls on all alike.

    python benchmarks/live_throughput.py --config benchmarks/live/throughput/edgetam512-ov.yaml \\
        --variants default,old --repeats 3 --phase-seconds 15 --out benchmarks/live/throughput/edgetam512-ov

The camera is gst-rtsp-server serving bedroom.mp4 (960 x 540, H.264, 30 fps) as it is, looped
(benchmarks/rtsp_camera.py, run by the system Python): it costs the box about 1% of a core. One process
loads the model set once (twice where a variant changes a runtime setting) and runs, `--repeats` times in
turn, each for `--phase-seconds` with one object prompted by a click and its memory bank full:

- `alone`: the clip's frames decoded into memory first, tracked by `Tracker.stream` (no capture): the
  tracker as it runs offline;
- `stream:<variant>`: the same, on the stage set with the variant's runtime settings (ONNX Runtime's
  spinning): the tracker alone as that variant runs it;
- `capture:<variant>`: the offline stream, while a capture thread of that variant reads the camera and drops
  every frame (what the capture alone costs);
- `live:<variant>`: engine.serve's `Service` on the camera (`realtime: latest`), prompted and warmed up
  before measuring: what a deployment gets.

A variant is a live plan (engine.live.plan) and ONNX Runtime's spinning: `default` is the engine's (the
capture at the tracker's priority, FFmpeg's decoding threads, no spinning); `old` is how live sources ran
before (the same capture, ONNX Runtime spinning, its own default); the others change one thing. `alone`
runs the engine's defaults. Each live or capture phase is compared with the alone phase of the
same round; the table gives the medians over the rounds. `--cores N` pins the process to N cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "videos" / "bedroom.mp4"
CLICK = (480, 270)
OLD = {"capture_nice": 0, "decode_threads": 0}
VARIANTS = {  # live: the deployment's `live:` keys; spin: ONNX Runtime's spinning (None: the engine's default, off)
    "default": {"live": {}, "spin": None},  # the engine's defaults (engine.live.plan, backends/base.py)
    "old": {"live": OLD, "spin": True},  # before the plan: ONNX Runtime's own default, spinning
    "nice10-decode1": {"live": {"capture_nice": 10, "decode_threads": 1}, "spin": None},  # a candidate plan
    "nice-only": {"live": {**OLD, "capture_nice": 10}, "spin": True},
    "decode1-only": {"live": {**OLD, "decode_threads": 1}, "spin": True},
    "nospin-only": {"live": OLD, "spin": None},
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


class Trackers:
    """One loaded stage set per runtime setting the variants need (most share the offline one)."""

    def __init__(self, config: Path, threads: int | None) -> None:
        from engine.config import load_config

        self.cfg = load_config(config)
        if threads:
            self.cfg = replace(self.cfg, backend=replace(self.cfg.backend, threads=threads),
                               stages={k: replace(v, threads=threads) for k, v in self.cfg.stages.items()})
        self.made: dict[str, Any] = {}

    def get(self, spin: bool | None):
        from engine.modelset import ModelSet
        from engine.profiling import ProfiledStages
        from engine.stages import StageSet
        from engine.tracker import Tracker

        cfg = self.cfg
        if spin is not None and cfg.backend.name == "onnxruntime":
            cfg = replace(cfg, backend=replace(cfg.backend, spin_wait=spin),
                          stages={k: replace(v, spin_wait=spin) for k, v in cfg.stages.items()})
        key = repr(cfg)
        if key not in self.made:
            ms = ModelSet.load(cfg.model)
            stages = ProfiledStages(StageSet.load(ms, cfg))
            self.made[key] = (Tracker(ms, stages, cfg.tracker), stages)
        return self.made[key]


def measure_stream(stream, frames, stages, seconds: float, start: int) -> tuple[dict[str, Any], int]:
    steps, stage_s = [], []
    i = start
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        s0, t0 = stages.total_s, time.perf_counter()
        stream.track(frames[i % len(frames)])
        steps.append(time.perf_counter() - t0)
        stage_s.append(stages.total_s - s0)
        i += 1
    ms = np.array(steps) * 1000
    return {"frames": len(steps), "fps": len(steps) / sum(steps),
            "frame_ms_p50": float(np.percentile(ms, 50)), "frame_ms_p95": float(np.percentile(ms, 95)),
            "stage_ms": 1000 * float(np.mean(stage_s))}, i


def measure_live(tracker, stages, variant: dict[str, Any], url: str, seconds: float) -> dict[str, Any]:
    from engine.serve.schema import parse_deployment
    from engine.serve.service import Service

    dep, _ = parse_deployment({"engine": {"backend": {"name": "onnxruntime"}}, "live": variant["live"],
                               "sources": [{"id": "cam", "url": url}]})
    service = Service(dep, tracker, stage_timer=lambda: stages.total_s)
    runner = service.sources["cam"]
    results: list[tuple[float, float, float]] = []
    service.subscribe("cam", lambda r: r.kind == "track" and results.append(
        (time.monotonic(), r.latency_s, stages.total_s)))
    service.start()
    try:
        t0 = time.monotonic()
        while not runner.session.held_frame_ids() and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        service.prompt("cam", runner.session.held_frame_ids()[-1], 1, points=[CLICK], labels=[1])
        while runner.session.tracked < 18 and time.monotonic() - t0 < 300:  # the memory bank fills
            time.sleep(0.02)
        start = len(results)
        time.sleep(seconds)
        window = results[start:]
        status = runner.status()
    finally:
        service.stop()
    times = np.array([r[0] for r in window])
    gaps = np.diff(times) * 1000
    lat = np.array([r[1] for r in window]) * 1000
    return {"frames": len(window), "fps": (len(window) - 1) / (times[-1] - times[0]),
            "frame_ms_p50": float(np.percentile(gaps, 50)), "frame_ms_p95": float(np.percentile(gaps, 95)),
            "stage_ms": float(np.mean(np.diff([r[2] for r in window]))) * 1000,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
            "fps_in": status["fps_in"], "present": bool(runner.session.last and runner.session.last.objects)}


def run(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    from engine.live import Capture
    from engine.live.plan import LivePlan

    trackers = Trackers(args.config, args.threads)
    tracker, stages = trackers.get(spin=None)
    frames = clip_frames(120)
    stream = tracker.stream()
    stream.track(frames[0])
    stream.add_new_points_or_box(1, points=[CLICK], labels=[1])
    for i in range(1, 18):
        stream.track(frames[i])
    nxt = 18
    streams = {}  # the variants' own stage sets, each with a warm stream of its own
    for v in args.variants:  # every stage set a variant needs, loaded before measuring
        t, st = trackers.get(VARIANTS[v]["spin"])
        if "stream" in args.modes and id(t) not in streams:
            vs = t.stream()
            vs.track(frames[0])
            vs.add_new_points_or_box(1, points=[CLICK], labels=[1])
            for i in range(1, 18):
                vs.track(frames[i])
            streams[id(t)] = [vs, st, 18]
    rows = []
    for rnd in range(args.repeats):
        phases = [("alone", None)] + [(f"{m}:{v}", v) for v in args.variants for m in args.modes if m != "alone"]
        for phase, v in phases:
            if phase == "alone":
                out, nxt = measure_stream(stream, frames, stages, args.phase_seconds, nxt)
            elif phase.startswith("stream:"):
                entry = streams[id(trackers.get(VARIANTS[v]["spin"])[0])]
                out, entry[2] = measure_stream(entry[0], frames, entry[1], args.phase_seconds, entry[2])
            elif phase.startswith("capture:"):
                cap = Capture(url, policy="latest", plan=LivePlan(**VARIANTS[v]["live"])).start()
                try:
                    out, nxt = measure_stream(stream, frames, stages, args.phase_seconds, nxt)
                finally:
                    cap.stop()
                out["capture_fps"] = cap.fps_in
            else:
                t, st = trackers.get(VARIANTS[v]["spin"])
                out = measure_live(t, st, VARIANTS[v], url, args.phase_seconds)
            row = {"round": rnd, "phase": phase, **{k: round(x, 2) if isinstance(x, float) else x
                                                    for k, x in out.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]], cores: int) -> list[str]:
    lines = ["| phase | cores | tracked fps | vs alone (same round) | frame ms p50 / p95 | stages ms / frame | "
             "latency p50 / p95 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    alone = {r["round"]: r["fps"] for r in rows if r["phase"] == "alone"}
    for phase in dict.fromkeys(r["phase"] for r in rows):
        rs = [r for r in rows if r["phase"] == phase]
        med = {k: float(np.median([r[k] for r in rs])) for k in ("fps", "frame_ms_p50", "frame_ms_p95", "stage_ms")}
        ratios = [r["fps"] / alone[r["round"]] for r in rs]
        each = ", ".join(f"{x:.2f}" for x in ratios)
        ratio = "-" if phase == "alone" else f"{np.median(ratios):.2f} ({each})"
        lat = "-" if "latency_ms_p50" not in rs[0] else \
            f"{np.median([r['latency_ms_p50'] for r in rs]):.0f} / {np.median([r['latency_ms_p95'] for r in rs]):.0f}"
        lines.append(f"| {phase} | {cores} | {med['fps']:.2f} | {ratio} | {med['frame_ms_p50']:.0f} / "
                     f"{med['frame_ms_p95']:.0f} | {med['stage_ms']:.0f} | {lat} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the engine config (model set, runtime)")
    p.add_argument("--variants", default="default,old", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--modes", default="capture,live", help="besides alone, each round: stream, capture, live")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--phase-seconds", type=float, default=15.0)
    p.add_argument("--threads", type=int, help="the runtime's threads (default: the config's)")
    p.add_argument("--cores", type=int, default=0, help="pin the run to this many cores (0: all)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if args.cores:
        os.sched_setaffinity(0, set(range(args.cores)))
    cores = len(os.sched_getaffinity(0))
    cam, url = camera(free_port())
    try:
        rows = run(args, url)
    finally:
        cam.kill()
    lines = table(rows, cores)
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runs.json").write_text(json.dumps({"config": str(args.config), "cores": cores, "rows": rows,
                                                        "variants": {v: VARIANTS[v] for v in args.variants}},
                                                       indent=1))
        (args.out / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
