"""One schema for the deployment YAML and the API's requests: pydantic models, which FastAPI also uses
for validation and for the OpenAPI document. The engine section is checked by `engine.config`'s own
validator (a path to an engine config, or its keys inline), not by a second one here."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.config import EngineConfig, load_config, parse_config
from engine.errors import ConfigError, EngineError, InputError
from engine.live.readers import camera_index, is_stream_url

TOKEN_ENV = "SAM2_EDGE_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_INTERFACE = ("0.0.0.0", "::", "")
SOURCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconnectSpec(Strict):
    initial_s: float = Field(0.5, gt=0, le=60, description="first wait before reopening a failed source")
    max_s: float = Field(10.0, gt=0, le=600, description="longest wait between attempts (doubling up to it)")
    stable_s: float = Field(10.0, gt=0, le=3600, description="the wait starts again from initial_s only after "
                                                             "an open that delivered frames this long")


class SourceSpec(Strict):
    id: str = Field(pattern=SOURCE_ID, description="name used in the API, topics and file names")
    url: str = Field(min_length=1, description="camera:N, rtsp://..., http(s)://... (MJPEG or HLS), a video "
                                               "file or a frame folder")
    realtime: Literal["latest", "every_frame"] | None = Field(
        None, description="latest: track the newest frame, drop the rest (default for cameras and streams); "
                          "every_frame: track every frame in order (default for files and folders)")
    loop: bool = Field(True, description="files and folders: start again at the end (false: play once)")
    fps: float | None = Field(None, gt=0, le=1000, description="files and folders: playback rate (default: the "
                                                               "file's own; folders 25)")
    reconnect: ReconnectSpec = ReconnectSpec()
    tracking_policy: Literal["meta", "samurai"] | None = Field(
        None, description="the tracking policy on this source (default: the engine's tracker.policy); samurai: "
                          "SAMURAI's motion-aware mask choice and memory")
    samurai: dict[str, Any] | None = Field(None, description="SAMURAI's parameters on this source (as "
                                                             "tracker.samurai)")
    detector: dict[str, Any] | Literal[False] | None = Field(
        None, description="objects found by a detector on this source: a detector section as in an engine config "
                          "(kind, every, ..., identity); absent: the engine config's detector, if any; false: none")

    @property
    def is_stream(self) -> bool:
        return is_stream_url(self.url)

    @property
    def policy(self) -> str:
        return self.realtime or ("latest" if self.is_stream else "every_frame")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("camera:"):
            try:
                camera_index(v)  # the capture's own check
            except InputError as exc:
                raise ValueError(str(exc)) from None
        if "://" in v and not re.match(r"^(rtsp|rtsps|http|https)://", v):
            raise ValueError("stream URLs are rtsp://, rtsps://, http:// or https://")
        return v


class JsonlSinkSpec(Strict):
    dir: str = Field(description="folder of <source>.jsonl files (relative to the deployment file)")
    max_bytes: int = Field(50_000_000, ge=1_000, description="rotate a file past this size")
    keep: int = Field(5, ge=1, le=1000, description="rotated files kept per source")


class MqttSinkSpec(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic: str = Field("sam2/{source}/results", description="{source} is replaced by the source id")
    events_topic: str = Field("sam2/{source}/events", description="a detector's events (entered, lost, "
                                                                  "reacquired, expired, removed), one a message")
    qos: Literal[0, 1] = Field(0, description="0: at most once (dropped while the broker is away); 1: at least "
                                               "once (kept and resent after a reconnect, up to max_queued)")
    max_queued: int = Field(256, ge=1, le=100_000, description="results waiting for the broker at most; past it "
                                                                "new ones are dropped and counted")
    client_id: str | None = None
    username: str | None = None
    password: str | None = None


class PreviewSpec(Strict):
    enabled: bool = True
    max_fps: float = Field(10.0, gt=0, le=60, description="MJPEG preview frames per second at most")
    quality: int = Field(80, ge=10, le=100, description="JPEG quality")


class WebSocketSpec(Strict):
    queue: int = Field(32, ge=1, le=10_000, description="results held per client; the oldest are dropped")


class SinksSpec(Strict):
    websocket: WebSocketSpec = WebSocketSpec()
    jsonl: JsonlSinkSpec | None = None
    mqtt: MqttSinkSpec | None = None
    preview: PreviewSpec = PreviewSpec()


class ServerSpec(Strict):
    host: str = Field("127.0.0.1", description="interface to bind; anything but loopback needs a token")
    port: int = Field(8080, ge=0, le=65535)
    token: str | None = Field(None, min_length=16, description=f"bearer token (or ${TOKEN_ENV})")
    allowed_hosts: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Host header values served (host or host:port; '*' any). Default: the loopback names "
                          "and the bound address; when bound to every interface (0.0.0.0), any host, since a token "
                          "is then required. Stops DNS rebinding from reaching a loopback server.")
    allowed_origins: list[Annotated[str, Field(pattern=r"^https?://[^/]+$")]] = Field(
        default_factory=list, description="origins (scheme://host[:port]) besides the server's own whose pages may "
                                          "open the results WebSocket or send prompts")
    docs: bool = Field(False, description="serve Swagger UI at /docs; its script and styles load from "
                                          "cdn.jsdelivr.net, so the browser needs internet (/openapi.json is always "
                                          "served)")


class LimitsSpec(Strict):
    objects_per_source: int = Field(16, ge=1, le=255)
    frames_held: int = Field(32, ge=1, le=1000, description="tracked frames kept per source for prompts")
    request_bytes: int = Field(4_000_000, ge=1_000, le=100_000_000, description="largest request body")
    websocket_message_bytes: int = Field(4096, ge=125, le=1_000_000, description="largest message a WebSocket "
                                                                                 "client may send (it needs none)")
    websocket_clients: int = Field(32, ge=1, le=10_000, description="results WebSocket clients at once, all sources")
    preview_clients: int = Field(4, ge=1, le=1000, description="MJPEG preview clients at once, all sources")
    prompts_per_second: float = Field(5.0, gt=0, le=1000, description="prompts a source takes per second (a token "
                                                                      "bucket); past it: 429 with Retry-After")
    prompt_burst: int = Field(10, ge=1, le=10_000, description="prompts a source takes at once before the rate "
                                                               "applies")
    prompts_waiting: int = Field(4, ge=1, le=1000, description="prompts waiting for the tracker at once, all "
                                                               "sources; past it: 429")


class LiveSpec(Strict):
    """How live capture shares the CPU with the tracker (engine.live.plan, where the measurements behind the
    defaults are)."""

    capture_nice: int = Field(0, ge=0, le=19, description="capture threads (and FFmpeg's decoding threads) run "
                                                          "this much below the tracker's priority (Linux); 0: same")
    decode_threads: int = Field(0, ge=0, le=64, description="FFmpeg decoding threads per camera or stream (0: "
                                                            "FFmpeg's default, one per core)")


class Deployment(Strict):
    engine: str | dict[str, Any] = Field(description="an engine config file, or its keys (model, backend, "
                                                     "stages, tracker) inline")
    sources: list[SourceSpec] = Field(min_length=1)
    sinks: SinksSpec = SinksSpec()
    server: ServerSpec = ServerSpec()
    limits: LimitsSpec = LimitsSpec()
    live: LiveSpec = LiveSpec()

    @model_validator(mode="after")
    def _unique(self) -> Deployment:
        ids = [s.id for s in self.sources]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"source ids must be unique; repeated: {', '.join(dup)}")
        return self

    def token(self) -> str | None:
        return self.server.token or os.environ.get(TOKEN_ENV) or None

    def allowed_hosts(self) -> list[str]:
        """The Host header values the server answers (server.allowed_hosts, or its default)."""
        if self.server.allowed_hosts is not None:
            return list(self.server.allowed_hosts)
        if self.server.host in ANY_INTERFACE:
            return ["*"]
        return sorted({*LOOPBACK, self.server.host})


def _pydantic_message(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"config {source}: key '{key}': {msg}" + (f" (got {err['input']!r})"
                                                                if err["type"] not in ("extra_forbidden", "missing")
                                                                and not isinstance(err["input"], dict) else ""))
    return "; ".join(lines)


def load_deployment(path: str | Path) -> tuple[Deployment, EngineConfig]:
    """Read and check a deployment file; the engine section goes through engine.config. Errors name the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"deployment file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: not valid YAML: {exc}") from exc
    return parse_deployment(data, base=path.parent.resolve(), source=str(path))


