"""Exit codes of mlbox-bench, fixed so scripts can tell outcomes apart; and the
"did you mean" every refusal of a misspelt name ends with (mlbox's too)."""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable

EXIT_VALID = 0
EXIT_CRASH = 1  # an unexpected exception (a bug): Python's own code
EXIT_USAGE = 2  # bad flag, variable or value
EXIT_ERROR = 3  # the run could not happen: model, provider, output dir, LoadGen
EXIT_INVALID = 4  # LoadGen ran and judged the result INVALID
EXIT_INTERRUPTED = 130


class BenchError(Exception):
    """The benchmark cannot run; the message says why and what to do."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop the run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """'; did you mean 'closest'?' for a misspelt name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def quote(value: object, limit: int = 80) -> str:
    """A bad value as a message shows it: its repr() (control characters escaped, so one
    line), cut to ``limit`` characters with an ellipsis (a 100k-character value stays legible)."""
    return cut(repr(value), limit)


def one_line(text: str, limit: int = 80) -> str:
    """Text from elsewhere (an exception's message) as one line: quote() without the quotes."""
    return cut(repr(text)[1:-1], limit)


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` - 3 characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
