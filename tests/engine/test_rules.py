"""Model rules: typed from the manifest, frozen, and refusing flags the engine does not implement."""

import dataclasses
import os

import pytest
import yaml

from engine.errors import ModelSetError
from engine.modelset import MANIFEST, Manifest, ModelSet
from engine.rules import ModelRules
from tests.conftest import TEST_SIZE


def _raw(modelset_dir) -> dict:
    return yaml.safe_load((modelset_dir / MANIFEST).read_text())


def test_rules_are_typed_and_frozen(modelset):
    rules = modelset.manifest.rules
    assert isinstance(rules, ModelRules)
    assert rules.num_maskmem == 7 and rules.feat_size == TEST_SIZE // 16 and rules.sigmoid_scale_for_mem_enc == 20.0
    assert isinstance(rules.directly_add_no_mem_embed, bool) and isinstance(rules.fill_hole_area, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.num_maskmem = 3


@pytest.mark.parametrize("flag,value,message", [
    ("directly_add_no_mem_embed", False, "model.directly_add_no_mem_embed = False is not supported"),
    ("use_mask_input_as_output_without_sam", False, "model.use_mask_input_as_output_without_sam = False"),
    ("num_maskmem", 0, "model.num_maskmem = 0 is not supported"),
    ("max_cond_frames_in_attn", 1, "model.max_cond_frames_in_attn = 1"),
    ("non_overlap_masks_for_mem_enc", True, "model.non_overlap_masks_for_mem_enc = True"),
    ("clear_non_cond_mem_around_input", True, "model.clear_non_cond_mem_around_input = True"),
    ("pred_obj_scores", "yes", "model.pred_obj_scores is 'yes'; expected a bool"),
    ("num_maskmem", 7.5, "model.num_maskmem is 7.5; expected a int"),
])
def test_unsupported_flags_are_refused_at_load(modelset_dir, tmp_path, flag, value, message):
    out = tmp_path / "ms"
    out.mkdir()
    for f in modelset_dir.iterdir():  # links: the stage files stay where they are
        os.symlink(f, out / f.name)
    raw = _raw(modelset_dir)
    raw["model"][flag] = value
    (out / MANIFEST).unlink()
    (out / MANIFEST).write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelSetError, match=message.replace("(", r"\(")):
        ModelSet.load(out)


def test_older_manifests_without_the_optional_flags_load(modelset_dir):
    raw = _raw(modelset_dir)
    for key in ("non_overlap_masks_for_mem_enc", "clear_non_cond_mem_around_input"):
        raw["model"].pop(key, None)
    rules = Manifest.from_yaml(raw).rules
    assert rules.non_overlap_masks_for_mem_enc is False and rules.clear_non_cond_mem_around_input is False
