import sys

import pytest
import torch

from engine.errors import ExportError
from engine.export.build import build_model, require_export_deps
from engine.variants import VARIANTS, get_variant


def test_every_parameter_differs_between_repeated_layers(built_tiny):
    layers = built_tiny.model.memory_attention.layers
    for name, p in layers[0].named_parameters():
        for other in layers[1:]:
            q = dict(other.named_parameters())[name]
            assert not torch.equal(p, q), f"memory-attention layers share {name}"
    fuser = built_tiny.model.memory_encoder.fuser.layers
    w0 = dict(fuser[0].named_parameters())
    for name, q in fuser[1].named_parameters():
        assert not torch.equal(w0[name], q), f"fuser blocks share {name}"


def test_norm_weights_and_biases_are_perturbed(built_tiny):
    norm = built_tiny.model.memory_attention.norm
    assert not torch.allclose(norm.weight, torch.ones_like(norm.weight))
    assert not torch.allclose(norm.bias, torch.zeros_like(norm.bias))


def test_seed_is_deterministic_and_matters():
    v = get_variant("sam2.1_hiera_tiny")
    a = build_model(v, 512, seed=3).model.state_dict()
    b = build_model(v, 512, seed=3).model.state_dict()
    c = build_model(v, 512, seed=4).model.state_dict()
    key = "memory_attention.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ExportError) as err:
        get_variant("sam3_hiera_tiny")
    for name in VARIANTS:
        assert name in str(err.value)


def test_eight_sam2_variants_and_edgetam():
    assert sorted(VARIANTS) == sorted(
        [f"{fam}_hiera_{size}" for fam in ("sam2", "sam2.1") for size in ("tiny", "small", "base_plus", "large")]
        + ["edgetam"]
    )
    assert {v.reference for v in VARIANTS.values()} == {"sam2", "edgetam"}
    assert VARIANTS["edgetam"].family == "edgetam" and VARIANTS["edgetam"].reference == "edgetam"


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(ExportError, match="checkpoint file not found"):
        build_model(get_variant("sam2.1_hiera_tiny"), 512, checkpoint=tmp_path / "nope.pt")


def test_checkpoint_round_trip_records_sha256(built_tiny, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": built_tiny.model.state_dict()}, path)
    loaded = build_model(get_variant("sam2.1_hiera_tiny"), 512, checkpoint=path)
    assert loaded.weights["source"] == "checkpoint"
    assert len(loaded.weights["sha256"]) == 64
    for (k, a), (_, b) in zip(built_tiny.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_checkpoint_of_another_variant_names_keys(tmp_path):
    other = build_model(get_variant("sam2_hiera_tiny"), 512, seed=0)
    path = tmp_path / "sam2_tiny.pt"
    torch.save({"model": other.model.state_dict()}, path)
    with pytest.raises(ExportError) as err:
        build_model(get_variant("sam2.1_hiera_tiny"), 512, checkpoint=path)
    msg = str(err.value)
    assert "does not match variant sam2.1_hiera_tiny" in msg
    assert "missing keys" in msg and "obj_ptr_tpos_proj" in msg


def test_checkpoint_without_model_key(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"weights": {}}, path)
    with pytest.raises(ExportError, match="under the key 'model'"):
        build_model(get_variant("sam2.1_hiera_tiny"), 512, checkpoint=path)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ExportError, match="cannot read checkpoint"):
        build_model(get_variant("sam2.1_hiera_tiny"), 512, checkpoint=path)


@pytest.mark.parametrize("module,extra", [("torch", "export"), ("sam2", "--no-deps sam2"), ("onnx", "export")])
def test_missing_export_dependency_names_the_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ExportError) as err:
        require_export_deps()
    assert module in str(err.value) and extra in str(err.value)


def test_param_override_sets_value():
    built = build_model(get_variant("sam2.1_hiera_tiny"), 512, seed=0,
                        param_overrides={"sam_mask_decoder.pred_obj_score_head.layers.2.bias": 7.0})
    bias = built.model.sam_mask_decoder.pred_obj_score_head.layers[2].bias
    assert torch.all(bias == 7.0)
    assert built.weights["overrides"] == {"sam_mask_decoder.pred_obj_score_head.layers.2.bias": 7.0}
    with pytest.raises(ExportError, match="names no parameter"):
        build_model(get_variant("sam2.1_hiera_tiny"), 512, param_overrides={"nope": 1.0})


def test_unsupported_image_size():
    with pytest.raises(ExportError, match="image size 640"):
        build_model(get_variant("sam2.1_hiera_tiny"), 640)
