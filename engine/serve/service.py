"""The live service without its web layer: sources, one tracker for all of them, a scheduler, sinks.

One worker thread runs every stage call (one loaded stage set; runtimes are not asked to run two
requests at once). It serves the sources round-robin, each time taking the newest frame of the next
source that has one, so a busy source cannot starve the others. Prompts from the API run on the
caller's thread under the same lock, between two tracked frames. Results go to every sink from the
worker, and no sink may block it: WebSocket clients and MQTT have bounded queues of their own.

A source whose frames keep failing is logged once, then at most once a minute with the count of the
failures in between (`ThrottledLog`), so a broken camera cannot fill a disk with one line per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import InputError
from engine.live import Backoff, Capture, LiveResult, LiveSession
from engine.live.plan import LivePlan
from engine.live.readers import open_reader
from engine.live.redact import redact, redact_url
from engine.serve.limits import RateLimit, Slots
from engine.serve.schema import Deployment, SourceSpec, source_detector, source_tracker
from engine.serve.sinks import JsonlSink, MqttSink, Sink
from engine.tracker import Tracker

log = logging.getLogger("engine.serve")

Subscriber = Callable[[LiveResult], None]


class UnknownSourceError(InputError):
    pass


class ThrottledLog:
    """A warning that may repeat every frame: said the first time, then at most once every `every_s`
    seconds with how many times it happened in between."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def warning(self, msg: str, *args: Any) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            self.suppressed += 1
            return False
        more = f" ({self.suppressed} more like it in the last {now - self._last:.0f} s)" if self.suppressed else ""
        self.logger.warning(msg + more, *args)
        self._last, self.suppressed = now, 0
        return True


@dataclass
class SourceRunner:
    spec: SourceSpec
    capture: Capture
    session: LiveSession
    prompt_rate: RateLimit
    error_log: ThrottledLog = field(default_factory=lambda: ThrottledLog(log))
    latencies: deque = field(default_factory=lambda: deque(maxlen=600))
    tracked_at: deque = field(default_factory=lambda: deque(maxlen=64))
    subscribers: list[Subscriber] = field(default_factory=list)
    errors: int = 0
    last_error: str | None = None  # a tracking error (the capture keeps its own)
    service_view: Callable[[], dict[str, Any]] | None = None  # the service-wide live/alone ratio
    busy_s: float = 0.0  # worker time on this source's frames
    step_s: float = 0.0  # of which in the tracker's step (the rest: results out, the service's own)
    stage_s: float = 0.0  # of which in the stage models

    def status(self) -> dict[str, Any]:
        auto = self.session.auto
        lat = np.array(self.latencies) * 1000 if self.latencies else None
        t = list(self.tracked_at)
        fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        cap = self.capture
        return {"id": self.spec.id, "url": redact_url(self.spec.url),
                "policy": self.spec.policy, "tracking_policy": self.session.tracker.policy.name, "state": cap.state,
                "last_error": self.last_error or cap.last_error,
                "fps_in": round(cap.fps_in, 2), "fps_tracked": round(fps, 2), "frames_in": cap.frames_in,
                "frames_tracked": self.session.tracked, "frames_dropped": cap.dropped, "reconnects": cap.reconnects,
                "bad_frames": cap.bad_frames, "size_changes": self.session.size_changes,
                "tracking_errors": self.errors,
                "latency_ms": {"p50": None if lat is None else round(float(np.percentile(lat, 50)), 1),
                               "p95": None if lat is None else round(float(np.percentile(lat, 95)), 1)},
                "objects": self.session.obj_ids, "held_frames": _span(self.session.held_frame_ids()),
                "stages_live_to_alone": self.service_view() if self.service_view else None,
                "frame_size": (None if self.session.video_hw is None
                               else {"height": self.session.video_hw[0], "width": self.session.video_hw[1]}),
                "detector": None if auto is None else {**auto.status(),
                                                       "detections_per_s": round(self._detections_per_s(), 2)}}

    def _detections_per_s(self) -> float:
        """Detections a second over the frames tracked lately (the detector's runs among them)."""
        t = list(self.tracked_at)
        auto = self.session.auto
        if auto is None or len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        per_frame = auto.detections / max(auto.frames, 1)
        return per_frame * (len(t) - 1) / (t[-1] - t[0])


def _span(ids: list[int]) -> dict[str, int] | None:
    return {"first": ids[0], "last": ids[-1], "count": len(ids)} if ids else None


