"""Objects of a source: list them, add or correct one with a prompt on a held frame, remove one.

A prompt takes the tracker's lock, so it waits for the frame being tracked. Prompts run on the service's
own prompt thread (never the server's shared thread pool), at most `limits.prompts_waiting` at once, and
each source takes `limits.prompts_per_second` of them (a burst of `limits.prompt_burst`): past either, 429.
"""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import numpy as np
from fastapi import HTTPException, Response

from engine.outputs import rle_from_string
from engine.postprocess import rle_decode
from engine.serve.routes import RunnerDep, ServiceDep, data_router
from engine.serve.schema import PromptRequest

router = data_router()


@router.get("/sources/{source_id}/objects", summary="objects with their last result")
def objects(runner: RunnerDep) -> list[dict[str, Any]]:
    last = {o.obj_id: o for o in (runner.session.last.objects if runner.session.last else [])}
    return [{"obj_id": o, "present": last[o].present if o in last else None,
             "score": round(last[o].score, 4) if o in last else None,
             "box": last[o].box if o in last else None, **((last[o].info or {}) if o in last else {})}
            for o in runner.session.obj_ids]


@router.post("/sources/{source_id}/detect", status_code=202, summary="run the source's detector on its next "
                                                                   "tracked frame; new objects and events follow "
                                                                   "on the results")
def detect(runner: RunnerDep, service: ServiceDep) -> dict[str, Any]:
    if runner.session.auto is None:
        raise HTTPException(409, f"source {runner.spec.id} has no detector (a detector: section on the source or "
                                 f"in the engine config)")
    service.request_detection(runner.spec.id)
    return {"source": runner.spec.id, "requested": True}


@router.post("/sources/{source_id}/prompts", summary="add or correct an object on a held frame; answers its mask "
                                                      "on that frame")
async def prompt(body: PromptRequest, runner: RunnerDep,
                 service: ServiceDep) -> dict[str, Any]:
    wait = runner.prompt_rate.take()
    if wait > 0:
        raise HTTPException(429, f"source {runner.spec.id} takes {service.deployment.limits.prompts_per_second:g} "
                                 f"prompts a second (limits.prompts_per_second); retry in {wait:.1f} s",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
    mask = None
    if body.mask is not None:
        hw = runner.session.video_hw
        if hw is None:
            raise HTTPException(409, f"source {runner.spec.id} has no frame yet")
        mask = decode_mask(body.mask, hw)
    if not service.prompts_waiting.acquire():
        raise HTTPException(429, f"{service.prompts_waiting.size} prompts already wait for the tracker "
                                 f"(limits.prompts_waiting); retry shortly", headers={"Retry-After": "1"})
    try:
        call = functools.partial(service.prompt, runner.spec.id, body.frame_id, body.obj_id, points=body.points,
                                 labels=body.labels, box=body.box, mask=mask, clear_old_points=body.clear_old_points)
        result = await asyncio.get_running_loop().run_in_executor(service.prompt_executor, call)
    finally:
        service.prompts_waiting.release()
    return result.to_json()


@router.delete("/sources/{source_id}/objects/{obj_id}", status_code=204, summary="remove an object")
def remove(obj_id: int, runner: RunnerDep,
           service: ServiceDep) -> Response:
    if obj_id not in runner.session.obj_ids:
        raise HTTPException(404, f"source {runner.spec.id} has no object {obj_id}; objects: {runner.session.obj_ids}")
    service.remove_object(runner.spec.id, obj_id)
    return Response(status_code=204)


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
