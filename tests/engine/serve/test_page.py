"""The live page in a real browser: Debian's Chromium driven by Playwright, against `python -m engine.serve`
on the calibrated test model set (256²) and a looping clip, with a token, and a camera whose password is in
the deployment file (it cannot be reached). After the session the server's whole log, at info level, holds
neither the token nor the password.

One test walks the page as a person does (each step timed, printed at the end): the token asked once; a
click on the car adds an object on the frame on screen; its results arrive over the WebSocket and the page
paints exactly that frame's mask; a negative point corrects it; a box adds a second object; a click on a
frame no longer held and a lost connection are shown as messages; an object removed is gone; a reload
brings the state back without asking for the token again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import require_data, require_part
from tests.engine.serve.conftest import free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
# as root, without a sandbox; no calls home (the machine's network is closed, and so may an edge box's be)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
TOKEN = "a-page-test-token-0123"
SECRET = "hunter2pass"
CAR = (420, 250)  # the car in the DAVIS clip's first frames, in frame pixels
FRAME_W, FRAME_H = 854, 480
OBJ1_RGB = (128, 0, 0)  # the DAVIS palette's colour 1


@pytest.fixture
def browser():
    require_part(Path(CHROMIUM).is_file(), "Chromium is not installed (Debian: chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_part(False, "playwright is not installed (the dev extra)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(modelset_dir, tmp_path):
    frames = require_data() / "davis-car-shadow" / "frames"
    config = tmp_path / "deploy.yaml"
    port = free_port()
    config.write_text(json.dumps({
        "engine": {"model": str(modelset_dir), "backend": {"name": "onnxruntime", "device": "cpu"}},
        "sources": [{"id": "davis", "url": str(frames), "realtime": "latest", "loop": True, "fps": 10},
                    {"id": "door", "url": f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream1"}],
        "limits": {"frames_held": 6}, "server": {"port": port}}))
    env = {**os.environ, "SAM2_EDGE_TOKEN": TOKEN}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.serve", "--config", str(config), "--log-level", "info"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def live():
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return json.load(urllib.request.urlopen(f"{base}/healthz", timeout=2))["sources"]["davis"] == "live"
        except OSError:
            return False

    wait_for(live, 120, "engine.serve to start and track")
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    log.close()


def api(base: str, path: str):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    return json.load(urllib.request.urlopen(req, timeout=10))


class Results:
    """The results WebSocket, read by the test itself (not by the page) into frame id -> message."""

    def __init__(self, base: str) -> None:
        self.url = base.replace("http", "ws") + f"/sources/davis/results?token={TOKEN}"
        self.track: dict[int, dict] = {}
        self.prompts: list[dict] = []
        self.ws = None
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "the test's own WebSocket did not connect"

    def _read(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url) as ws:
                self.ws = ws
                self.connected.set()
                for text in ws:
                    msg = json.loads(text)
                    if msg["kind"] == "track":
                        self.track[msg["frame_id"]] = msg
                    else:
                        self.prompts.append(msg)
        except Exception:  # noqa: BLE001 - the server stopped
            pass

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


def painted(page) -> dict:
    """The mask layer the page drew: its frame id, how many pixels it painted, and in which colours."""
    return page.evaluate("""() => {
        const c = document.getElementById('masks');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colours = {};
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3]) { n++; const k = d[i] + ',' + d[i + 1] + ',' + d[i + 2]; colours[k] = (colours[k] || 0) + 1; }
        return {frame_id: Number(document.getElementById('view').dataset.frameId), n, colours, w: c.width, h: c.height};
    }""")


def mask_of(msg: dict, obj_id: int) -> np.ndarray:
    o = next(o for o in msg["objects"] if o["obj_id"] == obj_id)
    return mask_utils.decode({"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode()}).astype(bool)


def union_area(msg: dict) -> int:
    masks = [mask_utils.decode({"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode()}) for o in msg["objects"]]
    return int(np.logical_or.reduce(masks).sum()) if masks else 0


def at(locator, x: float, y: float) -> dict:
    """Frame pixels -> a position on the view element (CSS pixels)."""
    box = locator.bounding_box()
    return {"x": x * box["width"] / FRAME_W, "y": y * box["height"] / FRAME_H}


def frame_on_screen(page) -> int:
    return int(page.get_attribute("#view", "data-frame-id"))


def test_the_page_prompts_a_live_source_in_a_real_browser(browser, server, tmp_path, report):
    base, proc = server
    results = Results(base)
    steps: list[tuple[str, float]] = []
    t = time.monotonic()

    def step(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        steps.append((name, now - t))
        t = now

    page = browser.new_page(viewport={"width": 1280, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)  # the server asks for a token
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("#view[data-frame-id]", timeout=20_000)
    assert page.is_hidden("#token-form")
    step("load the page, give the token, first frame drawn")

    # a click on the car, on a paused view: the prompt names the frame on screen
    view = page.locator("#view")
    page.click("#pause")
    shown = frame_on_screen(page)
    view.click(position=at(view, *CAR))
    page.wait_for_selector("#objects li[data-obj-id='1']", timeout=10_000)
    assert [o["obj_id"] for o in api(base, "/sources/davis/objects")] == [1]
    wait_for(lambda: any(p["frame_id"] == shown for p in results.prompts), 10, "the prompt's result on the WebSocket")
    prompt = next(p for p in results.prompts if p["frame_id"] == shown)
    assert [o["obj_id"] for o in prompt["objects"]] == [1]
    # the page painted the prompt's answer on that frame: the same pixels, in object 1's colour
    drawn = painted(page)
    assert drawn["frame_id"] == shown and (drawn["w"], drawn["h"]) == (FRAME_W, FRAME_H)
    assert drawn["n"] == union_area(prompt) > 0 and set(drawn["colours"]) == {",".join(map(str, OBJ1_RGB))}
    assert 0.005 < drawn["n"] / (FRAME_W * FRAME_H) < 0.9  # calibrated weights: a mask, not the frame
    step("click the car on a paused frame: object 1 on that frame")

    # tracking goes on: results with object 1 arrive over the WebSocket, and the page draws each frame's mask
    page.click("#pause")
    wait_for(lambda: any(f > shown and m["objects"] for f, m in results.track.items()), 20, "tracked results")

    wait_for(draws_a_tracked_result([1], page, results, after=shown), 20, "the page to draw a tracked frame's mask")
    step("results over the WebSocket; the page draws a tracked frame's mask")

    # a negative point on object 1 (selected since its click), on the frame on screen, inside its mask
    page.click("#pause")
    shown = frame_on_screen(page)
    tracked = results.track[shown]
    inside = mask_of(tracked, 1)
    ys, xs = np.nonzero(inside)
    k = len(ys) // 2
    view.click(position=at(view, float(xs[k]), float(ys[k])), modifiers=["Shift"])
    wait_for(lambda: any(p["frame_id"] == shown for p in results.prompts), 10, "the correction's result")
    corrected = next(p for p in results.prompts if p["frame_id"] == shown)
    assert page.is_hidden("#message") or "refused" not in page.text_content("#message-text")
    after = mask_of(corrected, 1)
    assert not np.array_equal(after, inside)  # the correction changed object 1's mask on that frame
    drawn = painted(page)  # and the page shows the corrected mask, not the tracked one
    assert drawn["frame_id"] == shown and drawn["n"] == int(after.sum())
    page.click("#pause")
    step("shift-click: a negative point corrects object 1")

    # New, then a drag: a box adds object 2
    page.click("#new-object")
    box = view.bounding_box()
    x0, y0 = at(view, 600, 120).values()
    x1, y1 = at(view, 760, 300).values()
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + x1, box["y"] + y1, steps=6)
    page.mouse.up()
    page.wait_for_selector("#objects li[data-obj-id='2']", timeout=10_000)
    assert [o["obj_id"] for o in api(base, "/sources/davis/objects")] == [1, 2]
    wait_for(draws_a_tracked_result([1, 2], page, results), 20, "both objects' masks on a tracked frame")
    shot = os.environ.get("SAM2_EDGE_PAGE_SCREENSHOT")  # the README's picture
    if shot:
        page.screenshot(path=shot)
    step("drag a box: object 2, both masks drawn")

    # a click on a frame the server no longer holds is refused, and the page says so
    page.click("#pause")
    stale = frame_on_screen(page)
    wait_for(lambda: api(base, "/sources/davis")["held_frames"]["first"] > stale, 30, "the paused frame to leave the held frames")
    page.click("#objects li[data-obj-id='2'] .info")  # select object 2; a shift-click always prompts it
    view.click(position=at(view, *CAR), modifiers=["Shift"])
    page.wait_for_selector("#message.error:not([hidden])", timeout=10_000)
    text = page.text_content("#message-text")
    assert f"frame {stale}" in text and "no longer held" in text, text
    assert [o["obj_id"] for o in api(base, "/sources/davis/objects")] == [1, 2]  # nothing was added
    page.click("#pause")
    step("a click on a frame no longer held: the API's 409 shown")

    # remove object 1 from its row
    page.click("#objects li[data-obj-id='1'] button")
    page.wait_for_selector("#objects li[data-obj-id='1']", state="detached", timeout=10_000)
    assert [o["obj_id"] for o in api(base, "/sources/davis/objects")] == [2]
    wait_for(lambda: (m := results.track.get(painted(page)["frame_id"])) is not None
             and [o["obj_id"] for o in m["objects"]] == [2], 20, "frames tracked without object 1")
    step("remove object 1: gone from the API, the results and the page")

    # a reload: same source, the token kept for the tab, object 2 listed and drawn
    page.reload()
    page.wait_for_selector("#objects li[data-obj-id='2']", timeout=20_000)
    page.wait_for_selector("#view[data-frame-id]", timeout=20_000)
    assert page.is_hidden("#token-form") and page.input_value("#source") == "davis"
    wait_for(draws_a_tracked_result([2], page, results), 20, "object 2's mask after the reload")
    step("reload: the state comes back, no second token")

    # the latency the page shows, beside the API's
    status = api(base, "/sources/davis")
    shown_latency = page.text_content("#lat-page")
    api_latency = page.text_content("#lat-api")
    assert shown_latency.endswith(" ms") and api_latency.endswith(" ms")

    # a lost connection is said, not silent
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    page.wait_for_selector("#message.error:not([hidden])", timeout=15_000)
    assert "lost" in page.text_content("#message-text") or "reached" in page.text_content("#message-text")
    step("server stopped: the page says the connection is lost")
    results.close()
    assert not errors, errors

    # the server's whole log: it logged the session (access lines, the camera's failures), and no secret
    proc.wait(30)
    log = (tmp_path / "serve.log").read_text()
    assert "GET /sources/davis" in log and "/sources/davis/results" in log and "source door" in log
    assert TOKEN not in log and SECRET not in log, [line for line in log.splitlines() if TOKEN in line
                                                   or SECRET in line][:5]
    assert "Traceback" not in log and "CancelledError" not in log, log[-2000:]

    report("\n".join([f"live page in Chromium ({shutil.which('chromium') or CHROMIUM}):",
                       *(f"  {s:6.2f} s  {name}" for name, s in steps),
                       f"  latency shown: page {shown_latency} (p50 of the last minute's results), API p50/p95 "
                       f"{api_latency}; API status {status['latency_ms']}, fps tracked {status['fps_tracked']}"]))


def draws_a_tracked_result(obj_ids: list[int], page, results: Results, after: int = -1):
    """A check: the page shows a tracked frame after `after` whose result holds `obj_ids`, and it painted
    exactly that result's masks."""
    def check():
        d = painted(page)
        msg = results.track.get(d["frame_id"])
        return d["frame_id"] > after and msg is not None and [o["obj_id"] for o in msg["objects"]] == obj_ids \
            and d["n"] == union_area(msg) > 0
    return check



