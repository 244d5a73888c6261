"""Liveness (public), status of the sources and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from engine.serve.metrics import prometheus_text
from engine.serve.routes import RunnerDep, ServiceDep, data_router

public = APIRouter()
router = data_router()


@public.get("/healthz", summary="liveness: the worker runs; each source's state")
async def healthz(service: ServiceDep) -> dict[str, Any]:
    # async: answered on the event loop, never queued behind prompts or frame encodes in a thread pool
    return {"status": "ok" if service.alive else "stopped",
            "sources": {sid: r.capture.state for sid, r in service.sources.items()}}


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text format")
def metrics(request: Request, service: ServiceDep) -> str:
    return prometheus_text(service, request.app.state.clients)


@router.get("/sources", summary="every source with its status")
def sources(service: ServiceDep) -> list[dict[str, Any]]:
    return [r.status() for r in service.sources.values()]


@router.get("/sources/{source_id}", summary="one source's status")
def source(runner: RunnerDep) -> dict[str, Any]:
    return runner.status()
