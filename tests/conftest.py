"""Shared fixtures: random-weight hiera-tiny 2.1 models, exported once per test run.

The object-score head's bias is shifted so that, on the test footage, the random model calls some
prompted objects present and others absent: both branches of the tracker's occlusion handling run
(the parity tests assert that both occurred).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.modelset import ModelSet

TEST_VARIANT = "sam2.1_hiera_tiny"
TEST_SIZE = 512
TEST_SEED = 0
SCORE_BIAS_PARAM = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
SCORE_BIAS_SHIFT = -0.20

DATA = Path(os.environ.get("SAM2_EDGE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def require_data() -> Path:
    if not (DATA / "davis-car-shadow" / "frames").is_dir() or not (DATA / "videos" / "bedroom.mp4").is_file():
        pytest.skip(f"test footage not found under {DATA} (set SAM2_EDGE_DATA); .ci/run treats this as a failure")
    return DATA


def build_test_model(image_size: int):
    import torch

    from engine.export.build import build_model
    from engine.variants import get_variant

    built = build_model(get_variant(TEST_VARIANT), image_size=image_size, seed=TEST_SEED)
    params = dict(built.model.named_parameters())
    with torch.no_grad():
        params[SCORE_BIAS_PARAM].add_(SCORE_BIAS_SHIFT)
    built.weights["overrides"] = {SCORE_BIAS_PARAM: f"shifted by {SCORE_BIAS_SHIFT}"}
    return built


def export_once(built, tmp_path_factory, name: str) -> Path:
    from engine.export.exporter import export_model_set

    out = tmp_path_factory.mktemp("modelsets") / name
    export_model_set(built, out, log=lambda _msg: None)
    return out


@pytest.fixture(scope="session")
def built_tiny():
    return build_test_model(TEST_SIZE)


@pytest.fixture(scope="session")
def modelset_dir(built_tiny, tmp_path_factory) -> Path:
    return export_once(built_tiny, tmp_path_factory, f"{TEST_VARIANT}_{TEST_SIZE}")


@pytest.fixture(scope="session")
def modelset(modelset_dir) -> ModelSet:
    return ModelSet.load(modelset_dir, verify_checksums=True)


@pytest.fixture(scope="session")
def built_tiny_1024():
    return build_test_model(1024)


@pytest.fixture(scope="session")
def modelset_1024(built_tiny_1024, tmp_path_factory) -> ModelSet:
    return ModelSet.load(export_once(built_tiny_1024, tmp_path_factory, f"{TEST_VARIANT}_1024"))
