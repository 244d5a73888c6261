"""The HTTP and WebSocket API on a running service (stand-in stages, a looping frame folder)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from starlette.websockets import WebSocketDisconnect

from engine.outputs import coco_rle
from engine.serve.app import create_app
from engine.serve.routes.results import ClientQueue
from tests.engine.serve.conftest import api_client, bearer_subprotocol, make_service, wait_for

TOKEN = "t" * 20


@pytest.fixture
def api(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder), "realtime": "latest", "fps": 50}],
                           limits={"objects_per_source": 2, "frames_held": 4, "request_bytes": 20_000})
    service.start()
    client = api_client(create_app(service))
    wait_for(lambda: service.sources["cam"].session.tracked >= 6, what="frames tracked")
    yield client, service
    service.stop()


def _newest(client) -> int:
    r = client.get("/sources/cam/frame.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    return int(r.headers["x-frame-id"])


def test_status_health_metrics_and_schema(api):
    client, service = api
    status = client.get("/sources").json()
    assert [s["id"] for s in status] == ["cam"]
    s = status[0]
    assert s["state"] == "live" and s["policy"] == "latest" and s["frames_tracked"] >= 3
    assert s["frame_size"] == {"height": 120, "width": 160} and s["latency_ms"]["p95"] is not None
    assert client.get("/healthz").json() == {"status": "ok", "sources": {"cam": "live"}}
    text = client.get("/metrics").text
    for line in text.splitlines():  # Prometheus text format: comments or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r'[a-z_0-9]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+', line), line
    assert 'sam2_source_state{source="cam",state="live"} 1' in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sources", "/sources/{source_id}/prompts", "/metrics", "/healthz"} <= set(paths)


def test_prompt_results_over_websocket_and_removal(api):
    client, service = api
    with client.websocket_connect("/sources/cam/results") as ws:
        frame_id = _newest(client)
        r = client.post("/sources/cam/prompts", json={"frame_id": frame_id, "obj_id": 3, "box": [20, 20, 90, 80]})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["kind"] == "prompt" and answer["frame_id"] == frame_id
        obj = answer["objects"][0]
        assert obj["obj_id"] == 3 and obj["mask"]["size"] == [120, 160]
        decoded = mask_utils.decode({"size": obj["mask"]["size"], "counts": obj["mask"]["counts"].encode()})
        assert decoded.sum() == obj["area"] > 0
        while True:  # the first tracked result after the prompt carries the object, with timestamps
            msg = json.loads(ws.receive_text())
            if msg["kind"] == "track" and msg["result_at"] > answer["result_at"]:
                break
        assert [o["obj_id"] for o in msg["objects"]] == [3]
        assert msg["result_at"] >= msg["captured_at"] and msg["latency_ms"] >= 0
    assert client.get("/sources/cam/objects").json()[0]["obj_id"] == 3
    assert client.delete("/sources/cam/objects/3").status_code == 204
    assert client.get("/sources/cam/objects").json() == []
    assert client.delete("/sources/cam/objects/3").status_code == 404


def test_a_mask_prompt_and_the_object_limit(api):
    client, service = api
    frame_id = _newest(client)
    m = np.zeros((120, 160), bool)
    m[30:60, 40:100] = True
    r = client.post("/sources/cam/prompts", json={"frame_id": frame_id, "obj_id": 1, "mask": coco_rle(m)})
    assert r.status_code == 200, r.text
    client.post("/sources/cam/prompts", json={"frame_id": _newest(client), "obj_id": 2, "points": [[5, 5]],
                                              "labels": [1]})
    r = client.post("/sources/cam/prompts", json={"frame_id": _newest(client), "obj_id": 9, "points": [[5, 5]],
                                                  "labels": [1]})
    assert r.status_code == 429 and "already tracks 2 objects" in r.json()["detail"]


@pytest.mark.parametrize("body, status, says", [
    ({"frame_id": 0, "obj_id": 1, "points": [[5, 5]], "labels": [1]}, 409, "is not held; held: frames"),
    ({"frame_id": "NEW", "obj_id": 1, "points": [[500, 5]], "labels": [1]}, 422, "lie outside the 160 x 120 frame"),
    ({"frame_id": "NEW", "obj_id": 1, "points": [[5, 5]]}, 422, "points and labels go together"),
    ({"frame_id": "NEW", "obj_id": 1, "points": [[5, 5]], "labels": [2]}, 422, "labels"),
    ({"frame_id": "NEW", "obj_id": 0, "box": [1, 1, 9, 9]}, 422, "obj_id"),
    ({"frame_id": "NEW", "obj_id": 1, "box": [9, 9, 1, 1]}, 422, "is empty"),
    ({"frame_id": "NEW", "obj_id": 1}, 422, "give points (with labels), a box or a mask"),
    ({"frame_id": "NEW", "obj_id": 1, "mask": {"size": [10, 10], "counts": "abc"}}, 422, "mask.size [10, 10]"),
    ({"frame_id": "NEW", "obj_id": 1, "mask": {"size": [120, 160], "counts": "abc"}}, 422, "mask.counts is not"),
    ({"frame_id": "NEW", "obj_id": 1, "box": [1, 1, 9, 9], "colour": "red"}, 422, "colour"),
])
def test_bad_prompts_are_4xx_naming_what_was_wrong(api, body, status, says):
    client, _ = api
    if body["frame_id"] == "NEW":
        body = {**body, "frame_id": _newest(client)}
    r = client.post("/sources/cam/prompts", json=body)
    assert r.status_code == status, r.text
    assert says in r.text


def test_unknown_things_and_oversized_bodies(api):
    client, _ = api
    assert client.get("/sources/nope").status_code == 404
    assert "unknown source 'nope'" in client.get("/sources/nope").json()["detail"]
    assert client.post("/sources/nope/prompts", json={"frame_id": 1, "obj_id": 1, "box": [1, 1, 5, 5]}).status_code == 404
    assert client.get("/sources/cam/frame.jpg", params={"frame_id": 0}).status_code == 409
    big = {"frame_id": 1, "obj_id": 1, "points": [[1, 1]] * 5000, "labels": [1] * 5000}
    r = client.post("/sources/cam/prompts", json=big)  # says its length: refused before it is read
    assert r.status_code == 413 and "limits.request_bytes" in r.text
    # a body that does not say its length (chunked) is counted as it arrives: tests/engine/serve/test_security.py


def test_a_token_guards_everything_but_health(modelset, frame_folder):
    service = make_service(modelset, [{"id": "cam", "url": str(frame_folder), "fps": 50}],
                           server={"host": "0.0.0.0", "token": TOKEN})
    service.start()
    try:
        client = api_client(create_app(service))
        assert client.get("/healthz").status_code == 200
        assert client.get("/sources").status_code == 401
        # the page carries no data (it asks for the token, then calls the API), and loads nothing from elsewhere
        page = client.get("/")
        assert page.status_code == 200 and "page/page.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("page/page.js", "page/page.css"):
            text = client.get(f"/{asset}").text
            assert text and not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text + page.text)
        assert client.get("/sources", headers={"Authorization": "Bearer wrong-token-xxxxxxx"}).status_code == 401
        assert client.get("/sources", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/metrics", params={"token": TOKEN}).status_code == 200
        for refused in ({}, {"subprotocols": ["sam2-edge", bearer_subprotocol("wrong-token-xxxxxxx")]}):
            with pytest.raises(WebSocketDisconnect) as closed:  # refused at the handshake, as a policy violation
                with client.websocket_connect("/sources/cam/results", **refused) as ws:
                    ws.receive_text()
            assert closed.value.code == 1008, refused
        with client.websocket_connect(f"/sources/cam/results?token={TOKEN}") as ws:
            assert json.loads(ws.receive_text())["source"] == "cam"
        # the page's way: the token as a subprotocol beside "sam2-edge", which the server selects (never the token)
        with client.websocket_connect("/sources/cam/results", subprotocols=["sam2-edge", bearer_subprotocol(TOKEN)]) as ws:
            assert ws.accepted_subprotocol == "sam2-edge"
            assert json.loads(ws.receive_text())["source"] == "cam"
    finally:
        service.stop()


def test_a_slow_client_loses_its_oldest_results_never_the_tracker(modelset, frame_folder):
    """A client's queue is bounded: results it does not read are dropped oldest first, and counted."""
    import asyncio

    loop = asyncio.new_event_loop()
    q = ClientQueue(loop, size=3)

    class R:
        def __init__(self, i):
            self.i = i

        def to_text(self):
            return str(self.i)

    for i in range(10):
        q.offer(R(i))  # from the worker thread: never waits for the client
    loop.run_until_complete(asyncio.sleep(0))
    assert list(q.items) == ["7", "8", "9"] and q.dropped == 7
    assert loop.run_until_complete(q.get()) == "7"
    loop.close()


def test_the_preview_is_an_mjpeg_stream_of_tracked_frames(api):
    client, service = api
    frame_id = _newest(client)
    client.post("/sources/cam/prompts", json={"frame_id": frame_id, "obj_id": 1, "box": [20, 20, 90, 80]})
    with client.stream("GET", "/sources/cam/preview.mjpeg") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "multipart/x-mixed-replace; boundary=sam2frame"
        data = b""
        for chunk in r.iter_bytes():
            data += chunk
            if data.count(b"--sam2frame") >= 2:
                break
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"Content-Type: image/jpeg" in head and b"X-Frame-Id: " in head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    jpg = np.frombuffer(rest[:length], np.uint8)
    import cv2

    img = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3)