class Service:
    """Build with a validated deployment and its engine's tracker; `start()`, then `stop()`."""

    def __init__(self, deployment: Deployment, tracker: Tracker, stage_timer: Callable[[], float] | None = None,
                 stage_stats: Any = None, alone: dict[str, Any] | None = None, engine: Any = None) -> None:
        self.deployment = deployment
        self.tracker = tracker
        self.lock = threading.RLock()  # every stage call, from the worker or a prompt
        self._stage_timer = stage_timer  # seconds spent in stages so far (a ProfiledStages' total), if wrapped
        # live against alone (engine.baselines): the stage set's per-stage counters (a ProfiledStages), the
        # record engine.bench made of the same stages alone, and snapshots of the counters over the last minute
        self.stage_stats = stage_stats
        self.alone = alone
        self._stage_window: deque[tuple[float, dict[str, int], dict[str, float]]] = deque(maxlen=13)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="sam2-serve-worker", daemon=True)
        self._started = False
        self._stopped = False
        self.started_at = time.time()
        lim = deployment.limits
        # prompts run here, not on the web server's thread pool, so a flood of them cannot stall /healthz;
        # one thread, since every stage call takes the same lock anyway
        self.prompt_executor = ThreadPoolExecutor(1, thread_name_prefix="sam2-serve-prompt")
        self.prompts_waiting = Slots(lim.prompts_waiting, "limits.prompts_waiting")
        self.websocket_clients = Slots(lim.websocket_clients, "limits.websocket_clients")
        self.preview_clients = Slots(lim.preview_clients, "limits.preview_clients")
        self.sources: dict[str, SourceRunner] = {}
        plan = LivePlan(**deployment.live.model_dump())
        for spec in deployment.sources:
            rc = spec.reconnect
            capture = Capture(spec.url, policy=spec.policy, loop=spec.loop, fps=spec.fps, name=spec.id,
                              backoff=Backoff(rc.initial_s, rc.max_s, rc.stable_s), plan=plan)
            capture.on_frame(self._notify)
            detector = source_detector(spec, engine)
            auto = None
            if detector is not None:
                from engine.detect import AutoPrompter

                auto = AutoPrompter(detector)
            settings = source_tracker(spec, tracker.settings)
            own = tracker if settings == tracker.settings else Tracker(tracker.modelset, tracker.stages, settings)
            session = LiveSession(own, name=spec.id, held_frames=lim.frames_held,
                                  max_objects=lim.objects_per_source, lock=self.lock, auto=auto)
            self.sources[spec.id] = SourceRunner(spec, capture, session,
                                                 RateLimit(lim.prompts_per_second, lim.prompt_burst),
                                                 service_view=self.stages_live_to_alone)
        self.sinks: list[Sink] = []
        sinks = deployment.sinks
        if sinks.jsonl is not None:
            self.sinks.append(JsonlSink(sinks.jsonl))
        if sinks.mqtt is not None:
            self.sinks.append(MqttSink(sinks.mqtt))
        self._rr = 0
        self.sink_errors = 0
        self._delivery_log = ThrottledLog(log)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Service:
        """Start sinks, captures and the worker (once; a second call does nothing)."""
        if self._started:
            return self
        self._started = True
        for sink in self.sinks:
            sink.start()
        for runner in self.sources.values():
            runner.capture.start()
        self._worker.start()
        return self

    def begin_stop(self) -> None:
        """The server is shutting down: streams to clients end now (`alive` is False); `stop()` follows."""
        self._stop.set()
        self._notify()

    def stop(self) -> None:
        """Stop captures and the worker, then flush and close the sinks (whole lines only). Once."""
        if self._stopped:
            return
        self._stopped = True
        self.begin_stop()
        for runner in self.sources.values():
            runner.capture.stop()
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        self.prompt_executor.shutdown(wait=True, cancel_futures=True)
        for sink in self.sinks:
            sink.close()

    def check_sources(self, timeout_s: float = 15.0) -> dict[str, str | None]:
        """Open every source once and read one frame: source id -> None, or why it failed (without
        credentials). `engine.serve --check` reports it; the service itself opens sources lazily."""
        results: dict[str, str | None] = {}

        def probe(runner: SourceRunner) -> None:
            reader = None
            try:
                reader = open_reader(runner.spec.url, loop=runner.spec.loop, fps=runner.spec.fps)
                if reader.read() is None:
                    raise InputError("opened, but gave no frame")
                results[runner.spec.id] = None
            except Exception as exc:  # noqa: BLE001 - every failure is a line of the report
                results[runner.spec.id] = redact(str(exc) or type(exc).__name__)
            finally:
                if reader is not None:
                    reader.close()

        threads = [threading.Thread(target=probe, args=(r,), daemon=True) for r in self.sources.values()]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for sid in self.sources:
            results.setdefault(sid, f"gave no frame within {timeout_s:.0f} s")
        return results

    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._stop.is_set()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # ------------------------------------------------------------------ scheduling
    def _next_runner(self) -> SourceRunner | None:
        runners = list(self.sources.values())
        for k in range(len(runners)):
            runner = runners[(self._rr + k) % len(runners)]
            if runner.capture.has_frame():
                self._rr = (self._rr + k + 1) % len(runners)
                return runner
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            runner = self._next_runner()
            if runner is None:
                with self._wake:
                    self._wake.wait(timeout=0.05)
                continue
            frame = runner.capture.next_frame(timeout=0)
            if frame is None:
                continue
            self.track_one(runner, frame)

    def track_one(self, runner: SourceRunner, frame) -> LiveResult | None:
        t0 = time.perf_counter()
        s0 = self._stage_timer() if self._stage_timer else 0.0
        try:
            result = runner.session.track(frame)
            runner.step_s += time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - one bad frame or source must not stop the others
            runner.errors += 1
            runner.last_error = redact(f"tracking frame {frame.frame_id}: {exc}")
            runner.error_log.warning("source %s: %s", runner.spec.id, runner.last_error)
            return None
        runner.last_error = None
        runner.latencies.append(result.latency_s)
        runner.tracked_at.append(time.monotonic())
        self._snapshot_stages()
        self.publish(runner, result)
        runner.busy_s += time.perf_counter() - t0
        if self._stage_timer:
            runner.stage_s += self._stage_timer() - s0
        return result

    def publish(self, runner: SourceRunner, result: LiveResult) -> None:
        for deliver in [*(s.send for s in self.sinks), *runner.subscribers]:
            try:
                deliver(result)
            except Exception as exc:  # noqa: BLE001 - a failing sink or client must not stop tracking
                self.sink_errors += 1
                self._delivery_log.warning("source %s: a result could not be delivered: %s", runner.spec.id, exc)

    # ------------------------------------------------------------------ live against alone
    def _snapshot_stages(self) -> None:
        """Every 5 s, the stage counters (a minute of them is kept): the window of `stages_live_to_alone`."""
        if self.stage_stats is None:
            return
        now = time.monotonic()
        if not self._stage_window or now - self._stage_window[-1][0] >= 5.0:
            self._stage_window.append((now, dict(self.stage_stats.calls), dict(self.stage_stats.seconds)))

    def stages_live_to_alone(self) -> dict[str, Any]:
        """The stages' time over the last minute against what the same calls took alone (engine.bench's record
        for this machine, model set and runtime settings): 1.0 means the capture and the server cost the
        tracker nothing; 1.25, a quarter more time per frame. None until both are known."""
        from engine.baselines import expected_alone_s
        from engine.modelset import STAGES

        out: dict[str, Any] = {"ratio": None, "window_s": None,
                               "alone": None if self.alone is None else self.alone.get("how")}
        if self.alone is None:
            out["alone"] = ("not measured on this machine: run python -m engine.bench --config <the engine config> "
                            "(with the same runtime settings)")
            return out
        if self.stage_stats is None or len(self._stage_window) < 1:
            return out
        t0, calls0, secs0 = self._stage_window[0]
        calls = {st: self.stage_stats.calls.get(st, 0) - calls0.get(st, 0) for st in STAGES}
        live_s = sum(self.stage_stats.seconds.get(st, 0.0) - secs0.get(st, 0.0) for st in STAGES)
        alone_s = expected_alone_s(self.alone["per_call_ms"], calls)
        if alone_s:
            out["ratio"] = round(live_s / alone_s, 3)
            out["window_s"] = round(time.monotonic() - t0, 1)
        return out

    # ------------------------------------------------------------------ API operations
    def runner(self, source_id: str) -> SourceRunner:
        runner = self.sources.get(source_id)
        if runner is None:
            raise UnknownSourceError(f"unknown source {source_id!r}; sources: {', '.join(self.sources)}")
        return runner

    def prompt(self, source_id: str, frame_id: int, obj_id: int, **prompt: Any) -> LiveResult:
        runner = self.runner(source_id)
        result = runner.session.prompt(frame_id, obj_id, **prompt)
        self.publish(runner, result)
        return result

    def remove_object(self, source_id: str, obj_id: int) -> None:
        self.runner(source_id).session.remove_object(obj_id)

    def request_detection(self, source_id: str) -> None:
        """Run the source's detector on its next tracked frame."""
        runner = self.runner(source_id)
        if runner.session.auto is None:
            raise InputError(f"source {source_id} has no detector: add a detector: section to it or to the engine "
                             f"config")
        runner.session.auto.request()

    def subscribe(self, source_id: str, callback: Subscriber) -> Callable[[], None]:
        runner = self.runner(source_id)
        runner.subscribers.append(callback)
        return lambda: runner.subscribers.remove(callback) if callback in runner.subscribers else None
