"""The sinks on their own: JSON Lines files written from two threads, rotated without a lost line, named so
no source's file is another's, repaired after a kill; the MQTT sink's counts and its bound at QoS 0."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from engine.live import LiveResult
from engine.serve.schema import JsonlSinkSpec, MqttSinkSpec
from engine.serve.sinks import JsonlSink, MqttSink


def _result(source: str, i: int, kind: str = "track") -> LiveResult:
    return LiveResult(source, i, time.time(), time.time(), [], kind)


def _lines(folder) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.iterdir()) for line in f.read_text().splitlines()]


def test_two_threads_rotating_lose_no_line(tmp_path):
    """The worker's tracked results and a prompt's answer arrive from two threads; a rotation in one must not
    close the file the other is writing."""
    sink = JsonlSink(JsonlSinkSpec(dir=str(tmp_path), max_bytes=1_000, keep=1000))
    sink.start()
    errors = []

    def write(kind: str) -> None:
        for i in range(1500):
            try:
                sink.send(_result("cam", i, kind))
            except Exception as exc:  # noqa: BLE001 - what the service would count as a lost result
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in ("track", "prompt")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    lines = _lines(tmp_path)
    assert not errors and len(lines) == 3000 and sink.lines == 3000
    assert sorted((m["kind"], m["frame_id"]) for m in lines) == sorted((k, i) for k in ("track", "prompt")
                                                                      for i in range(1500))


def test_a_source_id_with_a_dot_never_shares_a_file(tmp_path):
    """Sources `cam` and `cam.1`: before, `cam`'s first rotated file was `cam.1.jsonl`, `cam.1`'s own file."""
    sink = JsonlSink(JsonlSinkSpec(dir=str(tmp_path), max_bytes=1_000, keep=3))
    sink.start()
    for i in range(60):
        sink.send(_result("cam", i))
        sink.send(_result("cam.1", i))
    sink.close()
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["cam.1.jsonl", "cam.1.jsonl.1", "cam.1.jsonl.2", "cam.1.jsonl.3",
                     "cam.jsonl", "cam.jsonl.1", "cam.jsonl.2", "cam.jsonl.3"]
    for f in tmp_path.iterdir():
        source = "cam.1" if f.name.startswith("cam.1.") else "cam"
        assert {json.loads(line)["source"] for line in f.read_text().splitlines()} == {source}, f.name


def test_a_partial_last_line_is_cut_at_the_next_start(tmp_path, caplog):
    """SIGKILL or power loss mid-write leaves half a line; the next start removes it and says so."""
    whole = json.dumps({"source": "cam", "frame_id": 1}) + "\n"
    (tmp_path / "cam.jsonl").write_text(whole * 3 + '{"source": "cam", "fra')
    door = whole.replace('"cam"', '"door"')
    (tmp_path / "door.jsonl").write_text(door)
    sink = JsonlSink(JsonlSinkSpec(dir=str(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="engine.serve"):
        sink.start()
    assert (tmp_path / "cam.jsonl").read_text() == whole * 3 and (tmp_path / "door.jsonl").read_text() == door
    assert sink.repaired == {"cam.jsonl": len('{"source": "cam", "fra')}
    assert "cam.jsonl ended in a partial line" in caplog.text and "removed its 22 bytes" in caplog.text
    sink.send(_result("cam", 2))
    sink.close()
    assert [m["frame_id"] for m in _lines(tmp_path) if m["source"] == "cam"] == [1, 1, 1, 2]


class _Stalled:
    """paho's publish on a connection that takes nothing: accepted, never written (no on_publish)."""

    def __init__(self, rc: int) -> None:
        self.rc = rc
        self.calls = 0

    def __call__(self, topic, payload, qos=0):
        self.calls += 1

        class Info:
            pass

        info = Info()
        info.rc = self.rc
        return info


def test_mqtt_at_qos0_is_bounded_and_counts_what_happened():
    sink = MqttSink(MqttSinkSpec(qos=0, max_queued=5))
    sink.client.publish = stalled = _Stalled(rc=0)
    for i in range(12):
        sink.send(_result("cam", i))
    # paho would queue all twelve on a stalled connection; the sink stops at 5 waiting and drops the rest
    assert stalled.calls == 5 and sink.pending == 5 and sink.dropped == 7 and sink.sent == 0
    sink._on_publish(None, None, 1)  # one was written
    sink.send(_result("cam", 12))
    assert stalled.calls == 6 and sink.sent == 1 and sink.pending == 5


@pytest.mark.parametrize("qos, kept", [(0, False), (1, True)])
def test_mqtt_with_the_broker_away(qos, kept):
    """Not connected: paho keeps QoS 1 messages for the reconnect (pending, not dropped) and QoS 0 ones not."""
    import paho.mqtt.client as mqtt

    sink = MqttSink(MqttSinkSpec(qos=qos, max_queued=50))
    sink.client.publish = _Stalled(rc=mqtt.MQTT_ERR_NO_CONN)
    for i in range(3):
        sink.send(_result("cam", i))
    assert (sink.pending, sink.dropped) == ((3, 0) if kept else (0, 3))
