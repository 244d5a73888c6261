"""One stage to float16 (python -m engine.quantize --precision fp16): for GPUs that run fp16 natively.

ONNX Runtime's CUDA and TensorRT providers run a graph in the types it was saved with, so fp16 on them needs
an fp16 graph. Every float32 weight, constant and activation becomes float16; the graph's inputs and
outputs stay float32 (a Cast at each end), so the numpy core and the memory bank are the same for every set.
Inputs whose type the ONNX operator fixes at float32 (Resize's roi and scales) are kept float32.

ONNX Runtime's CPU provider runs these graphs too (its fp16 kernels round each op's result to fp16, as
the GPU kernels do), which is how `engine.fidelity` judges an fp16 set on a machine without a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import ModelSetError

# (op type, input index) that the ONNX operator set requires in float32 whatever the data's type
_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2)}
_F32 = 1  # onnx.TensorProto.FLOAT
_F16 = 10  # onnx.TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)


def convert_stage(source: Path, out: Path) -> dict[str, int]:
    """Write `source` as a float16 graph with float32 inputs and outputs; returns what was converted."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ModelSetError(f"{source}: a graph with subgraphs (If/Loop/Scan) is not converted to fp16")
    keep32 = {n.input[i] for n in graph.node for (op, i) in _FLOAT32_INPUTS if n.op_type == op and len(n.input) > i}
    counts = {"weights": 0, "clipped": 0, "constants": 0, "casts": 0}

    for init in graph.initializer:
        if init.data_type == _F32 and init.name not in keep32:
            values = numpy_helper.to_array(init)
            counts["clipped"] += int(np.count_nonzero(np.abs(values) > _FP16_MAX))
            init.CopyFrom(numpy_helper.from_array(np.clip(values, -_FP16_MAX, _FP16_MAX).astype(np.float16), init.name))
            counts["weights"] += 1
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == _F32:
                attr.i = _F16
                counts["casts"] += 1
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == _F32:
                if node.op_type == "Constant" and node.output[0] in keep32:
                    continue
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
                counts["constants"] += 1

    head, tail = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type == _F32:
            inner = f"{value.name}__fp16"
            _rename_uses(graph, value.name, inner)
            head.append(helper.make_node("Cast", [value.name], [inner], to=_F16, name=f"{inner}_cast"))
    for value in graph.output:
        if value.type.tensor_type.elem_type == _F32:
            inner = f"{value.name}__fp16"
            _rename_uses(graph, value.name, inner)
            for node in graph.node:
                node.output[:] = [inner if o == value.name else o for o in node.output]
            tail.append(helper.make_node("Cast", [inner], [value.name], to=_F32, name=f"{value.name}_cast"))
    # float32-only inputs computed in the graph (not constants): cast back where they are used
    for node in list(graph.node):
        for (op, i) in _FLOAT32_INPUTS:
            if node.op_type == op and len(node.input) > i and node.input[i] and not _is_float32_source(graph, node.input[i]):
                name = f"{node.input[i]}__f32_{node.name or id(node)}"
                head.append(helper.make_node("Cast", [node.input[i]], [name], to=_F32))
                node.input[i] = name
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(_topological(nodes, {v.name for v in graph.input} | {i.name for i in graph.initializer}))
    del graph.value_info[:]  # the old float32 annotations; runtimes infer the new types
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return counts


def _rename_uses(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _is_float32_source(graph, name: str) -> bool:
    """True for a graph input or initializer left float32 (needs no cast back)."""
    return any(v.name == name and v.type.tensor_type.elem_type == _F32 for v in graph.input) or any(
        i.name == name and i.data_type == _F32 for i in graph.initializer)


def _topological(nodes: list, available: set[str]) -> list:
    """The nodes in an order where each input exists before use (the inserted casts moved into place)."""
    ready = set(available) | {""}
    ordered, pending = [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ModelSetError(f"fp16 conversion left {len(rest)} nodes whose inputs are never produced "
                                f"(first: {rest[0].op_type} {rest[0].name})")
        pending = rest
    return ordered
