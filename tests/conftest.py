"""Shared fixtures: one random-weight hiera-tiny 2.1 model at 512x512, exported once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.modelset import ModelSet

TEST_VARIANT = "sam2.1_hiera_tiny"
TEST_SIZE = 512
TEST_SEED = 0


@pytest.fixture(scope="session")
def built_tiny():
    from engine.export.build import build_model
    from engine.variants import get_variant

    return build_model(get_variant(TEST_VARIANT), image_size=TEST_SIZE, seed=TEST_SEED)


@pytest.fixture(scope="session")
def modelset_dir(built_tiny, tmp_path_factory) -> Path:
    from engine.export.exporter import export_model_set

    out = tmp_path_factory.mktemp("modelsets") / f"{TEST_VARIANT}_{TEST_SIZE}"
    export_model_set(built_tiny, out, log=lambda _msg: None)
    return out


@pytest.fixture(scope="session")
def modelset(modelset_dir) -> ModelSet:
    return ModelSet.load(modelset_dir, verify_checksums=True)
