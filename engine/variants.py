"""The model variants the exporter knows, and the reference package config that builds each.

SAM 2 and SAM 2.1 come from Meta's `sam2` package; EdgeTAM from its own reference (`edgetam-dimos`),
which installs under the same import name `sam2` and is therefore loaded by `engine.export.reference_env`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ExportError


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # "sam2", "sam2.1" or "edgetam"
    size: str  # tiny, small, base_plus, large; EdgeTAM's one size is named after its RepViT trunk
    config: str  # hydra config inside the reference package
    reference: str = "sam2"  # the package that builds it: "sam2" (Meta's) or "edgetam" (edgetam-dimos)

    @property
    def is_2_1(self) -> bool:
        return self.family == "sam2.1"


_SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

VARIANTS: dict[str, Variant] = {}
for _family in ("sam2.1", "sam2"):
    for _size, _short in _SIZES.items():
        _name = f"{_family}_hiera_{_size}"
        VARIANTS[_name] = Variant(_name, _family, _size, f"configs/{_family}/{_family}_hiera_{_short}.yaml")

VARIANTS["edgetam"] = Variant("edgetam", "edgetam", "repvit_m1", "configs/edgetam.yaml", reference="edgetam")

DEFAULT_VARIANT = "sam2.1_hiera_tiny"
FAMILIES = ("sam2", "sam2.1", "edgetam")


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ExportError(f"unknown variant {name!r}; known variants: {known}") from None
