import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.bench.flops import count_flops
from tests.conftest import TEST_SIZE

FEAT = TEST_SIZE // 16  # the test model set's feature grid


def test_flops_match_a_hand_count(tmp_path):
    """x [1,3,8,8] -> Conv 3->4 k3 pad1 -> [1,4,8,8] -> reshape [1,4,64] -> MatMul [64,10] -> Gemm on [4,10]."""
    w_conv = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w_conv")
    w_mm = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w_mm")
    w_gemm = numpy_helper.from_array(np.zeros((5, 10), np.float32), "w_gemm")
    shape = numpy_helper.from_array(np.array([1, 4, 64], np.int64), "shape")
    shape2 = numpy_helper.from_array(np.array([4, 10], np.int64), "shape2")
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w_mm"], ["m"]),
        helper.make_node("Reshape", ["m", "shape2"], ["m2"]),
        helper.make_node("Gemm", ["m2", "w_gemm"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [w_conv, w_mm, w_gemm, shape, shape2])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # every output element: Cin*kh*kw multiply-adds
    matmul = 2 * (4 * 10) * 64
    gemm = 2 * (4 * 5) * 10
    assert count_flops(path, {"x": (1, 3, 8, 8)}) == conv + matmul + gemm


def test_memory_attention_flops_grow_with_memory(modelset):
    path = modelset.stage_path("memory_attention")

    def shapes(frames, ptrs):
        return {"curr": (1, 256, FEAT, FEAT), "memory": (frames, 64, FEAT, FEAT), "memory_pos": (frames, 64, FEAT, FEAT),
                "obj_ptrs": (ptrs, 256), "obj_ptr_pos": (ptrs, 64)}

    one, seven = count_flops(path, shapes(1, 1)), count_flops(path, shapes(7, 16))
    # per layer, cross-attention scores and weighted sum: 2 * FEAT² queries * keys * (256 + 64)
    tokens = FEAT * FEAT
    keys_delta = 6 * tokens + 15 * 4
    extra_attn = 4 * 2 * tokens * keys_delta * (256 + 64)
    extra_kproj = 4 * 2 * keys_delta * 64 * 256
    assert seven - one == extra_attn + extra_kproj
