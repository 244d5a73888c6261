"""What stands between the API and a caller: Host and Origin checks, the token's ways in, response headers,
the body and message limits, client caps and the prompt rate. In-process where the app decides; a real
uvicorn server where the wire matters (a chunked body)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from engine.serve.app import create_app
from engine.serve.security import RedactingFilter
from tests.engine.serve.conftest import api_client, free_port, make_service, wait_for

TOKEN = "s" * 24


@pytest.fixture
def service(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder), "realtime": "latest", "fps": 50}],
                           limits={"request_bytes": 2_000, "websocket_clients": 2, "preview_clients": 1,
                                   "prompts_per_second": 1, "prompt_burst": 2, "websocket_message_bytes": 200})
    service.start()
    wait_for(lambda: service.sources["cam"].session.tracked >= 2, what="frames tracked")
    yield service
    service.stop()


def test_a_host_outside_the_allow_list_is_refused(service):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    client = api_client(create_app(service))
    assert client.get("/sources").status_code == 200  # Host: 127.0.0.1
    for host in ("localhost:8080", "[::1]:8080", "127.0.0.1:8080"):
        assert client.get("/sources", headers={"host": host}).status_code == 200, host
    r = client.get("/sources", headers={"host": "evil.example"})
    assert r.status_code == 403 and "server.allowed_hosts" in r.json()["detail"]
    assert client.get("/healthz", headers={"host": "evil.example:8080"}).status_code == 403
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("ws://evil.example/sources/cam/results"):
            pass
    assert closed.value.code == 1008


def test_allowed_hosts_are_configurable(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder)}],
                           server={"allowed_hosts": ["box.local"]})
    client = api_client(create_app(service))
    assert client.get("/healthz", headers={"host": "box.local:8080"}).status_code == 200
    assert client.get("/healthz").status_code == 403  # 127.0.0.1 is no longer listed
    anywhere = make_service(modelset, [{"id": "cam", "url": str(frame_folder)}],
                            server={"host": "0.0.0.0", "token": TOKEN})  # every interface: the token guards
    assert api_client(create_app(anywhere)).get("/healthz", headers={"host": "10.1.2.3:8080"}).status_code == 200


def test_the_results_websocket_checks_its_origin(service):
    """Any page open in the box's browser could otherwise read the results of a loopback server."""
    client = api_client(create_app(service))
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect("/sources/cam/results", headers={"origin": "http://evil.example"}):
            pass
    assert closed.value.code == 1008
    with client.websocket_connect("/sources/cam/results", headers={"origin": "http://127.0.0.1"}) as ws:
        assert json.loads(ws.receive_text())["source"] == "cam"  # the page's own origin
    r = client.post("/sources/cam/prompts", headers={"origin": "http://evil.example"},
                    json={"frame_id": 1, "obj_id": 1, "points": [[5, 5]], "labels": [1]})
    assert r.status_code == 403 and "server.allowed_origins" in r.json()["detail"]


def test_allowed_origins_may_use_the_api(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder), "fps": 50}],
                           server={"allowed_origins": ["https://dashboard.example"]})
    service.start()
    try:
        wait_for(lambda: service.sources["cam"].session.tracked >= 1, what="a frame")
        client = api_client(create_app(service))
        with client.websocket_connect("/sources/cam/results", headers={"origin": "https://dashboard.example"}) as ws:
            assert json.loads(ws.receive_text())["source"] == "cam"
    finally:
        service.stop()


def test_every_response_carries_the_security_headers_and_docs_are_off(service):
    client = api_client(create_app(service))
    for path in ("/", "/sources", "/healthz", "/page/page.js", "/nope"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY", path
    assert client.get("/docs").status_code == 404  # Swagger UI loads from a CDN: off unless server.docs
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/page/../app.py").status_code == 404  # the page's files only


def test_docs_can_be_turned_on(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder)}], server={"docs": True})
    assert api_client(create_app(service)).get("/docs").status_code == 200


def test_a_websocket_client_may_not_send_big_messages(service):
    client = api_client(create_app(service))
    with client.websocket_connect("/sources/cam/results") as ws:
        ws.send_text("x" * 100)  # small messages are read and ignored
        assert json.loads(ws.receive_text())["source"] == "cam"
        ws.send_text("x" * 1000)
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(1000):
                ws.receive_text()
    assert closed.value.code == 1009


def test_streaming_clients_are_capped(service):
    client = api_client(create_app(service))
    with client.websocket_connect("/sources/cam/results") as a, client.websocket_connect("/sources/cam/results") as b:
        a.receive_text(), b.receive_text()
        with client.websocket_connect("/sources/cam/results") as c:
            with pytest.raises(WebSocketDisconnect) as closed:
                c.receive_text()
        assert closed.value.code == 1013 and "limits.websocket_clients" in closed.value.reason
    assert service.websocket_clients.held == 0 and service.websocket_clients.refused == 1
    with client.stream("GET", "/sources/cam/preview.mjpeg") as first:
        assert first.status_code == 200
        second = client.get("/sources/cam/preview.mjpeg")
        assert second.status_code == 503 and "limits.preview_clients" in second.json()["detail"]


def test_prompts_beyond_their_rate_are_429_with_retry_after(service):
    client = api_client(create_app(service))
    held = service.sources["cam"].session.held_frame_ids()[-1]
    body = {"frame_id": held, "obj_id": 1, "points": [[5, 5]], "labels": [1]}
    codes = [client.post("/sources/cam/prompts", json=body) for _ in range(4)]  # burst 2, then 1 a second
    assert [r.status_code for r in codes[:2]] != [429, 429]
    assert codes[-1].status_code == 429 and int(codes[-1].headers["retry-after"]) >= 1
    assert "limits.prompts_per_second" in codes[-1].json()["detail"]
    assert 'sam2_prompts_refused_total{source="cam"}' in client.get("/metrics").text


def test_the_log_filter_removes_tokens_and_credentials():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/sources/cam/results?token={TOKEN}", "1.1", 101), None)
    RedactingFilter().filter(record)
    assert TOKEN not in record.getMessage() and "token=***" in record.getMessage()
    record = logging.LogRecord("engine.live", logging.WARNING, __file__, 1, "source %s: cannot open %s",
                               ("cam", "rtsp://admin:hunter2@10.0.0.7/s"), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "source cam: cannot open rtsp://***@10.0.0.7/s"


@pytest.fixture
def real_server(service):
    """The app on a real uvicorn server in a thread: what goes over the wire is the point."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn")
    yield port
    server.should_exit = True
    thread.join(10)


def test_a_chunked_body_over_the_limit_is_413(real_server):
    """A body that does not say its length: counted as it arrives, and refused as too large, not as malformed."""
    with socket.create_connection(("127.0.0.1", real_server), timeout=10) as s:
        s.sendall(b"POST /sources/cam/prompts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"{" * 1000
        try:
            for _ in range(5):  # 5,000 bytes against a limit of 2,000, none of it announced
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                time.sleep(0.05)
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest arrived
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
    head = answer.split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b"limits.request_bytes" in answer or b"content-length" in answer.lower()
