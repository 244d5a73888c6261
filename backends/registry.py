"""Which backend implements a runtime name: a registry that imports an implementation only when its name
is asked for, so `backends.base` (the interface every implementation imports) imports none of them.

Adding a runtime is a file of its own plus one line in `IMPLEMENTATIONS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

from backends.base import BACKEND_NAMES, Backend, BackendConfig
from engine.errors import BackendUnavailableError, ConfigError

log = logging.getLogger("backends")

# runtime name -> (module, class); imported on first use
IMPLEMENTATIONS = {
    "onnxruntime": ("backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("backends.openvino", "OpenVinoBackend"),
}
assert tuple(IMPLEMENTATIONS) == BACKEND_NAMES

# The extra that installs each runtime: the core package depends on none of them.
RUNTIME_EXTRAS = {
    "onnxruntime": "pip install 'sam2-edge[onnxruntime]' (CPU), 'sam2-edge[cuda]' (NVIDIA GPUs) or "
                   "'sam2-edge[directml]' (Windows GPUs)",
    "openvino": "pip install 'sam2-edge[openvino]'",
}


def require_runtime(name: str) -> None:
    """A runtime that is not installed is an error naming the extra that installs it."""
    if name in RUNTIME_EXTRAS and importlib.util.find_spec(name) is None:
        raise BackendUnavailableError(f"backend {name} needs the {name} package, which is not installed here: "
                                      f"{RUNTIME_EXTRAS[name]}")


def backend_class(name: str) -> type[Backend]:
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"backend name {name!r} is not known; allowed: {', '.join(BACKEND_NAMES)}")
    require_runtime(name)
    module, cls = IMPLEMENTATIONS[name]
    return getattr(importlib.import_module(module), cls)


def available_backends() -> dict[str, list[str]]:
    """Runtime name -> devices it can use on this machine (a runtime not installed maps to [])."""
    out: dict[str, list[str]] = {}
    for name in BACKEND_NAMES:
        try:
            out[name] = backend_class(name).available_devices()  # type: ignore[attr-defined]
        except (ImportError, BackendUnavailableError):
            out[name] = []
    return out


def create_backend(config: BackendConfig) -> Backend:
    """Create the backend asked for; on an unavailable device try only the config's explicit fallbacks."""
    try:
        return backend_class(config.name)(config.without_fallback())
    except BackendUnavailableError as first:
        for alt in config.fallback:
            try:
                backend = backend_class(alt.name)(alt.without_fallback(), fallback_from=config)
            except BackendUnavailableError as exc:
                log.warning("fallback %s:%s is not available either: %s", alt.name, alt.device, exc)
                continue
            log.warning("%s:%s is not available (%s); using the configured fallback %s:%s",
                        config.name, config.device, first, alt.name, alt.device)
            return backend
        if config.fallback:
            tried = ", ".join(f"{a.name}:{a.device}" for a in config.fallback)
            raise BackendUnavailableError(f"{first} (configured fallbacks tried: {tried})") from first
        raise
