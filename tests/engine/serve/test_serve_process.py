"""A real `python -m engine.serve` (the test model set on ONNX Runtime, a looping frame folder): what only a
whole process shows. Its log, searched for secrets; SIGTERM with a results client connected; `--check`
naming a source that cannot open; /healthz during a prompt flood."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.engine.serve.conftest import bearer_subprotocol, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "a-process-test-token-0123"
SECRET = "hunter2pass"  # a camera password in the deployment file


def _deploy(tmp_path: Path, modelset_dir: Path, frame_folder: Path, port: int, extra_sources=(), **sections) -> Path:
    config = tmp_path / "deploy.json"
    config.write_text(json.dumps({
        "engine": {"model": str(modelset_dir), "backend": {"name": "onnxruntime", "device": "cpu"}},
        "sources": [{"id": "cam", "url": str(frame_folder), "realtime": "latest", "fps": 20}, *extra_sources],
        "server": {"port": port}, **sections}))
    return config


class Serve:
    """`python -m engine.serve` with its whole log (stdout and stderr) in a file."""

    def __init__(self, config: Path, log: Path, level: str = "info", token: str | None = TOKEN) -> None:
        self.log_path = log
        self.log = open(log, "w")
        env = {**os.environ, **({"SAM2_EDGE_TOKEN": token} if token else {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.serve", "--config", str(config),
                                      "--log-level", level], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        self.base = f"http://127.0.0.1:{json.loads(config.read_text())['server']['port']}"

    def get(self, path: str, token: str | None = TOKEN, timeout: float = 10):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()

    def wait_live(self) -> None:
        def live():
            assert self.proc.poll() is None, self.text()
            try:
                return self.get("/healthz", token=None, timeout=2)["sources"]["cam"] == "live"
            except OSError:
                return False

        wait_for(live, 120, "engine.serve to start")
        wait_for(lambda: self.get("/sources/cam")["frames_tracked"] >= 2, 60, "frames tracked")

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM) -> tuple[int, float]:
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()
        return code, time.monotonic() - t0


@pytest.fixture
def serve(modelset_dir, frame_folder, tmp_path):
    started = []

    def start(extra_sources=(), **sections) -> Serve:
        s = Serve(_deploy(tmp_path, modelset_dir, frame_folder, free_port(), extra_sources, **sections),
                  tmp_path / f"serve{len(started)}.log")
        started.append(s)
        s.wait_live()
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.stop(signal.SIGKILL)


def test_no_token_or_camera_password_reaches_the_log(serve):
    """Every request of a client that uses the token in every way it can (header, ?token=, the WebSocket
    subprotocol), and a camera with credentials that fails to open: the whole log, at info (uvicorn's access
    log on), holds neither the token nor the password. The page in Chromium is checked the same way
    (test_page.py)."""
    from websockets.sync.client import connect

    port = free_port()  # nothing listens: the camera fails, with its URL in the error
    s = serve(extra_sources=[{"id": "door", "url": f"rtsp://admin:{SECRET}@127.0.0.1:{port}/stream1",
                              "reconnect": {"initial_s": 0.2, "max_s": 0.5}}])
    wait_for(lambda: s.get("/sources/door")["reconnects"] >= 2, 30, "the camera's failed opens")
    s.get(f"/metrics?token={TOKEN}", token=None)
    s.get(f"/sources?x=1&token={TOKEN}", token=None)
    ws_base = s.base.replace("http", "ws") + "/sources/cam/results"
    with connect(f"{ws_base}?token={TOKEN}") as ws:
        json.loads(ws.recv(timeout=10))
    carried = bearer_subprotocol(TOKEN)
    b64 = carried.rsplit(".", 1)[1]
    with connect(ws_base, subprotocols=["sam2-edge", carried]) as ws:
        assert ws.subprotocol == "sam2-edge"
        json.loads(ws.recv(timeout=10))
    door = s.get("/sources/door")
    assert SECRET not in json.dumps(s.get("/sources")) and door["url"] == f"rtsp://***@127.0.0.1:{port}/stream1"
    assert door["last_error"] and "***@" in door["last_error"]
    code, _ = s.stop()
    log = s.text()
    assert code == 0
    assert "GET /metrics?token=***" in log and "/sources/cam/results" in log and "door" in log  # it was logging
    assert "[tcp @" not in log  # FFmpeg's own lines (written past Python's logging) are off
    assert TOKEN not in log and b64 not in log and SECRET not in log, [line for line in log.splitlines() if TOKEN in line
                                                                      or SECRET in line or b64 in line][:5]


def test_sigterm_closes_results_clients_at_once_without_a_traceback(serve, report):
    """Before, uvicorn waited its 5 s for the open WebSocket, then cancelled it with a CancelledError
    traceback in the log."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    s = serve()
    closed = {}
    ready = threading.Event()

    def client():
        with connect(s.base.replace("http", "ws") + f"/sources/cam/results?token={TOKEN}") as ws:
            ready.set()
            try:
                while True:
                    ws.recv(timeout=30)
            except ConnectionClosed as exc:
                closed["code"] = exc.rcvd.code if exc.rcvd else None

    t = threading.Thread(target=client, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(0.5)
    code, took = s.stop()
    t.join(10)
    log = s.text()
    assert code == 0 and "stopped: sinks flushed" in log
    assert closed.get("code") == 1001, closed
    assert "Traceback" not in log and "CancelledError" not in log and "timeout graceful shutdown" not in log, log
    assert took < 4, took
    report(f"SIGTERM with a results client connected: the client closed with 1001, exit 0 after {took:.2f} s, "
           f"no traceback")


def test_check_opens_every_source_and_names_those_that_fail(modelset_dir, frame_folder, tmp_path):
    port = free_port()
    config = _deploy(tmp_path, modelset_dir, frame_folder, free_port(), extra_sources=[
        {"id": "door", "url": f"rtsp://admin:{SECRET}@127.0.0.1:{port}/stream1"},
        {"id": "gone", "url": str(tmp_path / "missing.mp4")}])
    run = subprocess.run([sys.executable, "-m", "engine.serve", "--config", str(config), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "source cam: opened, gave a frame" in out
    assert "source door: FAILED: cannot open rtsp://***@127.0.0.1" in out and SECRET not in out
    assert "source gone: FAILED: video not found" in out
    assert "2 of 3 sources cannot be opened: door, gone" in out
    good = _deploy(tmp_path, modelset_dir, frame_folder, free_port())
    run = subprocess.run([sys.executable, "-m", "engine.serve", "--config", str(good), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and "ok: 1 sources" in run.stdout, run.stdout + run.stderr


def test_healthz_stays_fast_during_a_prompt_flood(serve, report):
    """64 clients send prompts as fast as they can for 6 s. Prompts beyond the source's rate are 429 at once,
    on the event loop; those admitted run on the service's own prompt thread; /healthz never waits for them.
    Before, every prompt took a thread of the server's one pool and waited for the tracker's lock, and /healthz
    (a thread-pool route) queued behind them."""
    s = serve(limits={"prompts_per_second": 5, "prompt_burst": 10})
    frame_id = s.get("/sources/cam")["held_frames"]["last"]
    body = json.dumps({"frame_id": frame_id, "obj_id": 1, "points": [[40, 40]], "labels": [1]}).encode()
    stop_at = time.monotonic() + 6
    codes: list[int] = []

    def flood():
        while time.monotonic() < stop_at:
            req = urllib.request.Request(s.base + "/sources/cam/prompts", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    codes.append(r.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
            except OSError:
                codes.append(0)

    health: list[float] = []
    with ThreadPoolExecutor(64) as pool:
        for _ in range(64):
            pool.submit(flood)
        time.sleep(0.5)
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            assert s.get("/healthz", token=None, timeout=30)["status"] == "ok"
            health.append(time.monotonic() - t0)
            time.sleep(0.05)
    p50, p95 = np.percentile(health, 50) * 1000, np.percentile(health, 95) * 1000
    by_code = {c: codes.count(c) for c in sorted(set(codes))}
    report(f"prompt flood: 64 clients, {len(codes) / 6:.0f} prompts/s for 6 s; responses by status {by_code}; "
           f"/healthz p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(health) * 1000:.1f} ms over {len(health)} probes")
    assert by_code.get(429, 0) > 0 and 0 not in by_code
    assert by_code.get(200, 0) <= 10 + 5 * 7, by_code  # the burst, then the rate: no more got through
    assert p95 < 250, (p50, p95)
