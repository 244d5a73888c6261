"""keep_on_device on ONNX Runtime's CPU provider: host OrtValues run the same code as CUDA's device ones.

Every operation is checked against the numpy path it replaces, bit for bit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backends.base import BackendConfig, DeviceTensor, StageOptions
from backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeStage
from engine.config import parse_config
from engine.errors import BackendUnavailableError, ConfigError, InputError
from engine.memory_store import HostMemoryStore, MemorySpec, from_bf16
from engine.modelset import ModelSet
from engine.stages import StageSet, random_inputs

KEEP = BackendConfig(name="onnxruntime", keep_on_device=True)


@pytest.fixture(scope="module")
def backend() -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(KEEP)


def _spec(ms: ModelSet, dtype: str) -> MemorySpec:
    return MemorySpec.for_model(ms.manifest.rules, ms.constants, dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_stored_memory_equals_the_host_store_bit_for_bit(backend, modelset, dtype):
    spec = _spec(modelset, dtype)
    assert spec.no_obj_embed is not None  # SAM 2.1: an absent object's memory gets no_obj_embed_spatial
    host, device = HostMemoryStore(spec), backend.memory_store(spec)
    rng = np.random.default_rng(0)
    a, b = modelset.manifest.memory_grid
    for absent in (False, True):
        x = (rng.standard_normal((1, 64, a, b)) * 3).astype(np.float32)
        x[0, 0, 0, :3] = [0.0, 1.00390625, -2.0078125]  # bfloat16 ties: round to nearest even
        want = host.keep(x, absent)
        got = device.keep(backend.ops.upload(x), absent)
        assert isinstance(got, DeviceTensor) and got.dtype == dtype and got.shape == (1, *want.shape)
        assert got.nbytes == want.nbytes
        want_f32 = from_bf16(want) if dtype == "bfloat16" else want
        assert np.array_equal(backend.to_host(got)[0].view(np.uint32), want_f32.view(np.uint32))


@pytest.mark.parametrize("tier", [None, 0, 1])
def test_gathered_memory_equals_the_host_path(backend, modelset, static_modelset_dir, tier):
    """Stacked as the host stacks them, and filled into each static tier's slots as StaticShapes.pad fills
    them on the host."""
    static = ModelSet.load(static_modelset_dir).manifest.static
    spec = _spec(modelset, "bfloat16")
    capacity = None if tier is None else static.tiers[tier].memory_slots
    host, device = HostMemoryStore(spec), backend.memory_store(spec)
    rng = np.random.default_rng(1)
    a, b = modelset.manifest.memory_grid
    features = [rng.standard_normal((1, 64, a, b)).astype(np.float32) for _ in range(5)]
    slot_of = [6, 3, 4, 5, 0]
    want = host.gather([host.keep(f, False) for f in features], slot_of)
    if capacity:
        want = static.pad(static.tiers[tier].stage, {**want, "obj_ptrs": np.zeros((0, 256), np.float32),
                                                     "obj_ptr_pos": np.zeros((0, 64), np.float32)})
        assert want["memory"].shape[0] == capacity
        filled = host.gather([host.keep(f, False) for f in features], slot_of, capacity)
        for name in ("memory", "memory_pos", "memory_valid"):  # the host store fills slots the same way
            np.testing.assert_array_equal(filled[name], want[name])
    got = device.gather([device.keep(backend.ops.upload(f), False) for f in features], slot_of, capacity)
    assert set(got) == ({"memory", "memory_pos", "memory_valid"} if capacity else {"memory", "memory_pos"})
    for name in ("memory", "memory_pos"):
        assert got[name].shape == want[name].shape
        assert np.array_equal(backend.to_host(got[name]), want[name]), name
    if capacity:
        np.testing.assert_array_equal(got["memory_valid"], want["memory_valid"])
        with pytest.raises(InputError, match=f"{capacity + 1} memory frames .* {capacity} slots"):
            device.gather([device.keep(backend.ops.upload(features[0]), False)] * (capacity + 1),
                          [0] * (capacity + 1), capacity)


def test_kept_outputs_stay_on_the_device_and_outlive_the_next_call(backend, modelset):
    stage = backend.load(modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    inputs = [random_inputs(modelset, seed=s)["memory_encoder"] for s in (0, 1)]
    plain = [stage.run(x) for x in inputs]
    kept = [stage.run_on_device(x, keep=("maskmem_features",)) for x in inputs]
    assert isinstance(kept[0]["maskmem_features"], DeviceTensor)
    for want, got in zip(plain, kept, strict=True):  # the first result is read after the second call
        np.testing.assert_array_equal(backend.to_host(got["maskmem_features"]), want["maskmem_features"])
    # a device value feeds the next stage as it is
    dec = backend.load(modelset.stage_path("mask_decoder"), StageOptions("mask_decoder"))
    x = random_inputs(modelset)["mask_decoder"]
    on_device = {**x, "image_embed": backend.ops.upload(x["image_embed"])}
    out = dec.run_on_device(on_device, keep=())
    assert all(isinstance(v, np.ndarray) for v in out.values())
    for k, v in dec.run(x).items():
        np.testing.assert_array_equal(out[k], v)


def test_fixed_buffers_take_device_inputs_and_copy_kept_outputs(backend, static_modelset_dir):
    """CUDA graphs with keep_on_device: device inputs are copied into the fixed buffers on the device, and a
    kept output is copied out, since the next replay overwrites its buffer."""
    ms = ModelSet.load(static_modelset_dir)
    plain = backend.load(ms.stage_path("memory_attention"), StageOptions("memory_attention"))
    fixed = OnnxRuntimeStage(plain.session, "memory_attention", "CPU", False, 0.0, fixed_buffers=True,
                             ops=backend.ops)
    kept, want = [], []
    for seed in (0, 1):
        x = ms.manifest.static.pad("memory_attention", random_inputs(ms, memory_frames=2 + seed, pointers=3,
                                                                     seed=seed)["memory_attention"])
        fed = {**x, "curr": backend.ops.upload(x["curr"]), "memory": backend.ops.upload(x["memory"])}
        kept.append(fixed.run_on_device(fed, keep=("pix_feat_with_mem",))["pix_feat_with_mem"])
        want.append(plain.run(x)["pix_feat_with_mem"])
    assert not np.array_equal(want[0], want[1])
    for w, k in zip(want, kept, strict=True):
        np.testing.assert_array_equal(backend.to_host(k), w)
    with pytest.raises(InputError, match="fixed buffer"):
        fixed.run_on_device({**fed, "curr": backend.ops.upload(x["curr"][..., :1])}, keep=())


def test_keep_on_device_is_refused_where_it_cannot_work(modelset):
    with pytest.raises(ConfigError, match="keep_on_device': values are kept on the device by onnxruntime"):
        parse_config({"backend": {"name": "openvino", "device": "CPU", "keep_on_device": True}})
    with pytest.raises(ConfigError, match="'backend.keep_on_device': value 'yes' is not allowed"):
        parse_config({"backend": {"keep_on_device": "yes"}})
    with pytest.raises(ConfigError, match="every stage on one backend .* memory_attention: openvino:CPU"):
        StageSet.load(modelset, {**dict.fromkeys(("image_encoder", "mask_decoder", "memory_encoder"), KEEP),
                                 "memory_attention": BackendConfig(name="openvino", device="CPU")})
    with pytest.raises(ConfigError, match="every stage on one backend"):
        StageSet.load(modelset, {**dict.fromkeys(("image_encoder", "mask_decoder", "memory_encoder"), KEEP),
                                 "memory_attention": replace(KEEP, threads=1)})
    plain = OnnxRuntimeBackend(BackendConfig(name="onnxruntime"))
    stage = plain.load(modelset.stage_path("memory_encoder"), StageOptions("memory_encoder"))
    with pytest.raises(InputError, match="only on a backend with keep_on_device"):
        stage.run_on_device(random_inputs(modelset)["memory_encoder"], keep=())
    with pytest.raises(BackendUnavailableError, match="keeps no memory on a device"):
        plain.memory_store(_spec(modelset, "float32"))
