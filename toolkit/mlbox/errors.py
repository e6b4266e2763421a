"""One error hierarchy for mlbox, each class with a fixed exit code.

The CLI's ``main`` is the only place these become messages; everything below it raises.
Exit codes 1 and 2 are left to Python and click (crash, usage error).
"""

from __future__ import annotations


class MlboxError(Exception):
    """Base class: ``str(err)`` says what failed; ``hint`` says what to do about it."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class CatalogError(MlboxError):
    """images.yaml is malformed, or a selection names something it does not have."""

    exit_code = 10


class TemplateError(MlboxError):
    """A Dockerfile template failed to render."""

    exit_code = 11


class FetchError(MlboxError):
    """A model file could not be downloaded or failed verification."""

    exit_code = 12


class WheelhouseError(MlboxError):
    """Python packages for the image could not be resolved on the host."""

    exit_code = 13


class EngineError(MlboxError):
    """The Docker engine is unreachable or refused a request."""

    exit_code = 14


class BuildError(MlboxError):
    """A Dockerfile step failed during ``docker build``."""

    exit_code = 15


class PushError(MlboxError):
    """The registry refused a push."""

    exit_code = 16


class RunError(MlboxError):
    """A benchmark container could not be started or watched."""

    exit_code = 18


class BaseImageError(MlboxError):
    """``mlbox base`` could not bootstrap a base image."""

    exit_code = 17
