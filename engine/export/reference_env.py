"""Which reference package a process imports as `sam2`: Meta's, or EdgeTAM's (edgetam-dimos).

Both install under the import name `sam2`, so one Python process can hold only one of them. Meta's is
installed into the environment (`pip install --no-deps sam2`); EdgeTAM's lives in a folder of its own
(`pip install --no-deps --target .refs/edgetam edgetam-dimos==1.0.1 timm==1.0.15`, or wherever
`$SAM2_EDGE_EDGETAM_REF` points), put first on `sys.path` only by a process that exports or runs EdgeTAM.
Asking for the other one after a process has imported `sam2` is an ExportError that says to use a
fresh process (the tests run EdgeTAM's export and reference in child processes).

EdgeTAM's RepViT trunk comes from `timm`, whose layers import `torchvision` for names RepViT never uses
(FrozenBatchNorm2d, data transforms, datasets). PyPI's torchvision does not import beside the pinned CPU
torch, so for EdgeTAM a placeholder `torchvision` is installed in `sys.modules`: every name resolves to a
class that raises ImportError when called or instantiated, so any real use fails loudly, and nothing of
it exists outside export and reference processes (the engine never imports torch at run time).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path

from engine.errors import ExportError
from engine.variants import Variant

ENV_VAR = "SAM2_EDGE_EDGETAM_REF"
DEFAULT_EDGETAM_DIR = Path(__file__).resolve().parents[2] / ".refs" / "edgetam"
INSTALL_HINT = ("pip install --no-deps --target .refs/edgetam 'edgetam-dimos==1.0.1' 'timm==1.0.15'  "
                f"(or point ${ENV_VAR} at such a folder)")


def edgetam_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_EDGETAM_DIR)


def _loaded_reference() -> str | None:
    """'edgetam', 'sam2' or None: which package this process has imported as `sam2`."""
    module = sys.modules.get("sam2")
    if module is None:
        return None
    origin = Path(getattr(module, "__file__", "") or "").resolve()
    return "edgetam" if edgetam_dir().resolve() in origin.parents else "sam2"


def activate(variant: Variant) -> None:
    """Make `import sam2` give the package that builds `variant`; refuse when the process holds the other."""
    loaded = _loaded_reference()
    if loaded is not None and loaded != variant.reference:
        names = {"sam2": "Meta's sam2", "edgetam": "EdgeTAM's reference (edgetam-dimos)"}
        raise ExportError(f"{variant.name} is built by {names[variant.reference]}, but this process has already "
                          f"imported {names[loaded]} as `sam2`; both use that import name, so run "
                          f"{variant.name} in a process of its own")
    if variant.reference != "edgetam" or loaded == "edgetam":
        return
    root = edgetam_dir()
    if not (root / "sam2" / "configs" / "edgetam.yaml").is_file() or not (root / "timm").is_dir():
        raise ExportError(f"EdgeTAM's reference package is not installed at {root}: {INSTALL_HINT}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    install_torchvision_placeholder()


class _Absent(type):
    """A torchvision name that exists only so that timm's modules import: using it raises."""

    def __getattr__(cls, attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Absent(f"{cls.__qualname__}.{attr}", (), {})

    def __call__(cls, *args: object, **kwargs: object) -> object:
        raise ImportError(f"{cls.__qualname__} was used, but torchvision is not installed: EdgeTAM's export "
                          f"loads timm with a placeholder torchvision (engine/export/reference_env.py)")


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: object) -> None:
        name = module.__name__  # type: ignore[attr-defined]
        module.__path__ = []  # type: ignore[attr-defined]

        def __getattr__(attr: str) -> type:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Absent(f"{name}.{attr}", (), {})

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]


def install_torchvision_placeholder() -> None:
    """Only where torchvision cannot be imported: a real one (a future matching wheel) is left alone."""
    if any(isinstance(f, _PlaceholderFinder) for f in sys.meta_path) or "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
        return
    except Exception:  # absent, or present but broken beside this torch (its compiled ops fail to load)
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
    sys.meta_path.insert(0, _PlaceholderFinder())


def disable_timm_download() -> None:
    """EdgeTAM's TimmBackbone asks timm for ImageNet weights (a download); they are replaced by the seeded or
    checkpoint weights anyway, so the trunk is built without them."""
    import sam2.modeling.backbones.timm as backbone

    create = backbone.create_model
    if getattr(create, "_no_download", False):
        return

    def create_model(*args: object, **kwargs: object) -> object:
        return create(*args, **{**kwargs, "pretrained": False})

    create_model._no_download = True  # type: ignore[attr-defined]
    backbone.create_model = create_model
