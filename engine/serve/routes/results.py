"""The results WebSocket: every result of a source as JSON text, through a bounded queue per client.

The client sends nothing; what it does send is read and discarded (so it cannot pile up), and a message
over `limits.websocket_message_bytes` closes the connection (1009). At most `limits.websocket_clients`
are connected (1013 past it). When the server shuts down, each client is closed with 1001 at once,
instead of waiting out uvicorn's graceful-shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from fastapi import WebSocket, WebSocketDisconnect

from engine.live import LiveResult
from engine.serve.routes import RunnerDep, ServiceDep, data_router
from engine.serve.security import SUBPROTOCOL, offered_protocols

router = data_router()
CLOSED = object()  # put on a client's queue when the server stops


class ClientQueue:
    """A WebSocket client's results: bounded, the oldest dropped (and counted) when the client is slow."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.items: deque = deque()
        self.size = size
        self.dropped = 0
        self.ready = asyncio.Event()

    def offer(self, result: LiveResult) -> None:  # from the tracking worker: never blocks
        text = result.to_text()
        self.loop.call_soon_threadsafe(self._put, text)

    def close(self) -> None:  # from any thread
        self.loop.call_soon_threadsafe(self._put, CLOSED)

    def _put(self, item) -> None:
        if item is not CLOSED and len(self.items) >= self.size:
            self.items.popleft()
            self.dropped += 1
        self.items.append(item)
        self.ready.set()

    async def get(self):
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()


@router.websocket("/sources/{source_id}/results")
async def results(ws: WebSocket, runner: RunnerDep,
                  service: ServiceDep) -> None:
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered_protocols(ws) else None
    await ws.accept(subprotocol=subprotocol)
    if not service.websocket_clients.acquire():
        await ws.close(code=1013, reason=f"{service.websocket_clients.size} clients are connected already "
                                         f"(limits.websocket_clients)")
        return
    clients = ws.app.state.clients
    queue = ClientQueue(asyncio.get_running_loop(), service.deployment.sinks.websocket.queue)
    clients[id(queue)] = (runner.spec.id, queue)
    unsubscribe = service.subscribe(runner.spec.id, queue.offer)
    reader = asyncio.create_task(_discard_client_messages(ws, service.deployment.limits.websocket_message_bytes))
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:  # the client left, or broke the rules
                getter.cancel()
                break
            item = getter.result()
            if item is CLOSED:
                await ws.close(code=1001, reason="the server is shutting down")
                break
            await ws.send_text(item)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        unsubscribe()
        clients.pop(id(queue), None)
        service.websocket_clients.release()


async def _discard_client_messages(ws: WebSocket, limit: int) -> None:
    """Read what the client sends (nothing is expected) until it leaves; an oversized message closes it."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        size = len(message.get("text") or "") + len(message.get("bytes") or b"")
        if size > limit:
            await ws.close(code=1009, reason=f"messages are limited to {limit} bytes "
                                             f"(limits.websocket_message_bytes)")
            return
