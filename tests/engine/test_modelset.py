import shutil

import numpy as np
import pytest
import yaml

from engine.errors import ModelSetError
from engine.modelset import MANIFEST, ModelSet


@pytest.fixture
def copy_set(modelset_dir, tmp_path):
    out = tmp_path / "ms"
    shutil.copytree(modelset_dir, out)
    return out


def test_load_valid(modelset_dir):
    ms = ModelSet.load(modelset_dir, verify_checksums=True, expect_variant="sam2.1_hiera_tiny")
    assert ms.is_2_1 and ms.stage_path("memory_attention").name == "memory_attention.onnx"


def test_missing_directory(tmp_path):
    with pytest.raises(ModelSetError, match="not found"):
        ModelSet.load(tmp_path / "none")


@pytest.mark.parametrize("name,flags", [("sam2.1_hiera_tiny", "--variant sam2.1_hiera_tiny --out"),
                                        ("edgetam_512", "--variant edgetam --image-size 512 --out"),
                                        ("sam2_hiera_small_256_static", "--variant sam2_hiera_small --static "
                                                                        "--image-size 256 --out")])
def test_a_missing_set_names_the_export_that_builds_it(name, flags, tmp_path):
    """Folders named as `engine.export` names its output (<variant>[_<size>][_static]) give its command back."""
    with pytest.raises(ModelSetError) as exc:
        ModelSet.load(tmp_path / name)
    assert f"python -m engine.export {flags} {tmp_path / name} --checkpoint official" in str(exc.value)


def test_missing_manifest_suggests_export(tmp_path):
    with pytest.raises(ModelSetError, match="python -m engine.export"):
        ModelSet.load(tmp_path)


def test_missing_stage_file(copy_set):
    (copy_set / "memory_encoder.onnx").unlink()
    with pytest.raises(ModelSetError, match="memory_encoder.onnx of memory_encoder is missing"):
        ModelSet.load(copy_set)


def test_truncated_stage_file_fails_checksum(copy_set):
    path = copy_set / "mask_decoder.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    ModelSet.load(copy_set)  # structure is fine ...
    with pytest.raises(ModelSetError, match="checksum differs"):
        ModelSet.load(copy_set, verify_checksums=True)


def test_other_variant_than_expected(copy_set):
    with pytest.raises(ModelSetError, match="holds variant sam2.1_hiera_tiny, but sam2_hiera_large"):
        ModelSet.load(copy_set, expect_variant="sam2_hiera_large")


def test_future_format_version(copy_set):
    raw = yaml.safe_load((copy_set / MANIFEST).read_text())
    raw["format_version"] = 99
    (copy_set / MANIFEST).write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelSetError, match="format_version 99"):
        ModelSet.load(copy_set)


def test_manifest_missing_model_key(copy_set):
    raw = yaml.safe_load((copy_set / MANIFEST).read_text())
    del raw["model"]["num_maskmem"]
    (copy_set / MANIFEST).write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelSetError, match="lacks num_maskmem"):
        ModelSet.load(copy_set)


def test_manifest_not_yaml(copy_set):
    (copy_set / MANIFEST).write_text("a: [unclosed")
    with pytest.raises(ModelSetError, match="not valid YAML"):
        ModelSet.load(copy_set)


def test_constants_missing_key(copy_set):
    with np.load(copy_set / "constants.npz") as npz:
        data = {k: npz[k] for k in npz.files if k != "no_obj_ptr"}
    np.savez(copy_set / "constants.npz", **data)
    with pytest.raises(ModelSetError, match="lacks no_obj_ptr"):
        ModelSet.load(copy_set)


def test_constants_corrupt(copy_set):
    (copy_set / "constants.npz").write_bytes(b"garbage")
    with pytest.raises(ModelSetError, match="cannot read constants"):
        ModelSet.load(copy_set)
