"""The API's routes, one router per concern. Every router that carries data is built with the auth
dependency on the router itself (`data_router`), so a route added to it cannot forget it; only the page's
files and /healthz are public."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, WebSocketException
from starlette.requests import HTTPConnection

from engine.serve.security import authorize
from engine.serve.service import Service, SourceRunner, UnknownSourceError


def data_router(**kwargs) -> APIRouter:
    """A router whose every route, HTTP or WebSocket, needs the token (when the deployment has one)."""
    return APIRouter(dependencies=[Depends(authorize)], **kwargs)


def get_service(conn: HTTPConnection) -> Service:
    return conn.app.state.service


def get_runner(source_id: str, conn: HTTPConnection) -> SourceRunner:
    """The source a path names (404 naming the known ones otherwise; a WebSocket is closed with 1008)."""
    try:
        return get_service(conn).runner(source_id)
    except UnknownSourceError as exc:
        if conn.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason=str(exc)[:120]) from None
        raise


ServiceDep = Annotated[Service, Depends(get_service)]
RunnerDep = Annotated[SourceRunner, Depends(get_runner)]