def test_the_page_labels_the_objects_a_detector_found(browser, modelset_dir, tmp_path):
    """A source with the motion detector and nobody prompting: the page lists the objects it admitted with
    their label, marked as the detector's."""
    from engine.bench.identity_clip import IdentityClip

    frames = IdentityClip(num_frames=24).write_frames(tmp_path / "clip")
    config = tmp_path / "deploy.yaml"
    port = free_port()
    config.write_text(json.dumps({
        "engine": {"model": str(modelset_dir), "backend": {"name": "onnxruntime", "device": "cpu"}},
        "sources": [{"id": "yard", "url": str(frames), "realtime": "every_frame", "loop": True, "fps": 10,
                     "detector": {"kind": "motion", "every": 2}}],
        "server": {"port": port}}))
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.serve", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "SAM2_EDGE_TOKEN": TOKEN})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and any(o.get("origin") == "detector" for o in _objects(base, "yard")),
                 120, "the detector to admit an object")
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        page.wait_for_selector("#objects li.detected", timeout=20_000)
        text = page.inner_text("#objects li.detected .info")
        assert text.startswith("motion (detector"), text
        assert not errors, errors
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


def _objects(base: str, source: str) -> list[dict]:
    try:
        return api(base, f"/sources/{source}/objects")
    except OSError:
        return []
