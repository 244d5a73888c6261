"""FLOP counts of a stage model for given input shapes, from its ONNX graph.

Counts 2 x multiply-accumulates of MatMul, Gemm, Conv and ConvTranspose (what dominates these models);
element-wise ops, softmax and normalisation are left out. Shapes come from ONNX shape inference with
the dynamic axes fixed to the shapes used. Needs the `onnx` package (part of the export extra).
"""

from __future__ import annotations

from functools import lru_cache
from math import prod
from pathlib import Path

COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            if a.ints:
                return list(a.ints)
            return a.i
    return default


def count_flops(model_path: str | Path, input_shapes: dict[str, tuple[int, ...]]) -> float:
    """FLOPs of one run of the model with these input shapes."""
    return _count(str(model_path), tuple(sorted((k, tuple(v)) for k, v in input_shapes.items())))


@lru_cache(maxsize=64)
def _count(model_path: str, shapes: tuple) -> float:
    import onnx
    from onnx import shape_inference

    model = onnx.load(model_path)
    wanted = dict(shapes)
    for inp in model.graph.input:
        if inp.name in wanted:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, wanted[inp.name], strict=True):
                d.Clear()
                d.dim_value = int(v)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    known: dict[str, list[int]] = {i.name: list(i.dims) for i in g.initializer}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            known[v.name] = [d.dim_value for d in dims]

    def shape(name: str) -> list[int]:
        if name not in known:
            raise ValueError(f"shape of {name} could not be inferred")
        return known[name]

    total = 0.0
    for node in g.node:
        if node.op_type not in COUNTED_OPS:
            continue
        out = shape(node.output[0])
        if node.op_type == "MatMul":
            a = shape(node.input[0])
            k = a[-1]
            total += 2.0 * prod(out) * k
        elif node.op_type == "Gemm":
            a = shape(node.input[0])
            k = a[0] if _attr(node, "transA", 0) else a[1]
            total += 2.0 * prod(out) * k
        elif node.op_type == "Conv":
            w = shape(node.input[1])  # [Cout, Cin/groups, kh, kw]
            total += 2.0 * prod(out) * prod(w[1:])
        else:  # ConvTranspose: every input element scatters Cout/groups x kernel products
            x = shape(node.input[0])
            w = shape(node.input[1])  # [Cin, Cout/groups, kh, kw]
            total += 2.0 * prod(x) * prod(w[1:])
    return total
