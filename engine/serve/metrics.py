"""/metrics in Prometheus' text exposition format (version 0.0.4): counters and gauges per source."""

from __future__ import annotations

from typing import Any

from engine.live import STATES


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(service: Any, clients: dict[int, tuple[str, Any]]) -> str:
    rows: dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]] = {}

    def add(name: str, kind: str, help_text: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        rows.setdefault(name, (kind, help_text, []))[2].append((labels, float(value)))

    for sid, runner in service.sources.items():
        st = runner.status()
        src = {"source": sid}
        add("sam2_frames_in_total", "counter", "frames decoded from the source", src, st["frames_in"])
        add("sam2_frames_tracked_total", "counter", "frames tracked", src, st["frames_tracked"])
        add("sam2_frames_dropped_total", "counter", "frames replaced by a newer one before tracking", src,
            st["frames_dropped"])
        add("sam2_reconnects_total", "counter", "times the source was reopened", src, st["reconnects"])
        add("sam2_tracking_errors_total", "counter", "frames whose tracking failed", src, runner.errors)
        add("sam2_bad_frames_total", "counter", "frames of a file source that could not be decoded (skipped)", src,
            st["bad_frames"])
        add("sam2_size_changes_total", "counter", "times the source's frame size changed (objects carried over)",
            src, st["size_changes"])
        add("sam2_prompts_refused_total", "counter", "prompts refused by limits.prompts_per_second", src,
            runner.prompt_rate.refused)
        add("sam2_fps_in", "gauge", "frames per second decoded", src, st["fps_in"])
        add("sam2_fps_tracked", "gauge", "frames per second tracked", src, st["fps_tracked"])
        for q in ("p50", "p95"):
            v = st["latency_ms"][q]
            add("sam2_latency_seconds", "gauge", "capture to result, over the last results", {**src, "quantile":
                "0.5" if q == "p50" else "0.95"}, None if v is None else v / 1000)
        add("sam2_objects", "gauge", "objects tracked", src, len(st["objects"]))
        for state in STATES:
            add("sam2_source_state", "gauge", "1 for the source's state", {**src, "state": state},
                1.0 if st["state"] == state else 0.0)
        auto = runner.session.auto
        if auto is not None:
            add("sam2_detector_seconds_total", "counter", "time in the source's detector", src, auto.detector_s)
            add("sam2_detector_runs_total", "counter", "detector runs", src, auto.runs)
            add("sam2_detections_total", "counter", "detections (before the identity policy)", src, auto.detections)
            add("sam2_detections_over_cap_total", "counter", "detections not admitted: the source's objects were at "
                "detector.identity.max_objects", src, auto.policy.over_cap)
            for kind, count in sorted(auto.events.items()):
                add("sam2_object_events_total", "counter", "objects entered, lost, reacquired, expired, removed",
                    {**src, "event": kind}, count)
        if runner.busy_s > 0:
            add("sam2_service_seconds_total", "counter", "worker time on the source's frames", src, runner.busy_s)
            add("sam2_stage_seconds_total", "counter", "of which in the stage models", src, runner.stage_s)
    per_source: dict[str, list[Any]] = {}
    for sid, queue in clients.values():
        per_source.setdefault(sid, []).append(queue)
    for sid, queues in per_source.items():
        add("sam2_websocket_clients", "gauge", "connected WebSocket clients", {"source": sid}, len(queues))
        add("sam2_websocket_dropped_total", "counter", "results dropped for slow clients (connected ones)",
            {"source": sid}, sum(q.dropped for q in queues))
    add("sam2_delivery_errors_total", "counter", "results a sink or client failed to take", {}, service.sink_errors)
    add("sam2_stages_live_to_alone", "gauge", "the stages' time per frame over the last minute against the same "
        "calls alone (engine.bench's record; absent until measured)", {}, service.stages_live_to_alone()["ratio"])
    for slots in (service.websocket_clients, service.preview_clients, service.prompts_waiting):
        add("sam2_refused_total", "counter", "requests refused because a limit was full", {"limit": slots.what},
            slots.refused)
        add("sam2_slots_held", "gauge", "what a limit holds now", {"limit": slots.what}, slots.held)
    for sink in service.sinks:
        if hasattr(sink, "pending"):
            add("sam2_mqtt_sent_total", "counter", "results that reached the broker (QoS 1: acknowledged)", {},
                sink.sent)
            add("sam2_mqtt_pending", "gauge", "results waiting in the MQTT client's queue", {}, sink.pending)
            add("sam2_mqtt_dropped_total", "counter", "results never queued (QoS 0 with the broker away, or the "
                "queue full)", {}, sink.dropped)
    out = []
    for name, (kind, help_text, samples) in rows.items():
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return "\n".join(out) + "\n"
