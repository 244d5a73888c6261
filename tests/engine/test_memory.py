import numpy as np
import torch

from engine.memory import FrameOutput, MemoryPlanner, ObjectMemory, sine_pe_1d
from engine.memory_store import HostMemoryStore, MemorySpec, from_bf16, to_bf16
from tests.conftest import TEST_SIZE

FEAT = TEST_SIZE // 16  # the test model set's feature grid


def _out(frame: int) -> FrameOutput:
    return FrameOutput(pred_masks=np.zeros((4, 4), np.float32), obj_ptr=np.full(256, frame, np.float32),
                       object_score=1.0, maskmem=np.full((64, FEAT, FEAT), frame, np.float32))


def _planner(modelset, memory_frames=7, max_ptrs=16):
    return MemoryPlanner(modelset.manifest.rules, modelset.constants, memory_frames, max_ptrs)


def test_worked_example_frame_10(modelset):
    """Prompt on frame 0, tracked 1..9: frame 10 sees memories {0, 4..9} and pointers {0, 9..1}."""
    bank = ObjectMemory(cond={0: _out(0)}, non_cond={t: _out(t) for t in range(1, 10)})
    plan = _planner(modelset).plan(bank, 10, num_frames=40, reverse=False)
    assert plan.memory_frames == [0, 4, 5, 6, 7, 8, 9]
    assert plan.pointer_frames == [0, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert plan.slots == [6, 5, 4, 3, 2, 1, 0]  # conditioning frame, then f - 6 .. f - 1
    ms = modelset
    spec = MemorySpec.for_model(ms.manifest.rules, ms.constants, "float32")
    fed = HostMemoryStore(spec).gather(plan.memories, plan.slots)
    tpos = modelset.constants["maskmem_tpos_enc"]
    pos = modelset.constants["maskmem_pos_enc"][0]
    np.testing.assert_allclose(fed["memory_pos"][0], pos + tpos[6][:, None, None])  # conditioning frame
    np.testing.assert_allclose(fed["memory_pos"][-1], pos + tpos[0][:, None, None])  # previous frame
    np.testing.assert_allclose(fed["memory_pos"][1], pos + tpos[5][:, None, None])  # f - 6
    assert [float(m[0, 0, 0]) for m in fed["memory"]] == [0, 4, 5, 6, 7, 8, 9]  # each frame's own features
    assert plan.obj_ptrs.shape == (10, 256) and plan.obj_ptr_pos.shape == (10, 64)


def test_pointer_positions_match_reference_formula(modelset, built_tiny):
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    bank = ObjectMemory(cond={0: _out(0)}, non_cond={t: _out(t) for t in range(1, 20)})
    plan = _planner(modelset).plan(bank, 20, num_frames=40, reverse=False)
    dist = torch.tensor([20] + list(range(1, 16)), dtype=torch.float32)
    with torch.no_grad():
        want = built_tiny.model.obj_ptr_tpos_proj(get_1d_sine_pe(dist / 15, dim=256)).numpy()
    np.testing.assert_allclose(plan.obj_ptr_pos, want, rtol=1e-5, atol=1e-6)
    assert plan.memory_frames == [0, 14, 15, 16, 17, 18, 19]


def test_reverse_and_future_conditioning_frames(modelset):
    bank = ObjectMemory(cond={30: _out(30), 5: _out(5)}, non_cond={t: _out(t) for t in range(21, 30)})
    plan = _planner(modelset).plan(bank, 20, num_frames=40, reverse=True)
    assert plan.memory_frames == [30, 5, 26, 25, 24, 23, 22, 21]
    # only conditioning frames "in the past" of a reverse pass (t >= 20) give pointers
    assert plan.pointer_frames[0] == 30 and 5 not in plan.pointer_frames


def test_short_video_limits_pointers(modelset):
    bank = ObjectMemory(cond={0: _out(0)}, non_cond={t: _out(t) for t in range(1, 6)})
    plan = _planner(modelset).plan(bank, 6, num_frames=7, reverse=False)
    assert plan.pointer_frames == [0, 5, 4, 3, 2, 1]


def test_fewer_memory_frames_and_pointers_by_setting(modelset):
    bank = ObjectMemory(cond={0: _out(0)}, non_cond={t: _out(t) for t in range(1, 30)})
    plan = _planner(modelset, memory_frames=3, max_ptrs=4).plan(bank, 30, num_frames=100, reverse=False)
    assert plan.memory_frames == [0, 28, 29]
    assert plan.pointer_frames == [0, 29, 28, 27]


def test_eviction_keeps_conditioning_frames(modelset):
    bank = ObjectMemory(cond={0: _out(0)}, non_cond={t: _out(t) for t in range(1, 100)})
    window = _planner(modelset).window
    bank.evict(99, window)
    assert 0 in bank.cond and min(bank.non_cond) == 99 - window


def test_bf16_rounding_matches_torch():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 100
    x[:3] = [0.0, -0.0, 3.0e38]
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(from_bf16(to_bf16(x)), want)


def test_sine_pe_matches_reference():
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    pos = np.array([0.0, 0.25, 1.0, -0.5], np.float32)
    np.testing.assert_allclose(sine_pe_1d(pos, 256), get_1d_sine_pe(torch.from_numpy(pos), 256).numpy(), atol=1e-6)
