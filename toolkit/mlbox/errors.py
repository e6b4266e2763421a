"""One error hierarchy for mlbox, each class with a fixed exit code.

The CLI's ``main`` is the only place these become messages; everything below it raises.
Exit codes 1 and 2 are left to Python and click (crash, usage error); ``EXIT_CODES``
is the one table of all of them (``mlbox --help`` and the README print it).
"""

from __future__ import annotations


class MlboxError(Exception):
    """Any other failure mlbox detected (for example no result.json to tabulate)."""

    # Every subclass: ``str(err)`` says what failed; ``hint`` says what to do about it.
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
    """The container engine (Docker, or a Podman service) is unreachable or refused a request."""

    exit_code = 14


class BuildError(MlboxError):
    """A Dockerfile step failed during `docker build`."""

    exit_code = 15


class PushError(MlboxError):
    """The registry refused a push."""

    exit_code = 16


class BaseImageError(MlboxError):
    """`mlbox base` could not bootstrap a base image."""

    exit_code = 17


class RunError(MlboxError):
    """A benchmark container could not run: no results directory, no GPU runtime."""

    exit_code = 18


class ConfigError(MlboxError):
    """The user's mlbox configuration file is unreadable or names an unknown option."""

    exit_code = 19


class RecordError(MlboxError):
    """An image has no publish record for the registry, or a record or bake metadata file is unusable."""

    exit_code = 20


def exit_codes() -> list[tuple[int, str]]:
    """(code, meaning) for every exit of `mlbox`, in order: the one table of them."""
    errors = [(cls.exit_code, (cls.__doc__ or "").strip().splitlines()[0]) for cls in _subclasses(MlboxError)]
    fixed = [
        (0, "Success (`mlbox run`: the benchmark's own code: 0 VALID, 4 INVALID, ...)."),
        (1, "`mlbox doctor` found a problem; or an unexpected crash (a bug: run with --debug)."),
        (2, "Usage error: an unknown option or a bad value."),
        (MlboxError.exit_code, (MlboxError.__doc__ or "").strip().splitlines()[0]),
        (130, "Interrupted (Ctrl-C)."),
        (143, "Terminated (SIGTERM); cleans up as Ctrl-C does."),
    ]
    return sorted(fixed + errors)


def _subclasses(cls: type[MlboxError]) -> list[type[MlboxError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]
