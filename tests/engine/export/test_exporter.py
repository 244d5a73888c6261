import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from engine.errors import ExportError
from engine.export import exporter
from engine.export.__main__ import main as export_main
from engine.modelset import CONSTANTS_2_1, MANIFEST, REQUIRED_CONSTANTS, STAGES, Manifest, ModelSet
from tests.conftest import TEST_SIZE

FEAT, LOW_RES = TEST_SIZE // 16, TEST_SIZE // 4  # the test set's feature grid and low-res mask side

EXPECTED_FILES = {"image_encoder.onnx", "mask_decoder.onnx", "memory_attention.onnx", "memory_encoder.onnx",
                  "constants.npz", "modelset.yaml"}


def test_model_set_files(modelset_dir):
    assert {p.name for p in modelset_dir.iterdir()} == EXPECTED_FILES


def test_manifest_records_provenance_and_model(modelset):
    m = modelset.manifest
    assert m.variant == "sam2.1_hiera_tiny" and m.family == "sam2.1"
    assert m.image_size == TEST_SIZE and m.feat_size == FEAT
    assert m.provenance["weights"]["source"] == "random" and m.provenance["weights"]["seed"] == 0
    versions = m.provenance["versions"]
    assert versions["torch"].startswith("2.13") and versions["opset"] == "18"
    assert "exporter" in versions
    assert m.model["num_maskmem"] == 7 and m.model["max_obj_ptrs_in_encoder"] == 16
    assert m.model["binarize_mask_from_pts_for_mem_enc"] is True and m.model["fill_hole_area"] == 8


def test_manifest_signatures(modelset):
    st = modelset.manifest.stages
    dec_in = {t.name: t for t in st["mask_decoder"].inputs}
    assert dec_in["point_coords"].shape == (1, "num_points", 2)
    assert dec_in["point_labels"].dtype == "int32"
    ma_in = {t.name: t for t in st["memory_attention"].inputs}
    assert ma_in["memory"].shape == ("num_memory_frames", 64, FEAT, FEAT)
    assert ma_in["obj_ptrs"].shape == ("num_obj_ptrs", 256)
    assert [t.name for t in st["mask_decoder"].outputs] == ["masks", "iou", "obj_ptr", "object_score"]
    assert [t.shape for t in st["mask_decoder"].outputs][0] == (1, 4, LOW_RES, LOW_RES)
    assert [t.name for t in st["image_encoder"].outputs] == ["high_res_feat0", "high_res_feat1", "vision_feat"]


def test_manifest_round_trips(modelset_dir):
    raw = yaml.safe_load((modelset_dir / MANIFEST).read_text())
    m = Manifest.from_yaml(raw)
    assert m.to_yaml() == raw
    again = Manifest.from_yaml(yaml.safe_load(yaml.safe_dump(m.to_yaml())))
    assert again == m


def test_constants(modelset, built_tiny):
    c = modelset.constants
    for key in REQUIRED_CONSTANTS + CONSTANTS_2_1:
        assert key in c
    assert c["maskmem_tpos_enc"].shape == (7, 64)
    assert c["vision_pos_enc"].shape == (1, 256, FEAT, FEAT)
    assert c["maskmem_pos_enc"].shape == (1, 64, FEAT, FEAT)
    np.testing.assert_array_equal(c["no_obj_ptr"], built_tiny.model.no_obj_ptr.detach().numpy().reshape(-1))
    assert c["obj_ptr_tpos_proj_weight"].shape == (64, 256)


def test_stage_parity_ort_and_openvino(built_tiny, modelset):
    from engine.export.verify import MEMORY_FRAMES, POINT_COUNTS, POINTER_COUNTS, verify_model_set

    rows = verify_model_set(built_tiny, modelset)
    for r in rows:
        assert r.rel <= 1e-4, r
    for backend in ("onnxruntime CPU f32", "openvino CPU f32"):
        ma = {r.case for r in rows if r.stage == "memory_attention" and r.backend == backend}
        assert ma == {f"{f} frames, {p} pointers" for f in MEMORY_FRAMES for p in POINTER_COUNTS}
        dec = {r.case for r in rows if r.stage == "mask_decoder" and r.backend == backend}
        assert len(dec) == 2 * len(POINT_COUNTS)
        assert {r.stage for r in rows if r.backend == backend} == set(STAGES)


