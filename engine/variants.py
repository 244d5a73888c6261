"""The SAM 2 variants the exporter knows, and the sam2 package config that builds each."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ExportError


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # "sam2" or "sam2.1"
    size: str  # tiny, small, base_plus, large
    config: str  # hydra config inside the sam2 package

    @property
    def is_2_1(self) -> bool:
        return self.family == "sam2.1"


_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

VARIANTS: dict[str, Variant] = {}
for _family in ("sam2.1", "sam2"):
    for _size, _short in _SIZES.items():
        _name = f"{_family}_hiera_{_size}"
        VARIANTS[_name] = Variant(_name, _family, _size, f"configs/{_family}/{_family}_hiera_{_short}.yaml")

DEFAULT_VARIANT = "sam2.1_hiera_tiny"


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ExportError(f"unknown variant {name!r}; known variants: {known}") from None
