"""SAM 2 video tracking on ONNX stage models, driven from numpy."""

from engine.errors import EngineError

__version__ = "0.1.0"
__all__ = ["EngineError", "__version__"]
