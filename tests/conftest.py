"""Shared fixtures: random-weight hiera-tiny 2.1 models, exported once per test run, and the test clips.

The random weights are calibrated (engine.export.build.Calibration): a mask-logit offset makes prompted
and tracked masks cover a moderate share of the frame (random weights otherwise flood tracked frames),
and a shifted object-score head makes the model call some objects present and others absent, so both
branches of the occlusion handling run. The parity tests assert the coverage band and both branches.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.modelset import ModelSet
from tests.prebuild import BACKGROUND, plan

TEST_VARIANT = "sam2.1_hiera_tiny"
TEST_SIZE = 256  # the exporter's smallest size: a frame costs a quarter of 512's; one parity scenario runs at 1024
TEST_SEED = 0
MASK_LOGIT_OFFSET = -0.05
OBJECT_SCORE_SHIFT = -0.20

# The quick tier (`pytest -m quick`, about a minute): unit tests and one small tracking run per CPU runtime.
# Tests in these modules are marked quick unless they need a fixture that exports or runs more.
QUICK_MODULES = {
    "tests/backends/test_base.py", "tests/backends/test_onnxruntime.py", "tests/backends/test_openvino.py",
    "tests/backends/test_tracking_smoke.py", "tests/engine/test_config.py", "tests/engine/test_rules.py",
    "tests/engine/test_prompts.py", "tests/engine/test_postprocess.py", "tests/engine/test_memory.py",
    "tests/engine/test_video.py", "tests/engine/bench/test_flops.py", "tests/engine/test_prefetch.py",
    "tests/engine/test_modelset.py", "tests/engine/test_preprocess.py", "tests/engine/test_stages.py",
    "tests/engine/live/test_capture.py", "tests/engine/serve/test_schema.py", "tests/engine/live/test_redact.py",
    "tests/engine/serve/test_limits.py", "tests/engine/serve/test_sinks.py", "tests/engine/bench/test_probe.py",
    "tests/engine/detect/test_identity.py", "tests/engine/detect/test_detectors.py",
    "tests/engine/bench/test_detector_timing.py",
}
NOT_QUICK_FIXTURES = {"static_modelset_dir", "modelset_1024", "built_tiny_1024", "clips"}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parents[1]
    for item in items:
        rel = Path(item.fspath).resolve().relative_to(root).as_posix()
        if rel in QUICK_MODULES and not NOT_QUICK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.quick)


DATA = Path(os.environ.get("SAM2_EDGE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def has_data() -> bool:
    return (DATA / "davis-car-shadow" / "frames").is_dir() and (DATA / "videos" / "bedroom.mp4").is_file()


def require_data() -> Path:
    if not has_data():
        pytest.skip(f"test footage not found under {DATA} (set SAM2_EDGE_DATA); .ci/run treats this as a failure")
    return DATA


@pytest.fixture(scope="session", autouse=True)
def _baselines_in_the_run(tmp_path_factory):
    """engine.bench records stage times alone (engine.baselines) for engine.serve: here into the run's own
    folder, not the user's cache."""
    os.environ["SAM2_EDGE_BASELINES"] = str(tmp_path_factory.mktemp("baselines"))


@pytest.fixture
def report(record_property):
    """Lines a test reports (timings, tables, curves): printed together at the end of the run's log, after the
    progress dots instead of among them (`pytest_terminal_summary`)."""
    def write(text: str) -> None:
        record_property("report", text.strip("\n"))
    return write


def pytest_terminal_summary(terminalreporter):
    lines = [(rep.nodeid, value) for rep in terminalreporter.stats.get("passed", [])
             for name, value in getattr(rep, "user_properties", ()) if name == "report"]
    jobs = [j for j in BACKGROUND.jobs.values() if j.done.is_set()]
    if jobs:  # what the background made, and how long each took beside the tests (tests/prebuild.py)
        lines.append(("background jobs", ", ".join(f"{j.name} {j.seconds:.1f} s" + (" (failed)" if j.error else "")
                                                   for j in jobs)))
    if lines:
        terminalreporter.section("reports")
        for nodeid, text in lines:
            terminalreporter.write_line(f"{nodeid}:")
            terminalreporter.write_line(text)


def require_part(present: bool, missing: str) -> None:
    """A real part a test drives (a browser, a broker, an RTSP server): where it is missing, the test skips
    on a developer's machine and fails in CI (.ci/run installs every part and sets SAM2_EDGE_REQUIRE_PARTS)."""
    if present:
        return
    if os.environ.get("SAM2_EDGE_REQUIRE_PARTS") == "1":
        pytest.fail(f"{missing} (SAM2_EDGE_REQUIRE_PARTS=1: CI needs every real part)")
    pytest.skip(missing)


def build_test_model(image_size: int):
    from engine.export.build import Calibration, build_model
    from engine.variants import get_variant

    return build_model(get_variant(TEST_VARIANT), image_size=image_size, seed=TEST_SEED,
                       calibration=Calibration(MASK_LOGIT_OFFSET, OBJECT_SCORE_SHIFT))


