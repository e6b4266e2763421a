"""One error hierarchy for mlbox, each class with a fixed exit code.

The CLI's ``main`` is the only place these become messages; everything below it raises.
Exit codes 1 and 2 are left to Python and click (crash, usage error); ``EXIT_CODES``
is the one table of all of them (``mlbox --help`` and the README print it).
"""

from __future__ import annotations

from mlbox_bench import errors as bench
from mlbox_bench.errors import one_line as one_line  # one way to show a bad value, shared with the harness
from mlbox_bench.errors import quote as quote


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


class OutputError(MlboxError):
    """An output (--out, --plot) is unwritable, or holds files mlbox did not write (pass --force to replace them)."""

    exit_code = 25


# `mlbox run` and `mlbox bench` end with the benchmark's outcome. mlbox-bench's own codes
# 1-3 (what the image's entrypoint exits with) would mean something else here (1 doctor or
# crash, 2 usage, 3 another failure), so mlbox moves them to 21-23: one code, one meaning.
# (mlbox-bench code, mlbox code, meaning); 0, 4, 130 and 143 mean the same in both.
BENCH_OUTCOMES: tuple[tuple[int, int, str], ...] = (
    (bench.EXIT_VALID, 0, "Success; `mlbox run`/`mlbox bench`: the benchmark ran and LoadGen judged it VALID."),
    (bench.EXIT_INVALID, 4, "`mlbox run`/`mlbox bench`: LoadGen judged the run INVALID (its reason is in the log)."),
    (bench.EXIT_CRASH, 21, "`mlbox run`/`mlbox bench`: the benchmark crashed (a bug; its log has the traceback)."),
    (bench.EXIT_USAGE, 22, "`mlbox run`/`mlbox bench`: the benchmark refused its flags, variables or values."),
    (bench.EXIT_ERROR, 23, "`mlbox run`/`mlbox bench`: the benchmark could not run (model, provider, output dir...)."),
)
BENCH_OTHER = 24  # any other code below 128 (none is expected: the log says what happened)


def bench_outcome(code: int) -> int:
    """mlbox's exit code for a benchmark that exited with ``code`` (mlbox-bench's). Codes of
    128 and above mean a signal ended it, as they do for mlbox itself, and pass through."""
    if code >= 128:
        return code
    return next((ours for theirs, ours, _ in BENCH_OUTCOMES if theirs == code), BENCH_OTHER)


def exit_codes() -> list[tuple[int, str]]:
    """(code, meaning) for every exit of `mlbox`, in order: the one table of them."""
    errors = [(cls.exit_code, (cls.__doc__ or "").strip().splitlines()[0]) for cls in _subclasses(MlboxError)]
    fixed = [
        *((ours, meaning) for _, ours, meaning in BENCH_OUTCOMES),
        (1, "`mlbox doctor` found a problem; or an unexpected crash (a bug: run with --debug)."),
        (2, "Usage error: an unknown option or a bad value."),
        (MlboxError.exit_code, (MlboxError.__doc__ or "").strip().splitlines()[0]),
        (BENCH_OTHER, "`mlbox run`/`mlbox bench`: the benchmark exited with another code (its log says why)."),
        (130, "Interrupted (Ctrl-C); `mlbox run`: the benchmark was too."),
        (137, "`mlbox run`: the benchmark was killed (SIGKILL, often out of memory); 128+N: by signal N."),
        (143, "Terminated (SIGTERM); cleans up as Ctrl-C does."),
    ]
    return sorted(fixed + errors)


def _subclasses(cls: type[MlboxError]) -> list[type[MlboxError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]
