"""The HTTP and WebSocket API over a running `Service` (FastAPI; its OpenAPI schema is at /openapi.json and
its pages at /docs).

Every error a caller can cause is a 4xx naming what was wrong: 404 an unknown source or object, 409 a
frame no longer held (with the held frames), 413 a body over `limits.request_bytes`, 422 a malformed
field (pydantic names it) or a prompt the engine refuses, 429 an object beyond the source's limit.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from engine.errors import EngineError
from engine.live import FrameNotHeldError, LiveResult
from engine.outputs import overlay_bgr, rle_from_string
from engine.postprocess import rle_decode
from engine.serve.metrics import prometheus_text
from engine.serve.schema import PromptRequest, engine_error_status
from engine.serve.service import Service, SourceRunner, UnknownSourceError

MJPEG_BOUNDARY = "sam2frame"
PAGE = Path(__file__).with_name("page")
# the page loads nothing from elsewhere (the box may be offline): the browser is told to refuse anything else
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'",
                "Cache-Control": "no-cache"}


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413, whether or not it says its length."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await _too_large(self.limit, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, send) -> None:
    body = f'{{"detail":"request body over {limit} bytes (limits.request_bytes)"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ClientQueue:
    """A WebSocket client's results: bounded, the oldest dropped (and counted) when the client is slow."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.items: deque[str] = deque()
        self.size = size
        self.dropped = 0
        self.ready = asyncio.Event()

    def offer(self, result: LiveResult) -> None:  # from the tracking worker: never blocks
        text = result.to_text()
        self.loop.call_soon_threadsafe(self._put, text)

    def _put(self, text: str) -> None:
        if len(self.items) >= self.size:
            self.items.popleft()
            self.dropped += 1
        self.items.append(text)
        self.ready.set()

    async def get(self) -> str:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()


def decode_mask(rle: Any, hw: tuple[int, int]) -> np.ndarray:
    """A prompt's COCO RLE -> H x W bool, refusing one whose size or counts do not fit the frame."""
    h, w = hw
    if list(rle.size) != [h, w]:
        raise HTTPException(422, f"mask.size {rle.size} does not match the frame ({h} x {w}: [{h}, {w}])")
    try:
        counts = rle_from_string(rle.counts)
    except (IndexError, ValueError):
        counts = None
    if counts is None or any(c < 0 for c in counts) or sum(counts) != h * w:
        raise HTTPException(422, f"mask.counts is not a COCO RLE of a {h} x {w} mask (pycocotools' compressed "
                                 f"string, column-major runs that add up to {h * w})")
    return rle_decode({"size": [h, w], "counts": counts})