# The exported test sets: (image size, static shapes?). Each is exported once per run: in the background from
# the start of the run (tests/prebuild.py), or by its fixture where no background job made it.
TEST_SETS = {"dynamic": (TEST_SIZE, False), "static": (TEST_SIZE, True), "1024": (1024, False)}


def export_test_set(name: str, out: Path, built=None) -> Path:
    """Export test set `name` of the seeded model (built here unless given) to `out`. The static set has 2
    prompted-frame slots and 8 point slots, with memory attention for 1 and for 2 prompted frames."""
    from engine.export.exporter import export_model_set
    from engine.static import StaticShapes

    size, static = TEST_SETS[name]
    built = built if built is not None else build_test_model(size)
    m = built.model
    shapes = StaticShapes.for_model(m.num_maskmem, m.max_obj_ptrs_in_encoder, cond_frames=2, points=8) if static else None
    export_model_set(built, out, log=lambda _msg: None, static=shapes)
    return out


def _test_set(name: str, built, tmp_path_factory) -> Path:
    size, static = TEST_SETS[name]
    folder = f"{TEST_VARIANT}_{size}" + ("_static" if static else "")
    return BACKGROUND.wait(name) or export_test_set(name, tmp_path_factory.mktemp("modelsets") / folder, built)


@pytest.fixture(scope="session")
def built_tiny():
    return build_test_model(TEST_SIZE)


@pytest.fixture(scope="session")
def modelset_dir(built_tiny, tmp_path_factory) -> Path:
    return _test_set("dynamic", built_tiny, tmp_path_factory)


@pytest.fixture(scope="session")
def modelset(modelset_dir) -> ModelSet:
    return ModelSet.load(modelset_dir, verify_checksums=True)


@pytest.fixture(scope="session")
def static_modelset_dir(built_tiny, tmp_path_factory) -> Path:
    """The same weights as `modelset_dir`, exported with fixed shapes (TEST_SETS["static"])."""
    return _test_set("static", built_tiny, tmp_path_factory)


@pytest.fixture(scope="session")
def built_tiny_1024():
    return build_test_model(1024)


@pytest.fixture(scope="session")
def modelset_1024(built_tiny_1024, tmp_path_factory) -> ModelSet:
    return ModelSet.load(_test_set("1024", built_tiny_1024, tmp_path_factory))


def write_clips(root: Path) -> dict[str, Path]:
    """JPEG folders both the engine and Meta's loader read, written from the shared footage: DAVIS as it is
    (854 x 480), DAVIS below the test model size (240 x 180: upscaled) and above it (1280 x 720), and the
    frames of bedroom.mp4 as OpenCV decodes them (960 x 540)."""
    import cv2
    from PIL import Image

    davis = DATA / "davis-car-shadow" / "frames"
    out = {"davis": davis}
    for name, size in (("davis-small", (240, 180)), ("davis-large", (1280, 720))):
        folder = root / name
        folder.mkdir()
        for src in sorted(davis.glob("*.jpg"))[:24]:
            with Image.open(src) as im:
                im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(folder / src.name, quality=95)
        out[name] = folder
    folder = root / "bedroom"
    folder.mkdir()
    cap = cv2.VideoCapture(str(DATA / "videos" / "bedroom.mp4"))
    for i in range(24):
        ok, frame = cap.read()
        assert ok, f"bedroom.mp4: cannot decode frame {i}"
        Image.fromarray(frame[:, :, ::-1]).save(folder / f"{i:05d}.jpg", quality=95)
    cap.release()
    out["bedroom"] = folder
    return out


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The test clips (write_clips), once per run: written before the run when a background job reads them."""
    require_data()
    return BACKGROUND.clips or write_clips(tmp_path_factory.mktemp("clips"))


def _job_command(name: str, tmp_path_factory) -> tuple[list[str], Path] | None:
    """A background job's argv and output folder (tests/prebuild.py), or None where its tests will skip (no
    footage, or no EdgeTAM reference)."""
    import sys

    from engine.export.reference_env import edgetam_dir
    from tests.engine.edgetam_child import write_spec

    if name in TEST_SETS:
        out = tmp_path_factory.mktemp("modelsets") / f"prebuilt_{name}"
        return [sys.executable, "-m", "tests.prebuild", name, str(out)], out
    if not has_data():
        return None
    BACKGROUND.clips = BACKGROUND.clips or write_clips(tmp_path_factory.mktemp("clips"))
    out = tmp_path_factory.mktemp(name)
    if name == "edgetam":
        if not (edgetam_dir() / "sam2" / "configs" / "edgetam.yaml").is_file():
            return None
        return [sys.executable, "-m", "tests.engine.edgetam_child", str(write_spec(out, BACKGROUND.clips))], out
    # the parity suite's reference runs at one size
    spec = write_spec(out, BACKGROUND.clips, size=1024 if name.endswith("1024") else TEST_SIZE)
    return [sys.executable, "-m", "tests.prebuild", "reference", str(spec)], out


def pytest_collection_finish(session):
    plan(session.config, session.items, _job_command)


def pytest_sessionfinish(session):
    BACKGROUND.stop()
