"""Exit codes of mlbox-bench, fixed so scripts can tell outcomes apart."""

from __future__ import annotations

EXIT_VALID = 0
EXIT_CRASH = 1  # an unexpected exception (a bug): Python's own code
EXIT_USAGE = 2  # bad flag, variable or value
EXIT_ERROR = 3  # the run could not happen: model, provider, output dir, LoadGen
EXIT_INVALID = 4  # LoadGen ran and judged the result INVALID
EXIT_INTERRUPTED = 130


class BenchError(Exception):
    """The benchmark cannot run; the message says why and what to do."""