def parse_deployment(data: Any, base: Path | None = None, source: str = "<dict>") -> tuple[Deployment, EngineConfig]:
    try:
        dep = Deployment.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(_pydantic_message(exc, source)) from None
    base = base or Path.cwd()
    if isinstance(dep.engine, str):
        engine_path = Path(dep.engine).expanduser()
        engine = load_config(engine_path if engine_path.is_absolute() else base / engine_path)
    else:
        engine = parse_config(dep.engine, base=base, source=f"{source} (engine)")
    if dep.server.host not in LOOPBACK and not dep.token():
        raise ConfigError(f"config {source}: key 'server.host': {dep.server.host} is not a loopback address, so "
                          f"the API needs a bearer token: set server.token or ${TOKEN_ENV}")
    sources = [s.model_copy(update={"url": str(_resolve(s.url, base))}) if not s.is_stream else s
               for s in dep.sources]
    sources = [_with_detector(s, i, engine, base, source) for i, s in enumerate(sources)]
    for i, s in enumerate(sources):
        source_tracker(s, engine.tracker, f"{source} sources[{i}]")  # errors name the key now, not at start
    sinks = dep.sinks
    if sinks.jsonl is not None:
        sinks = sinks.model_copy(update={"jsonl": sinks.jsonl.model_copy(update={"dir": str(_resolve(sinks.jsonl.dir,
                                                                                                       base))})})
    return dep.model_copy(update={"sources": sources, "sinks": sinks}), engine


