"""The deployment file: one pydantic schema, the engine section by engine.config, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.serve.schema import TOKEN_ENV, load_deployment, parse_deployment

ROOT = Path(__file__).resolve().parents[3]
ENGINE = {"backend": {"name": "onnxruntime", "device": "cpu"}}


def _dep(**over):
    data = {"engine": ENGINE, "sources": [{"id": "cam0", "url": "camera:0"}], **over}
    return parse_deployment(data)[0]


def test_the_shipped_example_is_valid_and_runs_from_a_fresh_clone():
    """Its model set is the one the README's set-up builds, and its file source ships with the project."""
    import subprocess

    dep, engine = load_deployment(ROOT / "configs" / "serve-example.yaml")
    assert [s.id for s in dep.sources] == ["recording"] and dep.sources[0].policy == "every_frame"
    assert engine.backend.name == "openvino" and dep.server.host == "127.0.0.1"
    assert engine.model.resolve() == (ROOT / "models" / "sam2.1_hiera_tiny").resolve()  # the set-up builds it
    clip = Path(dep.sources[0].url)
    assert clip.is_absolute() and clip.is_file() and dep.sinks.jsonl.dir.endswith("runs/live")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(clip.resolve().relative_to(ROOT))], cwd=ROOT,
                             capture_output=True)
    assert tracked.returncode == 0, f"{clip} is not in the repository"


def test_policies_default_by_source_kind():
    dep = _dep(sources=[{"id": "a", "url": "rtsp://cam/1"}, {"id": "b", "url": "clip.mp4"},
                        {"id": "c", "url": "https://cam/mjpg"}, {"id": "d", "url": "clip.mp4", "realtime": "latest"}])
    assert [s.policy for s in dep.sources] == ["latest", "every_frame", "latest", "latest"]


@pytest.mark.parametrize("data, message", [
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": ENGINE, "sinkz": {}}, "key 'sinkz': unknown key"),
    ({"sources": [{"id": "a", "url": "camera:0", "fps2": 3}], "engine": ENGINE}, "key 'sources.0.fps2': unknown key"),
    ({"sources": [{"id": "a", "url": "camera:0", "realtime": "newest"}], "engine": ENGINE},
     "key 'sources.0.realtime': Input should be 'latest' or 'every_frame'"),
    ({"sources": [{"id": "a", "url": "camera:one"}], "engine": ENGINE}, "camera:N with N a number"),
    ({"sources": [{"id": "a", "url": "ftp://x/y"}], "engine": ENGINE}, "rtsp://, rtsps://, http:// or https://"),
    ({"sources": [{"id": "a b", "url": "camera:0"}], "engine": ENGINE}, "key 'sources.0.id'"),
    ({"sources": [{"id": "a", "url": "camera:0"}, {"id": "a", "url": "camera:1"}], "engine": ENGINE},
     "source ids must be unique; repeated: a"),
    ({"sources": [], "engine": ENGINE}, "key 'sources'"),
    ({"sources": [{"id": "a", "url": "camera:0"}]}, "key 'engine': required key is missing"),
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": ENGINE, "limits": {"frames_held": 0}},
     "key 'limits.frames_held': Input should be greater than or equal to 1"),
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": ENGINE, "server": {"port": 70000}},
     "key 'server.port'"),
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": ENGINE, "sinks": {"mqtt": {"qos": 2}}},
     "key 'sinks.mqtt.qos'"),
    # the engine section is engine.config's: its messages, its keys
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": {"backend": {"name": "tensorflow"}}},
     "key 'backend.name': value 'tensorflow' is not allowed"),
    ({"sources": [{"id": "a", "url": "camera:0"}], "engine": {"trackr": {}}}, "key 'trackr': unknown key"),
])
def test_bad_deployments_are_refused_naming_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        parse_deployment(data, source="deploy.yaml")
    assert message in str(exc.value)


def test_any_other_interface_needs_a_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError, match="server.host': 0.0.0.0 is not a loopback address"):
        _dep(server={"host": "0.0.0.0"})
    assert _dep(server={"host": "0.0.0.0", "token": "x" * 16}).token() == "x" * 16
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment")
    assert _dep(server={"host": "0.0.0.0"}).token() == "from-the-environment"
    with pytest.raises(ConfigError, match="server.token"):
        _dep(server={"token": "short"})


def test_an_engine_config_file_is_resolved_beside_the_deployment(tmp_path):
    (tmp_path / "engine.yaml").write_text("backend: {name: onnxruntime, device: cpu}\n")
    (tmp_path / "deploy.yaml").write_text("engine: engine.yaml\nsources: [{id: a, url: frames}]\n")
    dep, engine = load_deployment(tmp_path / "deploy.yaml")
    assert engine.backend.name == "onnxruntime" and dep.sources[0].url == str(tmp_path / "frames")
    (tmp_path / "deploy.yaml").write_text("engine: missing.yaml\nsources: [{id: a, url: frames}]\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load_deployment(tmp_path / "deploy.yaml")
    (tmp_path / "deploy.yaml").write_text("engine: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_deployment(tmp_path / "deploy.yaml")


def test_a_source_s_detector_is_checked_at_load_and_overrides_the_engine_s(tmp_path):
    from engine.serve.schema import source_detector

    with pytest.raises(ConfigError, match=r"sources\[0\].detector.every"):
        _dep(sources=[{"id": "a", "url": "rtsp://cam/1", "detector": {"kind": "motion", "every": 0}}])
    model = tmp_path / "det.onnx"
    model.write_bytes(b"x")
    dep, engine = parse_deployment({"engine": {"backend": {"name": "openvino"}, "detector": {"kind": "hog-people"}},
                                    "sources": [{"id": "a", "url": "rtsp://cam/1"},
                                                {"id": "b", "url": "rtsp://cam/2", "detector": False},
                                                {"id": "c", "url": "rtsp://cam/3",
                                                 "detector": {"kind": "onnx", "model": "det.onnx"}}]},
                                   base=tmp_path)
    a, b, c = (source_detector(s, engine) for s in dep.sources)
    assert a.kind == "hog-people" and b is None
    assert c.kind == "onnx" and c.model == model and c.backend.name == "openvino"  # the engine's runtime


def test_a_source_may_track_by_samurai_s_policy(modelset):
    from engine.serve.service import Service
    from engine.tracker import Tracker
    from tests.engine.fakes import FakeStages

    dep, engine = parse_deployment({"engine": ENGINE, "sources": [
        {"id": "a", "url": "rtsp://cam/1"},
        {"id": "b", "url": "rtsp://cam/2", "tracking_policy": "samurai", "samurai": {"kf_score_weight": 0.5}}]})
    service = Service(dep, Tracker(modelset, FakeStages(modelset)), engine=engine)
    a, b = service.sources["a"].session.tracker, service.sources["b"].session.tracker
    assert a.policy.name == "meta" and b.policy.name == "samurai" and b.policy.settings.kf_score_weight == 0.5
    assert b.stages is a.stages  # one loaded stage set
    assert service.sources["b"].status()["tracking_policy"] == "samurai"
    with pytest.raises(ConfigError, match=r"sources\[0\].*samurai.kf_score_weight"):
        _dep(sources=[{"id": "a", "url": "rtsp://cam/1", "tracking_policy": "samurai",
                       "samurai": {"kf_score_weight": 3}}])
    with pytest.raises(ConfigError, match="need tracking_policy: samurai"):
        _dep(sources=[{"id": "a", "url": "rtsp://cam/1", "samurai": {"kf_score_weight": 0.3}}])