def test_static_parity_covers_every_memory_attention_tier(built_tiny, static_modelset_dir):
    """Each tier's file is checked against the dynamic reference module on every case it has room for."""
    from backends.base import BackendConfig
    from engine.export.verify import MEMORY_FRAMES, POINTER_COUNTS, verify_model_set

    ms = ModelSet.load(static_modelset_dir)
    rows = verify_model_set(built_tiny, ms, backends=[("onnxruntime CPU f32", BackendConfig())])
    for r in rows:
        assert r.rel <= 1e-4, r
    cases = {f"{f} frames, {p} pointers" for f in MEMORY_FRAMES for p in POINTER_COUNTS}  # all within 7 + 16
    for tier in ms.manifest.static.tiers:
        assert {r.case for r in rows if r.stage == tier.stage} == cases, tier


def test_output_dir_not_empty_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty; pass --force"):
        exporter.prepare_output_dir(out, force=False)
    assert (out / "keep.txt").read_text() == "user data"
    exporter.prepare_output_dir(out, force=True)  # allowed


def test_failed_export_leaves_nothing_behind(built_tiny, modelset_dir, tmp_path, monkeypatch):
    calls = []

    def flaky(stage, path):
        """Stages before memory attention are written (as the session's export of the same weights wrote
        them: exporting them again would only cost time), then memory attention fails."""
        calls.append(stage.name)
        if stage.name == "memory_attention":
            raise ExportError("simulated failure")
        shutil.copyfile(modelset_dir / f"{stage.name}.onnx", path)

    monkeypatch.setattr(exporter, "_export_onnx", flaky)
    out = tmp_path / "ms"
    with pytest.raises(ExportError, match="simulated"):
        exporter.export_model_set(built_tiny, out, log=lambda _m: None)
    assert calls[-1] == "memory_attention"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_forced_export_keeps_previous_model_set(built_tiny, modelset_dir, tmp_path, monkeypatch):
    out = tmp_path / "ms"
    shutil.copytree(modelset_dir, out)
    monkeypatch.setattr(exporter, "_export_onnx", lambda stage, path: (_ for _ in ()).throw(ExportError("boom")))
    with pytest.raises(ExportError):
        exporter.export_model_set(built_tiny, out, force=True, log=lambda _m: None)
    ModelSet.load(out, verify_checksums=True)  # the old set is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms"]


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    from engine.cli import run_cli

    code = run_cli(export_main, args)
    return code, capsys.readouterr().err


def test_cli_unknown_variant(capsys, tmp_path):
    code, err = _run_cli(["--variant", "sam2.1_hiera_huge", "--out", str(tmp_path / "x")], capsys)
    assert code == 2
    assert "unknown variant 'sam2.1_hiera_huge'" in err and "sam2.1_hiera_large" in err
    assert "Traceback" not in err


def test_cli_missing_checkpoint(capsys, tmp_path):
    code, err = _run_cli(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x"),
                          "--image-size", "512"], capsys)
    assert code == 2 and "checkpoint file not found" in err
    assert not (tmp_path / "x").exists()


def test_cli_non_empty_out(capsys, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "f").write_text("1")
    code, err = _run_cli(["--out", str(out), "--image-size", "512"], capsys)
    assert code == 2 and "--force" in err


def test_cli_bad_set_value(capsys, tmp_path):
    code, err = _run_cli(["--out", str(tmp_path / "x"), "--set", "a.b", "--image-size", "512"], capsys)
    assert code == 2 and "PARAM=NUMBER" in err


@pytest.mark.parametrize("blocks", ["0", "65"])
def test_cli_attention_blocks_out_of_range(blocks, capsys, tmp_path):
    code, err = _run_cli(["--out", str(tmp_path / "x"), "--attention-blocks", blocks, "--image-size", "512"], capsys)
    assert code == 2 and "--attention-blocks must lie between 1 and 64" in err
    assert not (tmp_path / "x").exists()


def test_default_out_path():
    from engine.export.__main__ import default_out

    assert default_out("sam2.1_hiera_tiny", 1024) == Path("models/sam2.1_hiera_tiny")
    assert default_out("sam2_hiera_large", 512) == Path("models/sam2_hiera_large_512")
