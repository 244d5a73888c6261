from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.errors import ConfigError

# engine configs; serve-*.yaml are deployment files (tests/engine/serve/test_schema.py checks those)
CONFIGS = sorted(p for p in (Path(__file__).parents[2] / "configs").glob("*.yaml") if not p.stem.startswith("serve"))


def test_ready_configs_exist_for_each_backend_device():
    names = {p.stem for p in CONFIGS}
    assert {"onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-directml", "openvino-cpu", "openvino-cpu-bf16",
            "openvino-gpu", "openvino-npu", "openvino-auto", "mixed"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_ready_configs_parse(path):
    cfg = load_config(path)
    assert cfg.model is not None and cfg.model.is_absolute()
    fixed = cfg.backend.device in ("NPU", "GPU") and cfg.backend.name == "openvino"
    if fixed or cfg.backend.cuda_graph or cfg.backend.device == "tensorrt":
        # fixed-shape compilers: the static set, and the cap on prompted frames its slots need
        assert cfg.model.name == "sam2.1_hiera_tiny_static"
        assert cfg.tracker.max_cond_frames == 2
        return
    suffix = "_fp16" if path.stem.endswith("-fp16") else ""  # fp16 for CUDA: a converted set
    if suffix:
        assert (cfg.backend.name, cfg.backend.device) == ("onnxruntime", "cuda")
    if path.stem.startswith("edgetam"):  # the EdgeTAM family: its exact set, or the 512² sets measured fast
        fast = {"-fast": "edgetam_512", "-int8": "edgetam_512_int8"}
        assert cfg.model.name == next((m for end, m in fast.items() if path.stem.endswith(end)), "edgetam" + suffix)
    else:
        assert cfg.model.name == "sam2.1_hiera_tiny" + suffix
    assert cfg.tracker.max_cond_frames is None  # Meta's rule: every prompted frame


def test_mixed_config_places_stages():
    cfg = load_config(next(p for p in CONFIGS if p.stem == "mixed"))
    assert cfg.backend_for("image_encoder").device == "GPU"
    assert cfg.backend_for("image_encoder").fallback[0].precision == "bf16"
    assert cfg.backend_for("memory_attention").name == "onnxruntime"
    assert cfg.backend_for("mask_decoder").name == "openvino"


def test_relative_paths_resolve_against_config_file(tmp_path):
    p = tmp_path / "deploy" / "c.yaml"
    p.parent.mkdir()
    p.write_text("model: models/x\nbackend: {name: openvino, cache_dir: cache}\n")
    cfg = load_config(p)
    assert cfg.model == p.parent.resolve() / "models/x"
    assert cfg.backend.cache_dir == str(p.parent.resolve() / "cache")


def test_defaults():
    cfg = parse_config({})
    assert cfg.model is None and cfg.backend.name == "onnxruntime" and cfg.backend.precision == "f32"
    assert cfg.tracker.memory_frames == 7 and cfg.tracker.memory_dtype == "bfloat16"


def test_stage_override_inherits_default():
    cfg = parse_config({"backend": {"name": "openvino", "threads": 3},
                        "stages": {"memory_encoder": {"precision": "bf16"}}})
    enc = cfg.backend_for("memory_encoder")
    assert (enc.name, enc.threads, enc.precision) == ("openvino", 3, "bf16")
    assert cfg.backend_for("image_encoder").precision == "f32"


BAD = [
    ({"modle": "x"}, "key 'modle': unknown key; allowed keys: model, backend, stages, tracker"),
    ({"backend": {"name": "tensorrt"}}, "key 'backend.name': value 'tensorrt' is not allowed; allowed: onnxruntime, openvino"),
    ({"backend": {"name": "onnxruntime", "device": "tpu"}}, "key 'backend.device': value 'tpu' is not allowed; allowed: cpu, cuda, tensorrt, directml, dml"),
    ({"backend": {"name": "openvino", "device": "XPU"}}, "key 'backend.device': value 'XPU' is not allowed for openvino"),
    ({"backend": {"precision": "int8"}}, "key 'backend.precision': value 'int8' is not allowed; allowed: f32, bf16, f16"),
    ({"backend": {"threads": 0}}, "key 'backend.threads': value 0 is not allowed"),
    ({"backend": {"threads": "two"}}, "key 'backend.threads': value 'two' is not allowed"),
    ({"backend": {"performance_hint": "fast"}}, "key 'backend.performance_hint': value 'fast'"),
    ({"backend": {"num_streams": -1}}, "key 'backend.num_streams': value -1"),
    ({"backend": {"io_binding": "yes"}}, "key 'backend.io_binding': value 'yes' is not allowed; expected true or false"),
    ({"backend": {"name": "openvino", "device": "GPU", "cuda_graph": True}},
     "key 'backend.cuda_graph': CUDA graphs are an onnxruntime CUDA feature; this backend is openvino on GPU"),
    ({"backend": {"provider_options": [1]}}, "key 'backend.provider_options'"),
    ({"backend": {"fallback": "CPU"}}, "key 'backend.fallback': value 'CPU' is not allowed; expected a list"),
    ({"backend": {"fallback": [{"device": "CPU", "fallback": []}]}}, "key 'backend.fallback[0].fallback'"),
    ({"backend": {"fallback": [{"colour": 1}]}}, "key 'backend.fallback[0].colour': unknown key"),
    ({"backend": "openvino"}, "key 'backend': expected a mapping"),
    ({"stages": {"decoder": {}}}, "key 'stages.decoder': unknown key; allowed keys: image_encoder, mask_decoder"),
    ({"stages": {"mask_decoder": {"devce": "CPU"}}}, "key 'stages.mask_decoder.devce': unknown key"),
    ({"tracker": {"memory_frames": 0}}, "key 'tracker.memory_frames': value 0 is not allowed"),
    ({"tracker": {"max_obj_ptrs": 100}}, "key 'tracker.max_obj_ptrs': value 100"),
    ({"tracker": {"fill_hole_area": -1}}, "key 'tracker.fill_hole_area': value -1"),
    ({"tracker": {"mask_threshold": "high"}}, "key 'tracker.mask_threshold': value 'high'"),
    ({"tracker": {"memory_dtype": "float16"}}, "key 'tracker.memory_dtype': value 'float16' is not allowed; allowed: bfloat16, float32"),
    ({"tracker": {"non_overlap_masks": 1}}, "key 'tracker.non_overlap_masks': value 1"),
    ({"tracker": {"memory": 7}}, "key 'tracker.memory': unknown key"),
    ({"model": 5}, "key 'model': value 5 is not allowed; expected a path"),
    ([1, 2], "key '<top level>': expected a mapping"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m.split("'")[1] for _, m in BAD])
def test_config_errors_name_key_value_and_allowed(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_invalid_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("backend: {name: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_runtime_only_keys_are_refused_on_the_other_runtime():
    cfg = parse_config({"backend": {"name": "onnxruntime", "spin_wait": False},
                        "stages": {"image_encoder": {"name": "openvino", "device": "CPU", "cpu_pinning": True}}})
    assert cfg.backend.spin_wait is False and cfg.backend_for("mask_decoder").spin_wait is False
    enc = cfg.backend_for("image_encoder")  # another runtime: onnxruntime's setting does not carry over
    assert (enc.name, enc.spin_wait, enc.cpu_pinning) == ("openvino", None, True)
    with pytest.raises(ConfigError, match="key 'backend.spin_wait': spin_wait is an onnxruntime setting; this "
                                          "backend is openvino"):
        parse_config({"backend": {"name": "openvino", "device": "CPU", "spin_wait": False}})
    with pytest.raises(ConfigError, match="cpu_pinning is an openvino setting"):
        parse_config({"backend": {"name": "onnxruntime", "cpu_pinning": False}})


