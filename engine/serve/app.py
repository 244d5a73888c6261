"""The HTTP and WebSocket API over a `Service` (FastAPI; its OpenAPI schema is at /openapi.json).

`create_app(service)` is what `python -m engine.serve` runs, and what an embedding application mounts:
its lifespan starts the service (unless it runs already) and stops what it started.

Every error a caller can cause is a 4xx naming what was wrong: 401 no or a wrong token, 403 a Host or
Origin this server does not serve, 404 an unknown source or object, 409 a frame no longer held (with the
held frames), 413 a body over `limits.request_bytes`, 422 a malformed field (pydantic names it) or a
prompt the engine refuses, 429 an object beyond the source's limit or prompts beyond their rate.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.errors import EngineError
from engine.serve.routes import frames, objects, page, results, status
from engine.serve.schema import engine_error_status
from engine.serve.security import BodyLimit, Guard
from engine.serve.service import Service, UnknownSourceError

log = logging.getLogger("engine.serve")


def create_app(service: Service) -> FastAPI:
    dep = service.deployment

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        started_here = not service.alive
        service.start()
        try:
            yield
        finally:
            close_clients(app)
            if started_here:
                service.stop()

    app = FastAPI(title="sam2-edge live tracking", version="1", lifespan=lifespan,
                  docs_url="/docs" if dep.server.docs else None, redoc_url=None,
                  description="Promptable SAM 2 tracking of live sources. Results over WebSocket at "
                              "/sources/{id}/results; prompts name a frame id from a result or the preview.")
    # outermost first: the Host/Origin guard, then the body limit
    app.add_middleware(BodyLimit, limit=dep.limits.request_bytes)
    app.add_middleware(Guard, allowed_hosts=dep.allowed_hosts(), allowed_origins=dep.server.allowed_origins)
    app.state.service = service
    app.state.token = dep.token()
    app.state.clients = {}  # id -> (source id, ClientQueue) of the connected results WebSockets

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        code = 404 if isinstance(exc, UnknownSourceError) else engine_error_status(exc)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    app.include_router(page.router)
    app.include_router(status.public)
    for module in (status, objects, frames, results):
        app.include_router(module.router)
    return app


def close_clients(app: FastAPI) -> None:
    """Close every results WebSocket (1001) and end the previews: the server is going away. Safe to call
    from a signal handler; uvicorn then has no open stream to wait for."""
    app.state.service.begin_stop()
    for _, queue in list(app.state.clients.values()):
        queue.close()
