"""Services on stand-in stages (the API, sinks and scheduling are the point) over small frame folders."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.bench.synthetic import SyntheticSource
from engine.serve.schema import parse_deployment
from engine.serve.service import Service
from engine.tracker import Tracker
from tests.engine.fakes import FakeStages

ENGINE = {"backend": {"name": "onnxruntime", "device": "cpu"}}  # checked by engine.config; stages are stand-ins


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("live-frames")
    src = SyntheticSource(num_frames=12, height=120, width=160)
    for i in range(12):
        Image.fromarray(src.get(i)).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def make_service(modelset, sources: list[dict], stages=None, **sections) -> Service:
    dep, _ = parse_deployment({"engine": ENGINE, "sources": sources, **sections})
    return Service(dep, Tracker(modelset, stages or FakeStages(modelset)))


def wait_for(check, timeout: float = 10.0, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def api_client(app, **kwargs):
    """An in-process client of the app, addressed as 127.0.0.1 (a Host the default allow-list serves), for
    HTTP and WebSockets alike (Starlette's client would send `Host: testserver` for a relative ws path)."""
    from fastapi.testclient import TestClient

    class Client(TestClient):
        def websocket_connect(self, url: str, *args, **kw):
            return super().websocket_connect(url if "://" in url else "ws://127.0.0.1" + url, *args, **kw)

    return Client(app, base_url="http://127.0.0.1", **kwargs)


def bearer_subprotocol(token: str) -> str:
    """The WebSocket subprotocol that carries a token, as the page sends it beside "sam2-edge"."""
    import base64

    return "sam2-edge.bearer." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
