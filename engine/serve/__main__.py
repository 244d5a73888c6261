"""python -m engine.serve --config deploy.yaml: track the deployment's sources and serve the API.

    python -m engine.serve --config configs/serve-example.yaml
    curl localhost:8080/sources                                   # status of every source
    curl -X POST localhost:8080/sources/cam0/prompts -H 'content-type: application/json' \\
         -d '{"frame_id": 120, "obj_id": 1, "points": [[420, 250]], "labels": [1]}'

Ctrl-C or SIGTERM stop it cleanly: clients are closed, captures stop, sinks are flushed and closed.
`--check` validates the deployment, loads the model and opens every source once, naming those that fail.
No log line carries the token or a camera's credentials (engine.serve.security.RedactingFilter).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
from pathlib import Path

from engine.cli import run_cli
from engine.errors import ConfigError

log = logging.getLogger("engine.serve")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.serve", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="deployment YAML (see configs/serve-example.yaml)")
    p.add_argument("--host", help="override server.host")
    p.add_argument("--port", type=int, help="override server.port (0: any free port, printed at start)")
    p.add_argument("--check", action="store_true", help="validate the deployment, load the model and open every "
                                                       "source once, then exit (1 naming the sources that fail)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def build(config: Path, host: str | None = None, port: int | None = None):
    """The deployment, its service (not started) and the app: what main runs, for tests and embedding."""
    try:
        from engine.serve.app import create_app
        from engine.serve.schema import LOOPBACK, load_deployment
    except ImportError as exc:
        raise ConfigError(f"engine.serve needs its extra: pip install 'sam2-edge[serve]' ({exc})") from exc
    from engine.modelset import ModelSet
    from engine.profiling import ProfiledStages
    from engine.serve.service import Service
    from engine.stages import StageSet
    from engine.tracker import Tracker

    dep, engine_cfg = load_deployment(config)
    server = dep.server.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    dep = dep.model_copy(update={"server": server})
    if server.host not in LOOPBACK and not dep.token():
        raise ConfigError(f"--host {server.host} is not a loopback address: set server.token or $SAM2_EDGE_TOKEN")
    if engine_cfg.model is None:
        raise ConfigError(f"the engine config of {config} names no model set (model: <folder>)")
    ms = ModelSet.load(engine_cfg.model, verify_checksums=True)
    stages = ProfiledStages(StageSet.load(ms, engine_cfg))
    tracker = Tracker(ms, stages, engine_cfg.tracker)
    from engine.baselines import lookup
    from engine.modelset import STAGES

    alone = lookup(ms, {s: engine_cfg.backend_for(s) for s in STAGES})
    service = Service(dep, tracker, stage_timer=lambda: stages.total_s, stage_stats=stages, alone=alone,
                      engine=engine_cfg)
    return dep, service, create_app(service)


def check(dep, service) -> int:
    """--check: the deployment and model loaded; now every source opened once."""
    results = service.check_sources()
    failed = {spec.id: results[spec.id] for spec in dep.sources if results[spec.id] is not None}
    for spec in dep.sources:
        print(f"  source {spec.id}: " + (f"FAILED: {failed[spec.id]}" if spec.id in failed else "opened, gave a frame"))
    if failed:
        print(f"{len(failed)} of {len(dep.sources)} sources cannot be opened: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"ok: {len(dep.sources)} sources, model {service.tracker.modelset.root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # FFmpeg (inside OpenCV) writes its own errors straight to stderr, past the log filter, and they may
    # carry a camera's URL with its password: quiet, unless the user asks (the capture's own errors say
    # what failed, without credentials)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        from engine.serve.security import log_config
    except ImportError:  # the serve extra is missing: build() says so
        log_config = None
    if log_config is not None:
        logging.config.dictConfig(log_config(args.log_level))
    dep, service, app = build(args.config, args.host, args.port)
    if args.check:
        return check(dep, service)
    import uvicorn

    from engine.serve.app import close_clients

    config = uvicorn.Config(app, host=dep.server.host, port=dep.server.port, log_config=log_config(args.log_level),
                            timeout_graceful_shutdown=5, ws_max_size=dep.limits.websocket_message_bytes,
                            server_header=False)

    class Server(uvicorn.Server):
        """uvicorn re-raises a stopping signal after its shutdown, which would end the process before the
        service stops; here SIGTERM and Ctrl-C are requests to stop: clients are closed at once (uvicorn
        would otherwise wait for them, then cancel them with a traceback), sinks are flushed, exit code 0."""

        def handle_exit(self, sig, frame) -> None:
            close_clients(app)
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    server = Server(config)
    try:
        server.run()  # the app's lifespan starts the service; returns on SIGINT / SIGTERM
    finally:
        service.stop()
        print("stopped: sinks flushed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
