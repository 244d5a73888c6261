"""Real parts: an RTSP camera from gst-rtsp-server, an HTTP MJPEG camera served by the test, a Mosquitto
broker receiving results, and a camera killed mid-run that comes back. .ci/run installs the Debian
packages; where they are missing (a developer machine) these tests skip, naming the package."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import pytest

from engine.bench.synthetic import SyntheticSource
from tests.conftest import require_part
from tests.engine.serve.conftest import free_port, make_service, wait_for

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"


class MjpegCamera:
    """A live HTTP MJPEG camera on a fixed port: 25 fps of a synthetic scene; stop() drops every client."""

    def __init__(self, port: int) -> None:
        src = SyntheticSource(num_frames=25, height=120, width=160)
        self.jpegs = [cv2.imencode(".jpg", src.get(i)[:, :, ::-1])[1].tobytes() for i in range(25)]
        self.port = port
        self.stopping = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not camera.stopping.is_set():
                        jpg = camera.jpegs[i % 25]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        i += 1
                        time.sleep(0.04)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def test_an_http_mjpeg_camera_killed_mid_run_reconnects(modelset, frame_folder):
    port = free_port()
    cam = MjpegCamera(port)
    service = make_service(modelset, [{"id": "mjpeg", "url": cam.url, "reconnect": {"initial_s": 0.2, "max_s": 0.5}},
                                      {"id": "other", "url": str(frame_folder), "fps": 25}])
    service.start()
    try:
        runner = service.sources["mjpeg"]
        wait_for(lambda: runner.session.tracked >= 5, what="MJPEG frames tracked")
        assert runner.status()["state"] == "live" and runner.status()["frame_size"] == {"height": 120, "width": 160}
        held = runner.session.held_frame_ids()[-1]
        service.prompt("mjpeg", held, 1, points=[[80, 60]], labels=[1])
        cam.stop()  # the camera goes away
        wait_for(lambda: runner.capture.state == "reconnecting", what="the source to be reconnecting")
        assert runner.status()["last_error"]
        other = service.sources["other"].session.tracked
        wait_for(lambda: service.sources["other"].session.tracked > other + 5, what="the other source to go on")
        before = runner.session.tracked
        t0 = time.monotonic()
        cam = MjpegCamera(port)  # back on the same address
        wait_for(lambda: runner.session.tracked > before, timeout=15, what="tracking to resume")
        reconnect_s = time.monotonic() - t0
        assert runner.capture.state == "live" and runner.session.obj_ids == [1]  # objects kept
        assert runner.session.last.objects[0].obj_id == 1
        assert runner.capture.reconnects >= 1 and reconnect_s < 10
        print(f"\nMJPEG reconnect: tracking resumed {reconnect_s:.2f} s after the camera came back")
    finally:
        service.stop()
        cam.stop()


def start_rtsp_camera(port: int, size: tuple[int, int] = (320, 240)) -> subprocess.Popen:
    """gst-rtsp-server serving a live 30 fps camera of `size` (width, height) at rtsp://127.0.0.1:port/cam."""
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                               capture_output=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        probe = None
    require_part(probe is not None and probe.returncode == 0,
                 "gst-rtsp-server is not installed (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi "
                 "gstreamer1.0-plugins-{base,good,ugly}); .ci/run installs it")
    proc = subprocess.Popen([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(port), *map(str, size)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture
def rtsp_url():
    port = free_port()
    proc = start_rtsp_camera(port)
    try:
        yield f"rtsp://127.0.0.1:{port}/cam", proc
    finally:
        stop(proc)


def test_an_rtsp_camera_is_tracked_without_backlog(modelset, rtsp_url):
    url, _ = rtsp_url
    service = make_service(modelset, [{"id": "rtsp", "url": url}])
    service.start()
    try:
        runner = service.sources["rtsp"]
        wait_for(lambda: runner.session.tracked >= 8, timeout=30, what="RTSP frames tracked")
        status = runner.status()
        assert status["state"] == "live" and status["frame_size"] == {"height": 240, "width": 320}
        assert status["policy"] == "latest" and status["fps_in"] > 10
        assert status["latency_ms"]["p95"] < 1000
    finally:
        service.stop()


def test_an_rtsp_camera_restarted_at_another_frame_size_resumes_with_its_objects(modelset, report):
    """Someone switches the camera's stream profile: gst-rtsp-server restarted at 256 x 192 instead of
    320 x 240. Tracking resumes on the first reconnect that reaches it, and the object goes on under its
    id, carried over as a mask prompt. Before, every reopen failed on the new size, forever."""
    port = free_port()
    cam = start_rtsp_camera(port, (320, 240))
    service = make_service(modelset, [{"id": "cam", "url": f"rtsp://127.0.0.1:{port}/cam",
                                       "reconnect": {"initial_s": 0.2, "max_s": 0.5}}])
    service.start()
    try:
        runner = service.sources["cam"]
        wait_for(lambda: runner.session.tracked >= 3, timeout=30, what="RTSP frames tracked")
        service.prompt("cam", runner.session.held_frame_ids()[-1], 1, box=[100, 60, 220, 180])
        wait_for(lambda: runner.session.last.objects and runner.session.last.kind == "track", what="the object tracked")
        stop(cam)
        wait_for(lambda: runner.capture.state == "reconnecting", what="the camera to be missed")
        cam = start_rtsp_camera(port, (256, 192))  # the same address, another profile
        t0, reconnects = time.monotonic(), runner.capture.reconnects

        def resumed():
            last = runner.session.last
            return last is not None and last.kind == "track" and last.masks.shape[1:] == (192, 256)

        wait_for(resumed, timeout=30, what="tracking at the new size")
        recover_s = time.monotonic() - t0
        status = runner.status()
        assert status["state"] == "live" and status["frame_size"] == {"height": 192, "width": 256}
        assert runner.session.obj_ids == [1] and runner.session.last.objects[0].mask.any()
        assert status["size_changes"] == 1 and runner.capture.reconnects - reconnects <= 2
        assert runner.errors == 0
        report(f"RTSP camera restarted at another frame size (320x240 -> 256x192): tracking resumed "
               f"{recover_s:.2f} s after the camera came back, {runner.capture.reconnects - reconnects} reopen "
               f"attempt(s), object 1 kept")
    finally:
        service.stop()
        stop(cam)


@contextmanager
def mosquitto_with_subscriber(topic: str):
    """A Mosquitto broker on a free port, and a subscriber to `topic` that collects each message as its topic
    and JSON fields: yields (port, messages)."""
    broker = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    require_part(broker is not None, "mosquitto is not installed (Debian: mosquitto); .ci/run installs it")
    import paho.mqtt.client as mqtt

    port = free_port()
    proc = subprocess.Popen([broker, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got: list[dict] = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda c, u, m: got.append({"topic": m.topic, **json.loads(m.payload)})
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic)
        wait_for(lambda: _connects(sub, port), what="the broker to listen")
        sub.loop_start()
        try:
            yield port, got
        finally:
            sub.loop_stop()
    finally:
        proc.kill()
        proc.wait()


def test_results_reach_a_real_mosquitto_broker(modelset, frame_folder):
    with mosquitto_with_subscriber("sam2/#") as (port, got):
        service = make_service(modelset, [{"id": "door", "url": str(frame_folder), "fps": 25}],
                               sinks={"mqtt": {"host": "127.0.0.1", "port": port}})
        service.start()
        try:
            held = wait_for(lambda: service.sources["door"].session.held_frame_ids(), what="a tracked frame")
            service.prompt("door", held[-1], 4, box=[10, 10, 80, 80])
            wait_for(lambda: any(m["objects"] and m["kind"] == "track" for m in got), what="MQTT results")
        finally:
            service.stop()
        m = next(m for m in got if m["objects"] and m["kind"] == "track")
        assert m["topic"] == "sam2/door/results" and m["source"] == "door"
        assert m["objects"][0]["obj_id"] == 4 and m["objects"][0]["mask"]["size"] == [120, 160]
        mq = service.sinks[0]
        assert mq.sent >= len(got) > 0


def test_mqtt_at_qos1_keeps_results_while_the_broker_is_down_and_sends_them_after(modelset, frame_folder, report):
    """Mosquitto stopped and started again: at QoS 1 what the service published meanwhile waits in the
    client (counted as pending, not as dropped, as it was before) and reaches subscribers after the
    reconnect; the counts say what happened."""
    broker = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    require_part(broker is not None, "mosquitto is not installed (Debian: mosquitto); .ci/run installs it")
    import paho.mqtt.client as mqtt

    port = free_port()

    def start_broker():
        proc = subprocess.Popen([broker, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        wait_for(lambda: _connects(probe, port), what="the broker to listen")
        probe.disconnect()
        return proc

    got: list[int] = []

    def subscribe() -> mqtt.Client:
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda c, u, m: got.append(json.loads(m.payload)["frame_id"])
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("sam2/#", qos=1)
        wait_for(lambda: _connects(sub, port), what="the subscriber")
        sub.loop_start()
        return sub

    proc = start_broker()
    sub = subscribe()
    service = make_service(modelset, [{"id": "door", "url": str(frame_folder), "fps": 20,
                                       "realtime": "every_frame"}],
                           sinks={"mqtt": {"host": "127.0.0.1", "port": port, "qos": 1, "max_queued": 1000}})
    service.start()
    mq = service.sinks[0]
    try:
        wait_for(lambda: len(got) >= 5, what="results through the broker")
        sub.loop_stop()
        proc.kill()
        proc.wait()
        down_at = service.sources["door"].session.tracked
        wait_for(lambda: service.sources["door"].session.tracked >= down_at + 20, what="results while it is down")
        assert mq.pending >= 15 and mq.dropped == 0  # kept for the reconnect, not lost
        t0 = time.monotonic()
        proc = start_broker()
        got_before = len(got)
        sub = subscribe()
        wait_for(lambda: mq.pending == 0, timeout=45, what="the kept results to be sent")
        recover_s = time.monotonic() - t0
        wait_for(lambda: len(set(got)) >= mq.sent - 5, what="the subscriber to receive them")
    finally:
        service.stop()
        sub.loop_stop()
        proc.kill()
        proc.wait()
    tracked = service.sources["door"].session.tracked
    missing = sorted(set(range(tracked)) - set(got))
    # every result reached the subscriber, but those published in the moment between the broker's restart
    # and the subscriber's new subscription (a broker without persistence keeps nothing for nobody)
    assert mq.dropped == 0 and mq.sent >= tracked - 2, (mq.sent, tracked)
    assert len(missing) <= 10, missing
    report(f"MQTT QoS 1, broker down for {tracked - down_at} results: all kept (dropped {mq.dropped}); sent "
           f"{recover_s:.1f} s after the broker came back; {len(set(got)) - got_before} results arrived after "
           f"the restart; of {tracked} results {len(missing)} missed the subscriber (published before it "
           f"re-subscribed)")


def _connects(client, port: int) -> bool:
    try:
        client.connect("127.0.0.1", port)
        return True
    except OSError:
        return False


def test_engine_track_follows_a_live_camera_through_the_same_capture(modelset_dir, tmp_path):
    """`engine.track --video URL` takes the newest frame as the service does: frames arriving while one
    is tracked are dropped and counted, and the summary reports the latency."""
    from engine.track import main as track_main

    cam = MjpegCamera(free_port())
    try:
        cfg = tmp_path / "ort.yaml"
        cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
        out = tmp_path / "out"
        assert track_main(["--config", str(cfg), "--video", cam.url, "--point", "80,60", "--max-frames", "4",
                           "--out", str(out), "--no-video", "--quiet"]) == 0
    finally:
        cam.stop()
    summary = json.loads((out / "summary.json").read_text())
    live = summary["live"]
    assert summary["frames"] == 4 and summary["stopped_by"] == "--max-frames 4"
    assert live["dropped"] > 0 and live["frames_in"] >= 4 + live["dropped"] - 1
    assert 0 < live["latency_ms"]["p50"] < 5000
    lines = (out / "masks.jsonl").read_text().splitlines()
    frames = [json.loads(line)["frame"] for line in lines]
    assert len(frames) == 4 and frames == sorted(frames) and frames[-1] - frames[0] > 3  # capture ids, with gaps


def test_engine_track_names_a_camera_that_cannot_be_opened(modelset_dir, tmp_path):
    from engine.errors import InputError
    from engine.track import main as track_main

    cfg = tmp_path / "ort.yaml"
    cfg.write_text(f"model: {modelset_dir}\nbackend: {{name: onnxruntime, device: cpu}}\n")
    with pytest.raises(InputError, match=r"gave no frame: cannot open http://127.0.0.1:\d+/none"):
        track_main(["--config", str(cfg), "--video", f"http://127.0.0.1:{free_port()}/none", "--point", "1,1",
                    "--out", str(tmp_path / "o"), "--quiet"])


def test_a_detector_finds_objects_on_an_rtsp_camera_and_events_reach_websocket_and_mosquitto(modelset, rtsp_url,
                                                                                             report):
    """Unattended: gst-rtsp-server's moving ball, the motion detector on the source, nobody prompts. Objects
    appear with their label; `entered` arrives on the WebSocket and on Mosquitto's events topic; a person's
    removal is an event too; the detector's time is in /metrics and its rate in the status."""
    from engine.serve.app import create_app
    from tests.engine.serve.conftest import api_client

    url, _ = rtsp_url
    with mosquitto_with_subscriber("sam2/+/events") as (port, got):
        service = make_service(modelset, [{"id": "yard", "url": url, "detector": {"kind": "motion", "every": 1}}],
                               sinks={"mqtt": {"host": "127.0.0.1", "port": port}})
        service.start()
        t0 = time.monotonic()
        try:
            client = api_client(create_app(service))
            with client.websocket_connect("/sources/yard/results") as ws:
                while True:
                    msg = json.loads(ws.receive_text())
                    if any(e["event"] == "entered" for e in msg.get("events", [])):
                        break
            admitted_s = time.monotonic() - t0
            entered = next(e for e in msg["events"] if e["event"] == "entered")
            obj = next(o for o in msg["objects"] if o["obj_id"] == entered["obj_id"])
            assert obj["label"] == "motion" and obj["origin"] == "detector" and entered["frame_id"] == msg["frame_id"]
            wait_for(lambda: any(m["event"] == "entered" for m in got), what="the entered event on MQTT")
            m = next(m for m in got if m["event"] == "entered")
            assert m["topic"] == "sam2/yard/events" and m["source"] == "yard" and m["obj_id"] == entered["obj_id"]
            assert client.post("/sources/yard/detect").status_code == 202
            status = client.get("/sources/yard").json()
            assert status["detector"]["runs"] >= 1 and status["detector"]["detections_per_s"] > 0
            assert 'sam2_detector_seconds_total{source="yard"}' in client.get("/metrics").text
            assert client.delete(f"/sources/yard/objects/{entered['obj_id']}").status_code == 204
            wait_for(lambda: any(m["event"] == "removed" for m in got), what="the removal on MQTT")
        finally:
            service.stop()
        report(f"RTSP camera with the motion detector, nobody prompting: first object admitted {admitted_s:.2f} s "
               f"after the service started; {len(got)} events on Mosquitto")
