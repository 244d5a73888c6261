"""Where results go besides the WebSocket clients: JSON Lines files rotated by size, and MQTT topics.

A sink is called from the tracking worker and from the API's prompt thread, so it must not block either
and must take turns: files are appended a whole line at a time under a lock (a rotation never loses a
line), MQTT messages go into paho's queue, bounded here, and paho's own network thread sends them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Protocol

from engine.errors import ConfigError
from engine.live import LiveResult
from engine.serve.schema import JsonlSinkSpec, MqttSinkSpec

log = logging.getLogger("engine.serve")


class Sink(Protocol):
    def start(self) -> None: ...

    def send(self, result: LiveResult) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """<dir>/<source>.jsonl, one result a line; past `max_bytes` it becomes <source>.jsonl.1 (older ones
    shift up, `keep` are kept) and a new file starts. The generation goes after `.jsonl`, so no source's
    file can be another source's rotated one (source ids may contain dots: `cam.1`).

    A process killed mid-write (SIGKILL, power loss) may leave half a line at the end of a file; the next
    start cuts it off, so every line of every file is whole JSON, and logs how many bytes it removed."""

    def __init__(self, spec: JsonlSinkSpec) -> None:
        self.dir = Path(spec.dir)
        self.max_bytes = spec.max_bytes
        self.keep = spec.keep
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()
        self.lines = 0
        self.repaired: dict[str, int] = {}  # file name -> bytes of a partial last line removed at start

    def start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"sinks.jsonl.dir {self.dir}: cannot create it ({exc})") from exc
        for path in sorted(self.dir.glob("*.jsonl")):
            removed = repair_last_line(path)
            if removed:
                self.repaired[path.name] = removed
                log.warning("sinks.jsonl: %s ended in a partial line (the last run was killed mid-write); removed "
                            "its %d bytes, every line left is whole", path, removed)

    def path(self, source: str, generation: int = 0) -> Path:
        return self.dir / (f"{source}.jsonl" if generation == 0 else f"{source}.jsonl.{generation}")

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
        with self._lock:  # the worker's results and the prompts' answers come from two threads
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
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()


def repair_last_line(path: Path) -> int:
    """Cut a partial last line (no newline at the end) off a JSON Lines file: the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        block = 1 << 16
        end = size
        while end > 0:  # find the last newline, reading backwards a block at a time
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        return size - keep


class MqttSink:
    """Each result to `topic` (with {source} filled in) on an MQTT broker, as JSON.

    What is counted is what happened: `sent` results reached the broker (QoS 1: acknowledged by it; QoS 0:
    written to the connection); `pending` wait in paho's queue (QoS 1 keeps them while the broker is away and
    sends them after the reconnect); `dropped` were never queued: at QoS 0 while the broker is away, and at
    either QoS when `max_queued` results already wait. paho bounds its QoS 1 queue itself; at QoS 0 it
    bounds nothing, so the sink counts what it handed over and paho has not written yet."""

    def __init__(self, spec: MqttSinkSpec) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ConfigError("sinks.mqtt needs paho-mqtt: pip install 'sam2-edge[serve]'") from exc
        self._ok = mqtt.MQTT_ERR_SUCCESS
        self._no_conn = mqtt.MQTT_ERR_NO_CONN
        self.spec = spec
        self.max_queued = spec.max_queued
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=spec.client_id or "")
        if spec.username:
            self.client.username_pw_set(spec.username, spec.password)
        self.client.max_queued_messages_set(spec.max_queued)  # QoS 1: paho refuses past it
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._handed = 0  # results paho took (queued or written)
        self.sent = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return self._handed - self.sent

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            self.sent += 1

    def start(self) -> None:
        # connect_async + loop_start: a broker that is down now is retried in paho's thread, never here
        self.client.connect_async(self.spec.host, self.spec.port, keepalive=30)
        self.client.loop_start()

    def send(self, result: LiveResult) -> None:
        topic = self.spec.topic.replace("{source}", result.source)
        with self._lock:
            full = self.pending >= self.max_queued  # QoS 0 on a connection that cannot keep up
            if full:
                self.dropped += 1
        if full:
            return
        # never under our lock: paho calls _on_publish holding its own locks, which publish() takes too
        self._publish(topic, result.to_text())
        if result.events:
            events_topic = self.spec.events_topic.replace("{source}", result.source)
            for event in result.events:
                self._publish(events_topic, json.dumps({"source": result.source, **event.to_json()}))

    def _publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=self.spec.qos)
        with self._lock:
            if info.rc == self._ok or (info.rc == self._no_conn and self.spec.qos > 0):
                self._handed += 1  # QoS 1 while disconnected: kept by paho for the reconnect
            else:  # QoS 0 while disconnected (paho keeps nothing), or paho's QoS 1 queue is full
                self.dropped += 1

    def close(self) -> None:
        self.client.disconnect()  # after the messages already queued
        self.client.loop_stop()
