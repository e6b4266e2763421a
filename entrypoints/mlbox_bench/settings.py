"""mlbox-bench settings: one table of options, parsed once into a frozen object.

Each option is a flag, an ``MLBOX_*`` variable and, for the names MLCommons CM users
know, a ``CM_*`` alias. Precedence: flag > MLBOX_* > CM_* > image default (what the
image's ENV sets is read as a default) > LoadGen's mlperf.conf (when left unset).
Every value records where it came from (``--print-settings`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("performance", "accuracy")
RUNNERS = ("inline", "threadpool", "threadpool+replication")
EXECMODES = ("sequential", "parallel")

# MLBOX_* names the host tool `mlbox` reads; they may be set around `mlbox bench`.
HOST_VARIABLES = frozenset(
    {
        "MLBOX_CATALOG",
        "MLBOX_CACHE_DIR",
        "MLBOX_DEBUG",
        "MLBOX_VARIANT",
        "MLBOX_BASE_IMAGE",
        "MLBOX_MODEL_FILE",
        "MLBOX_MODEL_URL",
        "MLBOX_BASE_SUITE",
        "MLBOX_DEBIAN_MIRROR",
    }
)


class SettingsError(ValueError):
    """A flag or variable has a bad value or an unknown name."""


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    lowered = {c.lower(): c for c in choices}

    def parse(text: str) -> str:
        # Accept any case: LoadGen's config lookups are case-sensitive, so normalise here.
        if text.lower() in lowered:
            return lowered[text.lower()]
        close = difflib.get_close_matches(text, choices, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        msg = f"{text!r} is not one of {', '.join(choices)}{guess}"
        raise SettingsError(msg)

    return parse


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            msg = f"{text!r} is not a {'whole number' if kind is int else 'number'}"
            raise SettingsError(msg) from None
        if value <= 0:
            msg = f"{text!r} must be greater than 0"
            raise SettingsError(msg)
        return value

    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise SettingsError(msg) from None
    if value < 0:
        msg = f"{text!r} must be 0 or more"
        raise SettingsError(msg)
    return value


def _text(text: str) -> str:
    if not text:
        msg = "must not be empty"
        raise SettingsError(msg)
    return text


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    msg = f"{text!r} is not a boolean (1/0, true/false, yes/no)"
    raise SettingsError(msg)


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    help: str
    flags: tuple[str, ...] = ()
    cm: str | None = None
    default: Any = None
    is_flag: bool = False

    @property
    def env(self) -> str:
        return "MLBOX_" + self.name.upper()

    @property
    def all_flags(self) -> tuple[str, ...]:
        return (f"--{self.name.replace('_', '-')}", *self.flags)


OPTIONS: tuple[Option, ...] = (
    Option("scenario", _choice(SCENARIOS), "LoadGen scenario", cm="CM_MLPERF_LOADGEN_SCENARIO", default="Offline"),
    Option("mode", _choice(MODES), "performance or accuracy run", default="performance"),
    Option("modelpath", _text, "model file (.onnx)", cm="CM_ML_MODEL_FILE_WITH_PATH"),
    Option("model", _text, "MLPerf model name for mlperf.conf lookups (e.g. resnet50)", default="resnet50"),
    Option(
        "output_dir",
        _text,
        "where LoadGen logs and result.json go",
        flags=("--output_dir",),
        cm="CM_MLPERF_OUTPUT_DIR",
        default="results",
    ),
    Option(
        "duration",
        _positive(float),
        "minimum run time in seconds (sets LoadGen min_duration and query counts for a short VALID run)",
    ),
    Option(
        "target_qps",
        _positive(float),
        "Server target QPS / Offline expected QPS (Offline calibrates it when unset)",
        flags=("--target_qps",),
    ),
    Option("target_latency", _positive(float), "latency bound in milliseconds (Server)"),
    Option("samples", _positive(int), "samples in the query sample library", cm="CM_MLPERF_LOADGEN_SAMPLES"),
    Option(
        "max_batchsize",
        _positive(int),
        "largest batch per session run (Offline)",
        flags=("--max_batchsize",),
        default=32,
    ),
    Option("runner", _choice(RUNNERS), "how samples are run", cm="CM_MLPERF_RUNNER", default="inline"),
    Option("concurrency", _positive(int), "worker count of the runner", cm="CM_MLPERF_CONCURRENCY", default=2),
    Option(
        "ep", _text, "onnxruntime execution provider", cm="CM_MLPERF_EXECUTION_PROVIDER", default="CPUExecutionProvider"
    ),
    Option(
        "execmode", _choice(EXECMODES), "onnxruntime execution mode", cm="CM_MLPERF_EXEC_MODE", default="sequential"
    ),
    Option(
        "intraop",
        _non_negative_int,
        "onnxruntime intra-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTRAOP",
        default=0,
    ),
    Option(
        "interop",
        _non_negative_int,
        "onnxruntime inter-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTEROP",
        default=0,
    ),
    Option("user_conf", _text, "a LoadGen user.conf (loaded once, after mlperf.conf)", flags=("--user_conf",)),
    Option("allow_invalid", _bool, "exit 0 even when LoadGen says INVALID", is_flag=True, default=False),
    # Set by the image (ENV) to describe itself; recorded in result.json.
    Option(
        "weights",
        _choice(("published", "synthetic")),
        "weights kind of the model (set by the image)",
        default="published",
    ),
    Option("device", _text, "device of the image (set by the image)", default="cpu"),
    Option("backend", _choice(("onnxruntime",)), "inference backend", default="onnxruntime"),
)
BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    scenario: str
    mode: str
    modelpath: str | None
    model: str
    output_dir: str
    duration: float | None
    target_qps: float | None
    target_latency: float | None
    samples: int | None
    max_batchsize: int
    runner: str
    concurrency: int
    ep: str
    execmode: str
    intraop: int
    interop: int
    user_conf: str | None
    allow_invalid: bool
    weights: str
    device: str
    backend: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            f.name: {"value": getattr(self, f.name), "source": self.sources.get(f.name, "default")}
            for f in fields(self)
            if f.name != "sources"
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbox-bench",
        description="Run an MLPerf Inference LoadGen benchmark with onnxruntime. "
        "Every option is also an MLBOX_<NAME> environment variable; CM_* names in brackets are aliases.",
        argument_default=argparse.SUPPRESS,  # absent flags stay absent: env and defaults come next
    )
    for opt in OPTIONS:
        extra = f" [env {opt.env}" + (f", {opt.cm}" if opt.cm else "") + "]"
        default = f" (default: {opt.default})" if opt.default not in (None, False) else ""
        if opt.is_flag:
            parser.add_argument(*opt.all_flags, dest=opt.name, action="store_const", const="1", help=opt.help + extra)
        else:
            parser.add_argument(
                *opt.all_flags, dest=opt.name, metavar=opt.name.upper(), help=opt.help + default + extra
            )
    parser.add_argument(
        "--print-settings", action="store_true", help="print the settings as JSON, with where each came from, and exit"
    )
    return parser


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[Settings, bool]:
    """Return (settings, print_only). Raises SettingsError naming the flag or variable."""
    env = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(list(argv)))
    print_only = bool(args.pop("print_settings", False))
    _refuse_unknown_variables(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        candidates = [(f"flag {opt.all_flags[0]}", args.get(opt.name)), (opt.env, env.get(opt.env))]
        if opt.cm:
            candidates.append((opt.cm, env.get(opt.cm)))
        for source, raw in candidates:
            if raw is None:
                continue
            try:
                values[opt.name] = opt.parse(raw)
            except SettingsError as err:
                msg = f"{source}: {err}"
                raise SettingsError(msg) from None
            sources[opt.name] = source
            break
        else:
            values[opt.name] = opt.default
    return Settings(**values, sources=sources), print_only


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    known = {o.env for o in OPTIONS} | HOST_VARIABLES
    for name in sorted(env):
        if name.startswith("MLBOX_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            guess = f"; did you mean {close[0]}?" if close else ""
            msg = f"unknown environment variable {name}{guess}"
            raise SettingsError(msg)
