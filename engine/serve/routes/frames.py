"""Frames of a source: a held frame as JPEG, and the MJPEG preview of tracked frames with their masks."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
from fastapi import HTTPException, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from engine.live import FrameNotHeldError, LiveResult
from engine.outputs import overlay_bgr
from engine.serve.routes import RunnerDep, ServiceDep, data_router
from engine.serve.service import SourceRunner

MJPEG_BOUNDARY = "sam2frame"
router = data_router()


@router.get("/sources/{source_id}/frame.jpg", response_class=Response,
            summary="a held frame as JPEG (default: the newest tracked); its id in X-Frame-Id")
def frame(runner: RunnerDep, frame_id: int | None = Query(None, ge=0)) -> Response:
    held = runner.session.held_frame_ids()
    if not held:
        raise HTTPException(409, f"source {runner.spec.id} has no tracked frame yet (state {runner.capture.state})")
    fid = held[-1] if frame_id is None else frame_id
    image = runner.session.frame(fid)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return Response(jpg.tobytes(), media_type="image/jpeg", headers={"X-Frame-Id": str(fid)})


@router.get("/sources/{source_id}/preview.mjpeg", response_class=StreamingResponse,
            summary="the tracked frames with their masks drawn, as an MJPEG stream")
async def preview(runner: RunnerDep,
                  service: ServiceDep) -> StreamingResponse:
    spec = service.deployment.sinks.preview
    if not spec.enabled:
        raise HTTPException(404, "the preview is off in this deployment (sinks.preview.enabled)")
    if not service.preview_clients.acquire():
        raise HTTPException(503, f"{service.preview_clients.size} preview clients are connected already "
                                 f"(limits.preview_clients)", headers={"Retry-After": "5"})

    async def parts():
        try:
            sent = None
            while service.alive:
                last = runner.session.last
                if last is None or last is sent:
                    await asyncio.sleep(0.02)
                    continue
                sent = last
                jpg = await run_in_threadpool(render_overlay, runner, last, spec.quality)
                if jpg is not None:
                    yield (f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nX-Frame-Id: {last.frame_id}\r\n"
                           f"Content-Length: {len(jpg)}\r\n\r\n").encode() + jpg + b"\r\n"
                await asyncio.sleep(1.0 / spec.max_fps)
        finally:
            service.preview_clients.release()

    return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")


def render_overlay(runner: SourceRunner, result: LiveResult, quality: int) -> bytes | None:
    try:
        image = runner.session.frame(result.frame_id)
    except FrameNotHeldError:
        return None
    masks = result.masks if result.objects else np.zeros((0, *image.shape[:2]), bool)
    if masks.shape[1:] != image.shape[:2]:  # the source changed size between the result and now
        return None
    bgr = overlay_bgr(image, result.obj_ids, masks)
    cv2.putText(bgr, f"frame {result.frame_id}  {time.strftime('%H:%M:%S', time.localtime(result.captured_at))}",
                (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return jpg.tobytes() if ok else None
