"""Values kept on an ONNX Runtime device (`keep_on_device`), and the memory bank kept beside them.

ONNX Runtime's IO binding lets a stage read inputs from, and leave outputs in, device memory
(OrtValues). What it has no Python API for is work on those values between stages: copying one into a
fixed buffer, stacking memories, rounding to bfloat16. Each of these is a small ONNX graph run on the
same device (Identity, Concat and Gather, Add and Cast), so nothing crosses to the host. On the CPU
provider the same code runs on host OrtValues, which is how the tests check it against the numpy path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.base import DeviceTensor
from engine.memory_store import check_capacity

# onnx TensorProto element types and sizes of the value types stages exchange
_ELEM = {"float32": 1, "int32": 6, "int64": 7, "float16": 10, "bfloat16": 16}
_SIZE = {"float32": 4, "int32": 4, "int64": 8, "float16": 2, "bfloat16": 2}
_ORT_TYPE = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(int64)": "int64",
             "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16"}
_OPSET = 18


class DeviceOps:
    """Allocation, copies and small graphs on one ONNX Runtime device ('cpu' or 'cuda' with an id)."""

    def __init__(self, ort: Any, device: str, device_id: int = 0) -> None:
        self.ort = ort
        self.device = device
        self.device_id = device_id
        if device == "cuda":
            self._providers: list[Any] = [("CUDAExecutionProvider", {"device_id": str(device_id)}),
                                          "CPUExecutionProvider"]
        else:
            self._providers = ["CPUExecutionProvider"]
        self._sessions: dict[Any, Any] = {}

    # ------------------------------------------------------------------ values
    def wrap(self, value: Any) -> DeviceTensor:
        dtype = _ORT_TYPE.get(value.data_type(), value.data_type())
        shape = tuple(int(d) for d in value.shape())
        return DeviceTensor(value, shape, dtype, int(np.prod(shape, dtype=np.int64)) * _SIZE.get(dtype, 4))

    def upload(self, array: np.ndarray) -> DeviceTensor:
        return self.wrap(self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device,
                                                               self.device_id))

    def to_host(self, tensor: DeviceTensor) -> np.ndarray:
        if tensor.dtype == "bfloat16":  # numpy has no bfloat16: widen on the device first
            tensor = self.run_graph(("widen", tensor.shape), lambda: _cast_graph(tensor.shape, "bfloat16", "float32"),
                                    {"x": tensor}, keep=("y",))["y"]
        return np.array(tensor.value.numpy(), copy=True)  # a host OrtValue's numpy() is a view of its buffer

    def copy(self, src: DeviceTensor, into: Any = None) -> DeviceTensor:
        """A device-to-device copy: into a given OrtValue (a fixed buffer), or a new one."""
        out = self.run_graph(("copy", src.dtype, len(src.shape)), lambda: _identity_graph(src.dtype, len(src.shape)),
                             {"x": src}, keep=("y",), bind={"y": into} if into is not None else None)
        return out["y"]

    # ------------------------------------------------------------------ small graphs
    def run_graph(self, key: Any, build: Callable[[], bytes], inputs: dict[str, Any], keep: Sequence[str],
                  bind: dict[str, Any] | None = None, cache: dict[Any, Any] | None = None) -> dict[str, Any]:
        """Run the small graph `key` (built once by `build`) on this device: DeviceTensor or numpy inputs;
        outputs named in `keep` stay on the device, others come back as numpy; `bind` gives outputs fixed
        OrtValues to write into. Graphs that bake in a caller's constants live in the caller's `cache`."""
        sessions = self._sessions if cache is None else cache
        session = sessions.get(key)
        if session is None:
            so = self.ort.SessionOptions()
            so.log_severity_level = 3
            session = sessions[key] = self.ort.InferenceSession(build(), sess_options=so, providers=self._providers)
        return self.run_bound(session, inputs, keep, bind)

    def run_bound(self, session: Any, inputs: dict[str, Any], keep: Sequence[str],
                  bind: dict[str, Any] | None = None) -> dict[str, Any]:
        """One run through a fresh IO binding (a binding reused across runs would hand out the same
        output buffers again, overwriting values the tracker still holds)."""
        binding = session.io_binding()
        for port in session.get_inputs():
            value = inputs[port.name]
            if isinstance(value, DeviceTensor):
                binding.bind_ortvalue_input(port.name, value.value)
            else:
                binding.bind_cpu_input(port.name, np.ascontiguousarray(value))
        names = [o.name for o in session.get_outputs()]
        for name in names:
            if bind and name in bind:
                binding.bind_ortvalue_output(name, bind[name])
            elif name in keep:
                binding.bind_output(name, self.device, self.device_id)
            else:
                binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        out = {}
        for name, value in zip(names, binding.get_outputs(), strict=True):
            out[name] = self.wrap(value) if name in keep else np.array(value.numpy(), copy=True)
        return out


class DeviceMemoryStore:
    """engine.memory_store's operations on the device: each stored memory is one DeviceTensor [1, C, a, b]
    (bfloat16 when the spec rounds, as the host store keeps bit patterns), and memory attention's memory
    and memory_pos are stacked there. The slot positions are uploaded once; a static set's empty slots
    get zero memory and zero position, as engine.static pads them on the host."""

    def __init__(self, ops: DeviceOps, spec: Any) -> None:
        self.ops = ops
        self.spec = spec
        table = np.stack([*spec.slot_pos, np.zeros_like(spec.slot_pos[0])])  # last row: an empty slot's position
        self.positions = ops.upload(table)
        self.item_type = "bfloat16" if spec.bfloat16 else "float32"
        self._zero: DeviceTensor | None = None
        self._sessions: dict[Any, Any] = {}  # its graphs bake in this spec's rounding and no_obj_embed

    def keep(self, features: DeviceTensor | np.ndarray, absent: bool) -> DeviceTensor:
        if not isinstance(features, DeviceTensor):
            features = self.ops.upload(np.asarray(features, np.float32))
        add = absent and self.spec.no_obj_embed is not None
        if not add and not self.spec.bfloat16:
            return features  # each stage run leaves its outputs in new buffers: nothing will overwrite it
        shape = features.shape
        return self.ops.run_graph(("keep", shape, add), lambda: _keep_graph(shape, self.spec, add),
                                  {"x": features}, keep=("y",), cache=self._sessions)["y"]

    def gather(self, memories: Sequence[DeviceTensor], slots: Sequence[int],
               capacity: int | None = None) -> dict[str, Any]:
        n = len(memories)
        items, index = list(memories), list(slots)
        out: dict[str, Any] = {}
        if capacity is not None:
            pad = check_capacity(n, capacity) - n
            items += [self._zero_item(memories[0].shape)] * pad
            index += [len(self.spec.slot_pos)] * pad
            out["memory_valid"] = np.array([1.0] * n + [0.0] * pad, np.float32)
        shape = items[0].shape
        feeds = {f"m{i}": m for i, m in enumerate(items)}
        feeds |= {"positions": self.positions, "slot": np.asarray(index, np.int64)}
        stacked = self.ops.run_graph(("gather", len(items), shape, self.item_type),
                                     lambda: _gather_graph(len(items), shape, self.item_type, self.positions.shape),
                                     feeds, keep=("memory", "memory_pos"), cache=self._sessions)
        return {"memory": stacked["memory"], "memory_pos": stacked["memory_pos"], **out}

    def _zero_item(self, shape: tuple[int, ...]) -> DeviceTensor:
        if self._zero is None or self._zero.shape != shape:
            self._zero = self.keep(self.ops.upload(np.zeros(shape, np.float32)), absent=False) if self.spec.bfloat16 \
                else self.ops.upload(np.zeros(shape, np.float32))
        return self._zero


# ---------------------------------------------------------------------------- graph builders
def _model(nodes: list, inputs: list, outputs: list, initializers: list | None = None) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "device_op", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 9  # what every onnxruntime this engine supports reads
    return model.SerializeToString()


def _io(name: str, dtype: str, shape: Sequence[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, _ELEM[dtype], list(shape))


def _identity_graph(dtype: str, rank: int) -> bytes:
    from onnx import helper

    dims = [f"d{i}" for i in range(rank)]
    return _model([helper.make_node("Identity", ["x"], ["y"])], [_io("x", dtype, dims)], [_io("y", dtype, dims)])


def _cast_graph(shape: Sequence[int], src: str, dst: str) -> bytes:
    from onnx import helper

    return _model([helper.make_node("Cast", ["x"], ["y"], to=_ELEM[dst])], [_io("x", src, shape)],
                  [_io("y", dst, shape)])


def _keep_graph(shape: Sequence[int], spec: Any, add_no_obj: bool) -> bytes:
    """features (+ no_obj_embed for an absent object), rounded to bfloat16 when the spec keeps bfloat16:
    Cast rounds to nearest even, as torch's .to(bfloat16) and engine.memory_store.to_bf16."""
    from onnx import helper, numpy_helper

    nodes, inits, x = [], [], "x"
    if add_no_obj:
        inits.append(numpy_helper.from_array(spec.no_obj_embed.reshape(1, -1, 1, 1).astype(np.float32), "no_obj"))
        nodes.append(helper.make_node("Add", [x, "no_obj"], ["added"]))
        x = "added"
    out_type = "bfloat16" if spec.bfloat16 else "float32"
    nodes.append(helper.make_node("Cast", [x], ["y"], to=_ELEM[out_type]) if spec.bfloat16
                 else helper.make_node("Identity", [x], ["y"]))
    return _model(nodes, [_io("x", "float32", shape)], [_io("y", out_type, shape)], inits)


def _gather_graph(n: int, shape: Sequence[int], item_type: str, table_shape: Sequence[int]) -> bytes:
    """n memories [1, C, a, b] -> memory [n, C, a, b] float32; the position table [K+1, C, a, b] and the
    slot of each -> memory_pos [n, C, a, b]."""
    from onnx import helper

    names = [f"m{i}" for i in range(n)]
    nodes = [helper.make_node("Concat", names, ["stacked"], axis=0),
             helper.make_node("Cast", ["stacked"], ["memory"], to=_ELEM["float32"]),
             helper.make_node("Gather", ["positions", "slot"], ["memory_pos"], axis=0)]
    out_shape = [n, *shape[1:]]
    return _model(nodes, [*(_io(m, item_type, shape) for m in names), _io("positions", "float32", table_shape),
                          _io("slot", "int64", [n])],
                  [_io("memory", "float32", out_shape), _io("memory_pos", "float32", out_shape)])
