"""Prompts from the command line or a prompts file, validated into one form the tracker takes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import InputError


@dataclass
class Prompt:
    """Everything given for one object on one frame."""

    frame: int
    obj_id: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: Path | None = None

    def check(self) -> Prompt:
        if not self.points and self.box is None and self.mask is None:
            raise InputError(f"empty prompt for object {self.obj_id} on frame {self.frame}: give points, a box "
                             f"or a mask")
        if self.mask is not None and (self.points or self.box is not None):
            raise InputError(f"object {self.obj_id} on frame {self.frame}: a mask prompt cannot be combined with "
                             f"points or a box on the same frame")
        return self


def _number(text: Any, what: str) -> float:
    if isinstance(text, bool):
        raise InputError(f"{what}: expected a number, got {text!r}")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{what}: expected a finite number, got {text!r}")
    return value


def parse_index(value: Any, what: str, lo: int = 0) -> int:
    if isinstance(value, bool):
        raise InputError(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected an integer, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise InputError(f"{what}: expected an integer, got {value!r}")
    if number < lo:
        raise InputError(f"{what}: expected an integer >= {lo}, got {number}")
    return number


def parse_point(text: str) -> tuple[tuple[float, float], int]:
    """'X,Y' or 'X,Y,LABEL' (label 1 positive, the default; 0 negative)."""
    parts = [p for p in str(text).split(",")]
    if len(parts) not in (2, 3) or any(not p.strip() for p in parts):
        raise InputError(f"--point expects X,Y or X,Y,LABEL, got {text!r}")
    x, y = _number(parts[0], "--point x"), _number(parts[1], "--point y")
    label = 1
    if len(parts) == 3:
        label = parse_index(parts[2], "--point label")
        if label not in (0, 1):
            raise InputError(f"--point label must be 1 (positive) or 0 (negative), got {label}")
    return (x, y), label


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = str(text).split(",")
    if len(parts) != 4:
        raise InputError(f"--box expects X0,Y0,X1,Y1, got {text!r}")
    x0, y0, x1, y1 = (_number(p, "--box") for p in parts)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"--box {text!r} is empty: X1 must exceed X0 and Y1 must exceed Y0")
    return x0, y0, x1, y1


def load_prompts_file(path: str | Path) -> list[Prompt]:
    """YAML or JSON: a list of {frame, obj_id, points: [[x, y], ...], labels: [...], box: [...], mask: file}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"prompts file {path} cannot be parsed: {exc}") from None
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    return parse_prompt_list(data, str(path), base=path.parent)


_KEYS = ("frame", "obj_id", "points", "labels", "box", "mask")


def parse_prompt_list(data: Any, source: str = "prompts", base: Path | None = None) -> list[Prompt]:
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a non-empty list of prompts")
    prompts = []
    for i, item in enumerate(data):
        where = f"{source}: prompt {i}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected a mapping with keys {', '.join(_KEYS)}")
        unknown = [k for k in item if k not in _KEYS]
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_KEYS)}")
        p = Prompt(frame=parse_index(item.get("frame", 0), f"{where} frame"),
                   obj_id=parse_index(item.get("obj_id", 1), f"{where} obj_id"))
        points = item.get("points") or []
        if not isinstance(points, list):
            raise InputError(f"{where}: points must be a list of [x, y]")
        for j, pt in enumerate(points):
            if not isinstance(pt, (list, tuple)) or len(pt) != 2:
                raise InputError(f"{where}: point {j} must be [x, y], got {pt!r}")
            p.points.append((_number(pt[0], f"{where} point {j} x"), _number(pt[1], f"{where} point {j} y")))
        labels = item.get("labels")
        if labels is None:
            p.labels = [1] * len(p.points)
        else:
            if not isinstance(labels, list) or len(labels) != len(p.points):
                raise InputError(f"{where}: labels must be a list as long as points ({len(p.points)})")
            p.labels = [parse_index(v, f"{where} label") for v in labels]
            if any(v not in (0, 1) for v in p.labels):
                raise InputError(f"{where}: labels must be 1 (positive) or 0 (negative)")
        if item.get("box") is not None:
            box = item["box"]
            if not isinstance(box, (list, tuple)):
                raise InputError(f"{where}: box must be [x0, y0, x1, y1]")
            p.box = parse_box(",".join(str(v) for v in box))
        if item.get("mask") is not None:
            if not isinstance(item["mask"], str) or not item["mask"].strip():
                raise InputError(f"{where}: mask must be a path to an image")
            m = Path(item["mask"])
            p.mask = m if m.is_absolute() or base is None else base / m
        prompts.append(p.check())
    return prompts


def merge(prompts: list[Prompt]) -> list[Prompt]:
    """Combine entries for the same object and frame (points accumulate; one box; one mask)."""
    merged: dict[tuple[int, int], Prompt] = {}
    for p in prompts:
        key = (p.frame, p.obj_id)
        if key not in merged:
            merged[key] = Prompt(p.frame, p.obj_id, list(p.points), list(p.labels), p.box, p.mask)
            continue
        m = merged[key]
        if p.box is not None:
            if m.box is not None:
                raise InputError(f"object {p.obj_id} has two boxes on frame {p.frame}")
            m.box = p.box
        if p.mask is not None:
            if m.mask is not None:
                raise InputError(f"object {p.obj_id} has two masks on frame {p.frame}")
            m.mask = p.mask
        m.points += p.points
        m.labels += p.labels
    return [p.check() for p in merged.values()]


def finalize_prompts(found: list[Prompt]) -> list[Prompt]:
    """Prompts from any source, checked and merged per object and frame, in frame order."""
    if not found:
        raise InputError("no prompt given: add --point, --box, --mask or --prompts")
    for p in found:
        if p.obj_id < 1 or p.obj_id > 255:
            raise InputError(f"object id {p.obj_id} is not allowed: ids run from 1 to 255 (0 is the background "
                             f"of the PNG masks)")
    return sorted(merge(found), key=lambda p: (p.frame, p.obj_id))
