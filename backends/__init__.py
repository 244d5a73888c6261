"""Runtimes that execute the stage models: one interface, several implementations."""

from backends.base import Backend, BackendConfig, Stage, StageOptions
from backends.registry import available_backends, create_backend

__all__ = ["Backend", "BackendConfig", "Stage", "StageOptions", "available_backends", "create_backend"]
