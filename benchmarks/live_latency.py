"""Live latency: sources faster than the tracker, through engine.serve's service, against the loop
engine.track ran before the live capture (one cv2 read per tracked frame).

    python benchmarks/live_latency.py --config configs/edgetam-512-ov.yaml --sources 1,2,4 --seconds 60 \\
        --out benchmarks/live/edgetam512
    python benchmarks/live_latency.py --config ... --sources 1 --seconds 600 --before --out ...  # the before

Each source is an HTTP MJPEG camera in a child process: bedroom.mp4 at 640 x 360, looped, at --fps, each
frame stamped with its generation time in a 40-bit barcode, so latency is measured from the moment the
camera made the frame to the moment its result exists, for both loops alike. Like a camera, the server
sends its current frame at each tick and waits when the client does not read (TCP back-pressure).

Reported per source: tracked fps, latency p50/p95/max and its drift (last minute against the first),
drop rate, prompt to first result (a click on the newest held frame, to the first tracked result that
holds the new object), and the service's own time per frame outside the tracker step, as a share.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BITS = 40
BLOCK = 16
W, H = 640, 360
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- the stamped camera
def stamp(frame: np.ndarray, t: float) -> np.ndarray:
    ms = int(t * 1000) % (1 << BITS)
    out = frame.copy()
    for b in range(BITS):
        out[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (ms >> b) & 1 else 0
    return out


def read_stamp(frame: np.ndarray, now: float) -> float:
    """The generation time stamped in a frame (RGB or BGR), unwrapped against `now`."""
    gray = frame[:BLOCK, :BITS * BLOCK].reshape(BLOCK, BITS, BLOCK, -1).mean(axis=(0, 2, 3))
    ms = sum(1 << b for b in range(BITS) if gray[b] > 127)
    base = int(now * 1000) - (int(now * 1000) % (1 << BITS))
    t = (base + ms) / 1000
    return t - (1 << BITS) / 1000 if t > now + 1 else t


def serve_camera(port: int, fps: float) -> None:
    cap = cv2.VideoCapture(str(DATA / "videos" / "bedroom.mp4"))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA))

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            t0 = time.monotonic()
            tick = 0
            try:
                while True:
                    due = t0 + tick / fps
                    now = time.monotonic()
                    if due > now:
                        time.sleep(due - now)
                    else:  # the client was not reading: skip the ticks missed, as a camera's clock does
                        tick = int((now - t0) * fps)
                    img = stamp(frames[tick % len(frames)], time.time())
                    jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                    tick += 1
            except (BrokenPipeError, ConnectionResetError):
                return

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cameras(n: int, fps: float) -> tuple[list[subprocess.Popen], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--camera", str(port), "--fps", str(fps)]))
        urls.append(f"http://127.0.0.1:{port}/stream.mjpg")
    for url in urls:  # wait until each listens
        port = int(url.split(":")[2].split("/")[0])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
    return procs, urls


# ----------------------------------------------------------------------------- runs
def series_summary(series: list[tuple[float, float]], tracked: int, seconds: float) -> dict:
    lat = np.array([v for _, v in series]) * 1000
    t = np.array([s for s, _ in series])
    first = lat[t < t[0] + 60] if len(t) else lat
    last = lat[t > t[-1] - 60] if len(t) else lat
    return {"tracked": tracked, "fps_tracked": round(tracked / seconds, 3),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                           "max": round(float(lat.max()), 1),
                           "first_minute_p50": round(float(np.median(first)), 1),
                           "last_minute_p50": round(float(np.median(last)), 1)}}


def run_service(config: Path, n: int, seconds: float, fps: float, warm: float, out: Path) -> dict:
    from engine.config import load_config
    from engine.modelset import ModelSet
    from engine.profiling import ProfiledStages
    from engine.serve.schema import parse_deployment
    from engine.serve.service import Service
    from engine.stages import StageSet
    from engine.tracker import Tracker

    procs, urls = start_cameras(n, fps)
    try:
        engine_cfg = load_config(config)
        dep, _ = parse_deployment({"engine": str(config.resolve()),
                                   "sources": [{"id": f"cam{i}", "url": u} for i, u in enumerate(urls)],
                                   # results written as a deployment would (RLE per object), so that cost counts
                                   "sinks": {"jsonl": {"dir": str(out / "jsonl"), "max_bytes": 20_000_000, "keep": 1}}})
        ms = ModelSet.load(engine_cfg.model)
        stages = ProfiledStages(StageSet.load(ms, engine_cfg))
        service = Service(dep, Tracker(ms, stages, engine_cfg.tracker), stage_timer=lambda: stages.total_s)
        series: dict[str, list[tuple[float, float]]] = {s: [] for s in service.sources}
        first_with: dict[str, float] = {}
        asked: dict[str, float] = {}

        def on_result(result) -> None:
            if result.kind != "track":
                return
            image = service.sources[result.source].session.frame(result.frame_id)
            series[result.source].append((result.result_at, result.result_at - read_stamp(image, result.result_at)))
            if result.source in asked and result.source not in first_with and result.objects:
                first_with[result.source] = time.perf_counter()

        for sid in service.sources:
            service.subscribe(sid, on_result)
        service.start()
        time.sleep(warm)
        prompt_s = {}
        for sid, runner in service.sources.items():  # a click on the newest frame each source shows
            held = runner.session.held_frame_ids()
            asked[sid] = t0 = time.perf_counter()
            service.prompt(sid, held[-1], 1, points=[[W / 2, H / 2]], labels=[1])
            prompt_s[sid] = time.perf_counter() - t0
        for sid in series:
            series[sid].clear()
        for r in service.sources.values():
            r.busy_s = r.stage_s = r.step_s = 0.0
        tracked0 = {sid: r.session.tracked for sid, r in service.sources.items()}
        dropped0 = {sid: r.capture.dropped for sid, r in service.sources.items()}
        in0 = {sid: r.capture.frames_in for sid, r in service.sources.items()}
        t_start, wall_start = time.perf_counter(), time.time()
        time.sleep(seconds)
        elapsed = time.perf_counter() - t_start
        out = {}
        for sid, r in service.sources.items():
            tracked = r.session.tracked - tracked0[sid]
            s = series_summary(series[sid], tracked, elapsed)
            frames_in = r.capture.frames_in - in0[sid]
            s["fps_in"] = round(frames_in / elapsed, 2)
            s["drop_rate"] = round((r.capture.dropped - dropped0[sid]) / max(frames_in, 1), 3)
            s["prompt_request_ms"] = round(1000 * prompt_s[sid], 1)
            s["prompt_to_first_result_ms"] = (round(1000 * (first_with[sid] - asked[sid]), 1)
                                              if sid in first_with else None)
            s["per_frame_ms"] = {"worker": round(1000 * r.busy_s / max(tracked, 1), 1),
                                 "stages": round(1000 * r.stage_s / max(tracked, 1), 1),
                                 "tracker_step": round(1000 * r.step_s / max(tracked, 1), 1)}
            s["service_share"] = round((r.busy_s - r.step_s) / max(r.busy_s, 1e-9), 4)
            s["host_share_outside_stages"] = round((r.busy_s - r.stage_s) / max(r.busy_s, 1e-9), 4)
            s["series"] = [(round(a - wall_start, 3), round(b, 4)) for a, b in series[sid]]
            out[sid] = s
        service.stop()
        return out
    finally:
        for p in procs:
            p.kill()


def run_before(config: Path, seconds: float, fps: float, warm: float) -> dict:
    """engine.track's live loop before this change: one read per tracked frame, nothing dropped."""
    from engine.tracker import Tracker

    procs, urls = start_cameras(1, fps)
    try:
        tracker = Tracker.from_config(config)
        stream = tracker.stream()
        cap = cv2.VideoCapture(urls[0])
        series = []
        t_start = time.perf_counter() + warm
        tracked = 0
        while time.perf_counter() < t_start + seconds:
            ok, bgr = cap.read()
            if not ok:
                break
            stream.track(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if stream.frame_idx == 0:
                stream.add_new_points_or_box(1, points=[[W / 2, H / 2]], labels=[1])
            now = time.time()
            if time.perf_counter() >= t_start:
                series.append((now, now - read_stamp(bgr, now)))
                tracked += 1
        cap.release()
        s = series_summary(series, tracked, seconds)
        s["series"] = [(round(a - series[0][0], 3), round(b, 4)) for a, b in series]
        return {"cam0": s}
    finally:
        for p in procs:
            p.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--camera", type=int, help=argparse.SUPPRESS)  # child: serve one camera on this port
    p.add_argument("--config", type=Path)
    p.add_argument("--sources", default="1,2,4")
    p.add_argument("--fps", type=float, default=30.0, help="camera rate (above the tracker's)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per run, after --warm")
    p.add_argument("--warm", type=float, default=15.0)
    p.add_argument("--before", action="store_true", help="time the old read-per-tracked-frame loop instead")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.camera:
        serve_camera(args.camera, args.fps)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    runs = ({"before": run_before(args.config, args.seconds, args.fps, args.warm)} if args.before else
            {f"{n}_sources": run_service(args.config, n, args.seconds, args.fps, args.warm, args.out)
             for n in (int(v) for v in args.sources.split(","))})
    report = {"config": str(args.config), "fps": args.fps, "seconds": args.seconds, "runs": runs,
              "command": " ".join(sys.argv)}
    name = "before.json" if args.before else "service.json"
    (args.out / name).write_text(json.dumps(report))
    for run, per in runs.items():
        for sid, s in per.items():
            print(run, sid, {k: v for k, v in s.items() if k != "series"}, flush=True)
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None if a.exc_type in (BrokenPipeError,) else sys.__excepthook__(*a[:3])
    sys.exit(main())