def create_app(service: Service) -> FastAPI:
    dep = service.deployment
    token = dep.token()
    app = FastAPI(title="sam2-edge live tracking", version="1",
                  description="Promptable SAM 2 tracking of live sources. Results over WebSocket at "
                              "/sources/{id}/results; prompts name a frame id from a result or the preview.")
    app.add_middleware(BodyLimit, limit=dep.limits.request_bytes)
    app.state.service = service
    app.state.clients = {}

    def authorize(request: Request, token_q: str | None = Query(None, alias="token")) -> None:
        if token is None:
            return
        given = token_q or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>, or ?token=)",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorize)]

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownSourceError) else engine_error_status(exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def runner(source_id: str) -> SourceRunner:
        return service.runner(source_id)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The live page: pick a source, watch it, click to prompt (engine/serve/page; no build step)."""
        return FileResponse(PAGE / "index.html", headers=PAGE_HEADERS)

    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.get("/healthz", summary="liveness: the worker runs; each source's state")
    def healthz() -> dict[str, Any]:
        return {"status": "ok" if service.alive else "stopped",
                "sources": {sid: r.capture.state for sid, r in service.sources.items()}}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=auth, summary="Prometheus text format")
    def metrics() -> str:
        return prometheus_text(service, app.state.clients)

    @app.get("/sources", dependencies=auth, summary="every source with its status")
    def sources() -> list[dict[str, Any]]:
        return [r.status() for r in service.sources.values()]

    @app.get("/sources/{source_id}", dependencies=auth)
    def source(source_id: str) -> dict[str, Any]:
        return runner(source_id).status()

    @app.get("/sources/{source_id}/objects", dependencies=auth, summary="objects with their last result")
    def objects(source_id: str) -> list[dict[str, Any]]:
        r = runner(source_id)
        last = {o.obj_id: o for o in (r.session.last.objects if r.session.last else [])}
        return [{"obj_id": o, "present": last[o].present if o in last else None,
                 "score": round(last[o].score, 4) if o in last else None,
                 "box": last[o].box if o in last else None} for o in r.session.obj_ids]

    @app.post("/sources/{source_id}/prompts", dependencies=auth,
              summary="add or correct an object on a held frame; answers its mask on that frame")
    def prompt(source_id: str, body: PromptRequest) -> dict[str, Any]:
        r = runner(source_id)
        mask = None
        if body.mask is not None:
            hw = r.session.video_hw
            if hw is None:
                raise HTTPException(409, f"source {source_id} has no frame yet")
            mask = decode_mask(body.mask, hw)
        result = service.prompt(source_id, body.frame_id, body.obj_id, points=body.points, labels=body.labels,
                                box=body.box, mask=mask, clear_old_points=body.clear_old_points)
        return result.to_json()

    @app.delete("/sources/{source_id}/objects/{obj_id}", status_code=204, dependencies=auth)
    def remove(source_id: str, obj_id: int) -> Response:
        r = runner(source_id)
        if obj_id not in r.session.obj_ids:
            raise HTTPException(404, f"source {source_id} has no object {obj_id}; objects: {r.session.obj_ids}")
        service.remove_object(source_id, obj_id)
        return Response(status_code=204)

    @app.get("/sources/{source_id}/frame.jpg", dependencies=auth, response_class=Response,
             summary="a held frame as JPEG (default: the newest tracked); its id in X-Frame-Id")
    def frame(source_id: str, frame_id: int | None = Query(None, ge=0)) -> Response:
        r = runner(source_id)
        held = r.session.held_frame_ids()
        if not held:
            raise HTTPException(409, f"source {source_id} has no tracked frame yet (state {r.capture.state})")
        fid = held[-1] if frame_id is None else frame_id
        image = r.session.frame(fid)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return Response(jpg.tobytes(), media_type="image/jpeg", headers={"X-Frame-Id": str(fid)})

    @app.get("/sources/{source_id}/preview.mjpeg", dependencies=auth, response_class=StreamingResponse,
             summary="the tracked frames with their masks drawn, as an MJPEG stream")
    async def preview(source_id: str) -> StreamingResponse:
        r = runner(source_id)
        spec = dep.sinks.preview
        if not spec.enabled:
            raise HTTPException(404, "the preview is off in this deployment (sinks.preview.enabled)")

        async def parts():
            sent = None
            while service.alive:
                last = r.session.last
                if last is None or last is sent:
                    await asyncio.sleep(0.02)
                    continue
                sent = last
                jpg = await run_in_threadpool(render_overlay, r, last, spec.quality)
                if jpg is not None:
                    yield (f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nX-Frame-Id: {last.frame_id}\r\n"
                           f"Content-Length: {len(jpg)}\r\n\r\n").encode() + jpg + b"\r\n"
                await asyncio.sleep(1.0 / spec.max_fps)

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")

    @app.websocket("/sources/{source_id}/results")
    async def results(ws: WebSocket, source_id: str, token_q: str | None = Query(None, alias="token")) -> None:
        given = token_q or ws.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
            await ws.close(code=1008, reason="missing or wrong token")
            return
        if source_id not in service.sources:
            await ws.close(code=1008, reason=f"unknown source {source_id!r}")
            return
        await ws.accept()
        queue = ClientQueue(asyncio.get_running_loop(), dep.sinks.websocket.queue)
        app.state.clients[id(queue)] = (source_id, queue)
        unsubscribe = service.subscribe(source_id, queue.offer)
        try:
            while True:
                await ws.send_text(await queue.get())
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass
        finally:
            unsubscribe()
            app.state.clients.pop(id(queue), None)

    return app


def render_overlay(r: SourceRunner, result: LiveResult, quality: int) -> bytes | None:
    try:
        image = r.session.frame(result.frame_id)
    except FrameNotHeldError:
        return None
    masks = result.masks if result.objects else np.zeros((0, *image.shape[:2]), bool)
    bgr = overlay_bgr(image, result.obj_ids, masks)
    cv2.putText(bgr, f"frame {result.frame_id}  {time.strftime('%H:%M:%S', time.localtime(result.captured_at))}",
                (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpg.tobytes() if ok else None
