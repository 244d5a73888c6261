"""What stands between the API and a caller: the token, the Host and Origin checks, response headers, the
body limit, and a log filter that keeps secrets out of every log line.

- **The token** (`server.token` or $SAM2_EDGE_TOKEN) is read from `Authorization: Bearer <token>`; a
  browser's WebSocket cannot set that header, so the page offers it as a WebSocket subprotocol
  `sam2-edge.bearer.<base64url(token)>` beside `sam2-edge`, which the server selects (the token is never
  echoed). `?token=` still works for clients that can set neither (an MJPEG viewer); it never reaches a log.
- **Host** must be one of `server.allowed_hosts` (a page on evil.example that rebinds its DNS name to
  127.0.0.1 sends `Host: evil.example`), and **Origin**, where a browser sends one on a WebSocket or a
  request that changes something, must be the server's own or one of `server.allowed_origins`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from typing import Any

from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection

from engine.live.redact import redact

SUBPROTOCOL = "sam2-edge"
BEARER_PROTOCOL = SUBPROTOCOL + ".bearer."
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
FRAME_ANCESTORS = b"frame-ancestors 'none'"


def offered_protocols(conn: HTTPConnection) -> list[str]:
    return [p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def token_given(conn: HTTPConnection) -> str:
    """The token a request or WebSocket handshake carries: the Authorization header, the page's WebSocket
    subprotocol, or ?token= (in that order); '' when none."""
    auth = conn.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for proto in offered_protocols(conn):
        if proto.startswith(BEARER_PROTOCOL):
            encoded = proto[len(BEARER_PROTOCOL):]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return ""
    return conn.query_params.get("token", "")


def authorize(conn: HTTPConnection) -> None:
    """The one auth dependency of every router that carries data, for HTTP requests and WebSockets alike."""
    token = conn.app.state.token
    if token is None:
        return
    if hmac.compare_digest(token_given(conn).encode(), token.encode()):
        return
    if conn.scope["type"] == "websocket":
        raise WebSocketException(code=1008, reason="missing or wrong token")
    raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                        headers={"WWW-Authenticate": "Bearer"})


def _host_of(value: str) -> str:
    """'example.com:8080' -> 'example.com'; '[::1]:8080' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: the Host allow-list and the Origin check, for HTTP and WebSocket; the security
    headers on every HTTP response (no sniffing, no framing by other sites, no referrer)."""

    def __init__(self, app: Any, allowed_hosts: list[str], allowed_origins: list[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = {_host_of(h) for h in allowed_hosts if h != "*"} | {h.strip().lower() for h in allowed_hosts}
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}

    def _refusal(self, scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if not self.any_host and host.lower() not in self.hosts and _host_of(host) not in self.hosts:
            return f"host {host!r} is not served here (server.allowed_hosts)"
        origin = headers.get("origin")
        checked = scope["type"] == "websocket" or scope.get("method", "GET") in UNSAFE_METHODS
        if checked and origin is not None and origin.lower() != "null":
            own = re.sub(r"^https?://", "", origin.lower().rstrip("/"))
            if own != host.lower() and origin.lower().rstrip("/") not in self.origins:
                return f"origin {origin!r} may not use this API (server.allowed_origins)"
        if checked and origin is not None and origin.lower() == "null":
            return "an opaque origin (null) may not use this API"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            log.warning("refused %s %s: %s", scope["type"], redact(scope.get("path", "")), refusal)
            if scope["type"] == "websocket":  # before the handshake: the browser sees a failed connection (403)
                await send({"type": "websocket.close", "code": 1008, "reason": refusal})
                return
            body = ('{"detail":' + _json_str(refusal) + "}").encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", FRAME_ANCESTORS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _json_str(text: str) -> str:
    import json

    return json.dumps(text)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413, whether it says its length
    (Content-Length) or not (chunked). A chunked body is counted as it arrives; past the limit the 413 is
    sent at once, the application is told the client left, and whatever it answers is discarded."""

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
        refused = False
        started = False

        async def limited():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    if not started:
                        await _too_large(self.limit, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except Exception:
            if not refused:
                raise


async def _too_large(limit: int, send) -> None:
    body = f'{{"detail":"request body over {limit} bytes (limits.request_bytes)"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class RedactingFilter(logging.Filter):
    """Rewrites every record so no token, ticket or URL credential reaches a log: the message and each
    string argument (uvicorn's access log passes the request path, query string included, as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with the redacting filter on every handler, and the engine's own loggers on the
    same handler (so the service's warnings are filtered too)."""
    fmt = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(name)s: %(message)s",
           "use_colors": None}
    access = {"()": "uvicorn.logging.AccessFormatter",
              "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'}
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"default": fmt, "access": access},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr",
                        "filters": ["redact"]},
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout",
                       "filters": ["redact"]},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["access"], "level": level.upper(), "propagate": False},
            "engine": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


log = logging.getLogger("engine.serve")
