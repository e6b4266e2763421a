"""What an mlbox-bench option is, and the value parsers its rows use.

The settings table (``mlbox_bench.settings``) is composed of its own rows and each backend
module's ``OPTIONS``: this module is what both declare rows with, so a backend module never
imports settings (settings imports the backends).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlbox_bench.errors import did_you_mean, quote

DEFAULT_PREFIX = "MLBOX_DEFAULT_"

# Upper bounds, far beyond any real run, low enough that no value overflows LoadGen's
# integer fields or asks for memory that cannot exist.
MAX_SECONDS = 7 * 24 * 3600  # a week
MAX_LATENCY_MS = 3_600_000  # an hour
MAX_QPS = 10_000_000
MAX_QUERIES = 100_000_000
MAX_SAMPLES = 10_000_000
MAX_BATCH = 65_536
MAX_THREADS = 1_024  # workers, and each library's thread counts
MAX_WINDOW_MS = 1_000


class SettingsError(ValueError):
    """A flag or variable has a bad value or an unknown name."""


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    help: str
    flags: tuple[str, ...] = ()  # other spellings with the same meaning and unit
    cm: str | None = None  # the MLCommons CM variable; MLC_* (its successor) is derived
    default: Any = None
    is_flag: bool = False
    # The backends that read it (none: every run). No row spells it: settings fills it in
    # from the backend modules that declare the row or name it in their SHARED_OPTIONS.
    owner: tuple[str, ...] = ()
    variable: str | None = None  # its MLBOX_* variable when MLBOX_<NAME> is the host tool's

    @property
    def env(self) -> str:
        return self.variable or "MLBOX_" + self.name.upper()

    @property
    def image_env(self) -> str:
        return DEFAULT_PREFIX + self.name.upper()

    @property
    def aliases(self) -> tuple[str, ...]:
        """Alias variables, strongest first: MLCommons' current automation uses MLC_*."""
        return ("MLC_" + self.cm.removeprefix("CM_"), self.cm) if self.cm else ()

    @property
    def all_flags(self) -> tuple[str, ...]:
        return (f"--{self.name.replace('_', '-')}", *self.flags)


def choice(choices: Sequence[str]) -> Callable[[str], str]:
    lowered = {c.lower(): c for c in choices}

    def parse(text: str) -> str:
        # Accept any case: LoadGen's config lookups are case-sensitive, so normalise here.
        if text.lower() in lowered:
            return lowered[text.lower()]
        msg = f"{quote(text)} is not one of {', '.join(choices)}{did_you_mean(text, choices)}"
        raise SettingsError(msg)

    return parse


class Number:
    """A parser for numbers in a range: > low (>= low when above=False), < below and <=
    most when given. Every numeric option has an upper bound, checked before anything is
    allocated or handed to LoadGen; ``range`` says it in --help."""

    def __init__(
        self,
        kind: type[int] | type[float],
        *,
        low: float = 0,
        above: bool = True,
        below: float | None = None,
        most: float | None = None,
    ) -> None:
        self.kind, self.low, self.above, self.below, self.most = kind, low, above, below, most

    @property
    def range(self) -> str:
        if self.kind is int and self.most is not None:
            return f"{int(self.low) + (1 if self.above else 0):,} to {int(self.most):,}"
        lower = f"{'above' if self.above else 'at least'} {self.low:g}"
        upper = f"below {self.below:g}" if self.below is not None else f"at most {_figure(self.most)}"
        return f"{lower}, {upper}"

    def __call__(self, text: str) -> Any:
        kind = self.kind
        try:
            value = kind(text)
        except ValueError:
            msg = f"{quote(text, 40)} is not a {'whole number' if kind is int else 'number'}"
            raise SettingsError(msg) from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN, inf
            msg = f"{quote(text, 40)} is not a finite number"
            raise SettingsError(msg)
        low = self.low
        below_low = value <= low if self.above else value < low
        above_high = (self.below is not None and value >= self.below) or (self.most is not None and value > self.most)
        if below_low or above_high:
            msg = f"{quote(text, 40)} is out of range: {self.range}"
            raise SettingsError(msg)
        return value


def _figure(value: float | None) -> str:
    """10000000.0 -> '10,000,000'; 3600.5 -> '3,600.5'."""
    if value is None:
        return "any"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


thread_count = Number(int, above=False, most=MAX_THREADS)  # 0: the library decides


def nonempty(text: str) -> str:
    if not text:
        msg = "must not be empty"
        raise SettingsError(msg)
    return text


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    msg = f"{quote(text)} is not a boolean (1/0, true/false, yes/no)"
    raise SettingsError(msg)
