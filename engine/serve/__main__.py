"""python -m engine.serve --config deploy.yaml: track the deployment's sources and serve the API.

    python -m engine.serve --config configs/serve-example.yaml
    curl localhost:8080/sources                                   # status of every source
    curl -X POST localhost:8080/sources/cam0/prompts -H 'content-type: application/json' \\
         -d '{"frame_id": 120, "obj_id": 1, "points": [[420, 250]], "labels": [1]}'

Ctrl-C or SIGTERM stop it cleanly: captures stop, sinks are flushed and closed.
"""

from __future__ import annotations

import argparse
import logging
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
    p.add_argument("--check", action="store_true", help="validate the deployment and load the model, then exit")
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
    service = Service(dep, tracker, stage_timer=lambda: stages.total_s)
    return dep, service, create_app(service)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.getLogger("engine").setLevel(getattr(logging, args.log_level.upper()))
    dep, service, app = build(args.config, args.host, args.port)
    if args.check:
        print(f"{args.config}: {len(dep.sources)} sources, model {service.tracker.modelset.root}: ok")
        return 0
    import uvicorn

    config = uvicorn.Config(app, host=dep.server.host, port=dep.server.port, log_level=args.log_level,
                            timeout_graceful_shutdown=5)
    class Server(uvicorn.Server):
        """uvicorn re-raises a stopping signal after its shutdown, which would end the process before the
        service stops; here SIGTERM and Ctrl-C are requests to stop: sinks are flushed and the exit code is 0."""

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    server = Server(config)
    service.start()
    try:
        server.run()  # returns on SIGINT / SIGTERM (uvicorn's handlers)
    finally:
        service.stop()
        print("stopped: sinks flushed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
