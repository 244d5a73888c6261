"""Any input to the config loader or the prompt parsers either parses or raises the engine's own error."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import load_config, parse_config
from engine.errors import EngineError
from engine.prompts import parse_box, parse_point, parse_prompt_list

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
keys = st.sampled_from(["model", "backend", "stages", "tracker", "name", "device", "precision", "threads",
                        "fallback", "memory_frames", "image_encoder", "mask_decoder", "cache_dir", "io_binding", "cuda_graph",
                        "keep_on_device", "prefetch_frames",
                        "provider_options", "performance_hint", "num_streams", "fill_hole_area", "frame",
                        "obj_id", "points", "labels", "box", "mask", "x"]) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=20)


def _parses_or_engine_error(fn, *args):
    try:
        fn(*args)
    except EngineError:
        pass


@settings(max_examples=400, deadline=None)
@given(values)
def test_parse_config_any_structure(data):
    _parses_or_engine_error(parse_config, data)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_load_config_any_text(tmp_path_factory, text):
    p = Path(tmp_path_factory.mktemp("cfg")) / "c.yaml"
    p.write_text(text)
    _parses_or_engine_error(load_config, p)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_point_and_box_any_text(text):
    _parses_or_engine_error(parse_point, text)
    _parses_or_engine_error(parse_box, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5)),
                min_size=0, max_size=5))
def test_point_and_box_any_numbers(parts):
    text = ",".join(str(p) for p in parts)
    _parses_or_engine_error(parse_point, text)
    _parses_or_engine_error(parse_box, text)


@settings(max_examples=400, deadline=None)
@given(values)
def test_prompt_list_any_structure(data):
    _parses_or_engine_error(parse_prompt_list, data)


@settings(max_examples=100, deadline=None)
@given(values)
def test_prompt_file_any_json(tmp_path_factory, data):
    from engine.prompts import load_prompts_file

    p = Path(tmp_path_factory.mktemp("p")) / "p.json"
    p.write_text(json.dumps(data))
    _parses_or_engine_error(load_prompts_file, p)
