"""Where results go besides the WebSocket clients: JSON Lines files rotated by size, and MQTT topics.

A sink is called from the tracking worker, so it must not block it: files are appended a whole line at a
time (a stop never leaves half a line), MQTT messages go into paho's bounded queue and its own network
thread sends them (when the broker is away they are dropped and counted, as DL Streamer does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Protocol

from engine.errors import ConfigError
from engine.live import LiveResult
from engine.serve.schema import JsonlSink as JsonlSpec
from engine.serve.schema import MqttSink as MqttSpec

log = logging.getLogger("engine.serve")


class Sink(Protocol):
    def start(self) -> None: ...

    def send(self, result: LiveResult) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """<dir>/<source>.jsonl, one result a line; past `max_bytes` it becomes <source>.1.jsonl (older ones
    shift up, `keep` are kept) and a new file starts."""

    def __init__(self, spec: JsonlSpec) -> None:
        self.dir = Path(spec.dir)
        self.max_bytes = spec.max_bytes
        self.keep = spec.keep
        self._files: dict[str, IO[str]] = {}
        self.lines = 0

    def start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"sinks.jsonl.dir {self.dir}: cannot create it ({exc})") from exc

    def path(self, source: str, generation: int = 0) -> Path:
        return self.dir / (f"{source}.jsonl" if generation == 0 else f"{source}.{generation}.jsonl")

    def _rotate(self, source: str) -> None:
        self._files.pop(source).close()
        oldest = self.path(source, self.keep)
        if oldest.exists():
            oldest.unlink()
        for g in range(self.keep - 1, -1, -1):
            if self.path(source, g).exists():
                os.replace(self.path(source, g), self.path(source, g + 1))

    def send(self, result: LiveResult) -> None:
        line = result.to_text() + "\n"
        f = self._files.get(result.source)
        if f is not None and f.tell() + len(line) > self.max_bytes and f.tell() > 0:
            self._rotate(result.source)
            f = None
        if f is None:
            f = self._files[result.source] = open(self.path(result.source), "a", encoding="utf-8")
        f.write(line)  # one write of a whole line; flushed so a reader (tail -f) sees it now
        f.flush()
        self.lines += 1

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class MqttSink:
    """Each result to `topic` (with {source} filled in) on an MQTT broker, as JSON."""

    def __init__(self, spec: MqttSpec, max_queued: int = 256) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ConfigError("sinks.mqtt needs paho-mqtt: pip install 'sam2-edge[serve]'") from exc
        self.spec = spec
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=spec.client_id or "")
        if spec.username:
            self.client.username_pw_set(spec.username, spec.password)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        # connect_async + loop_start: a broker that is down now is retried in paho's thread, never here
        self.client.connect_async(self.spec.host, self.spec.port, keepalive=30)
        self.client.loop_start()

    def send(self, result: LiveResult) -> None:
        topic = self.spec.topic.replace("{source}", result.source)
        info = self.client.publish(topic, result.to_text(), qos=self.spec.qos)
        if info.rc == 0:
            self.sent += 1
        else:  # not connected, or the queue is full
            self.dropped += 1

    def close(self) -> None:
        self.client.disconnect()  # after the messages already queued
        self.client.loop_stop()