def _with_detector(spec: SourceSpec, index: int, engine: EngineConfig, base: Path, source: str) -> SourceSpec:
    """The source's detector section checked now (errors name the key), with its files' paths made absolute."""
    from engine.detect.settings import parse_detector

    if not spec.detector:
        return spec
    raw = dict(spec.detector)
    parse_detector(raw, base, source, f"sources[{index}].detector", engine_backend=engine.backend)
    for key in ("model", "class_names"):
        if isinstance(raw.get(key), str):
            raw[key] = str(_resolve(raw[key], base))
    return spec.model_copy(update={"detector": raw})


def source_tracker(spec: SourceSpec, settings: Any, where: str | None = None) -> Any:
    """The tracker settings of a source: the engine's, with the source's policy (engine.config.TrackerSettings)."""
    from dataclasses import replace

    from engine.policies.samurai import parse_samurai

    policy = spec.tracking_policy or settings.policy
    if spec.samurai is not None and policy != "samurai":
        raise ConfigError(f"config {where or spec.id}: key 'samurai': SAMURAI's keys need tracking_policy: samurai")
    if spec.tracking_policy is None and spec.samurai is None:
        return settings
    samurai = parse_samurai(spec.samurai, where or f"source {spec.id}", "samurai") if spec.samurai else settings.samurai
    return replace(settings, policy=policy, samurai=samurai)


def source_detector(spec: SourceSpec, engine: EngineConfig | None) -> Any:
    """The detector settings of a source (engine.detect.DetectorSettings), or None."""
    from engine.detect.settings import parse_detector

    if spec.detector is False:
        return None
    if spec.detector is None:
        return None if engine is None else engine.detector
    return parse_detector(spec.detector, None, f"source {spec.id}", "detector",
                          engine_backend=None if engine is None else engine.backend)


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


# ----------------------------------------------------------------------------- API requests
class MaskRle(Strict):
    """COCO run-length encoding (pycocotools' compressed string, as results carry it) at the frame's size."""

    size: Annotated[list[int], Field(min_length=2, max_length=2)]
    counts: str = Field(min_length=1)


class PromptRequest(Strict):
    """Add or correct an object on a frame the source holds (a frame id from a result or the preview)."""

    frame_id: int = Field(ge=0)
    obj_id: int = Field(ge=1, le=2_147_483_647, description="a new id adds an object; a detector's ids go on past 255")
    points: list[Annotated[list[float], Field(min_length=2, max_length=2)]] | None = Field(
        None, max_length=64, description="clicks [[x, y], ...] in frame pixels")
    labels: list[Literal[0, 1]] | None = Field(None, max_length=64, description="1 positive, 0 negative, per point")
    box: Annotated[list[float], Field(min_length=4, max_length=4)] | None = Field(
        None, description="[x0, y0, x1, y1] in frame pixels")
    mask: MaskRle | None = None
    clear_old_points: bool = Field(True, description="false: add these clicks to the frame's earlier ones")

    @model_validator(mode="after")
    def _one_kind(self) -> PromptRequest:
        if self.mask is not None and (self.points is not None or self.box is not None):
            raise ValueError("a mask prompt cannot be combined with points or a box")
        if self.mask is None and self.points is None and self.box is None:
            raise ValueError("give points (with labels), a box or a mask")
        if (self.points is None) != (self.labels is None):
            raise ValueError("points and labels go together")
        if self.points is not None and len(self.points) != len(self.labels or []):
            raise ValueError(f"{len(self.points)} points but {len(self.labels or [])} labels")
        return self


def engine_error_status(exc: EngineError) -> int:
    from engine.live import FrameNotHeldError, ObjectLimitError

    if isinstance(exc, FrameNotHeldError):
        return 409
    if isinstance(exc, ObjectLimitError):
        return 429
    return 422
