"""The engine's own error types: every user-facing failure is one of these."""


class EngineError(Exception):
    """Base class: a problem the user can fix, reported without a traceback by the CLIs."""


class ConfigError(EngineError):
    """A YAML config or command-line option is invalid."""


class ModelSetError(EngineError):
    """A model set on disk is missing, incomplete, corrupt or of another kind than expected."""


class ExportError(EngineError):
    """Building or exporting the stage models failed for a reason the user can act on."""


class BackendUnavailableError(EngineError):
    """A runtime, device, provider or precision that was asked for is not available here."""


class InputError(EngineError):
    """A frame, prompt or video given to the tracker is invalid."""


class FrameDecodeError(InputError):
    """One frame of a video could not be decoded (a truncated or corrupt file)."""
