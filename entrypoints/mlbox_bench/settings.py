"""mlbox-bench settings: one table of options, parsed once into a frozen object.

Each option is a flag, an ``MLBOX_*`` variable and, for the names MLCommons CM users
know, a ``CM_*`` alias. Precedence, highest first:

    flag > MLBOX_<NAME> > CM_* alias > --user-conf file > image default > built-in default

An image describes itself with ``MLBOX_DEFAULT_<NAME>`` variables (its Dockerfile's
ENV), so a user's ``MLBOX_*`` or ``CM_*`` always wins over what the image baked in.
Options left unset fall through to LoadGen's own mlperf.conf. Every value records
where it came from (``--print-settings`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("performance", "accuracy", "find-peak")
RUNNERS = ("inline", "threadpool", "threadpool+replication", "processpool")
EXECMODES = ("sequential", "parallel")
DEFAULT_PREFIX = "MLBOX_DEFAULT_"

# MLBOX_* names the host tool `mlbox` reads (each of its options has one); they may be
# set around `mlbox bench`. A test checks this list against the mlbox CLI.
HOST_VARIABLES = frozenset(
    "MLBOX_" + name
    for name in (
        "CATALOG", "CONFIG", "CACHE_DIR", "STATE_DIR", "DEBUG", "VARIANT", "BASE_IMAGE", "CUDA_FROM", "LOADGEN_FROM",
        "ALL", "JSON", "OUT", "MODEL_FILE", "MODEL_URL", "MIRROR", "PUSH", "REGISTRY", "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD", "PASSWORD_STDIN", "IMAGE", "RESULTS", "NETWORK", "SHM_SIZE", "CPUSET_CPUS", "READ_ONLY",
        "GPUS", "PLOT", "CUDA", "BASE_SUITE", "DEBIAN_MIRROR", "FORCE", "SET_DEFAULT", "ENGINE", "BAKE_FILE",
        "SCENARIOS", "MATRIX", "RUN_NAME", "NAMESPACE", "PARALLELISM", "GPUS_PER_POD", "CPU", "MEMORY", "STORAGE",
        "STORAGE_CLASS", "ACCESS_MODE", "PULL_SECRET",
    )
)  # fmt: skip


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


def _number(kind: Callable[[str], Any], *, low: float = 0, above: bool = True, high: float | None = None) -> Any:
    """A parser for numbers > low (or >= low when above=False), and < high if given."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            msg = f"{text!r} is not a {'whole number' if kind is int else 'number'}"
            raise SettingsError(msg) from None
        if value != value or value in (float("inf"), float("-inf")):  # NaN, inf
            msg = f"{text!r} is not a finite number"
            raise SettingsError(msg)
        if (above and value <= low) or (not above and value < low):
            msg = f"{text!r} must be {'greater than' if above else 'at least'} {low:g}"
            raise SettingsError(msg)
        if high is not None and value >= high:
            msg = f"{text!r} must be less than {high:g}"
            raise SettingsError(msg)
        return value

    return parse


def _text(text: str) -> str:
    if not text:
        msg = "must not be empty"
        raise SettingsError(msg)
    return text


def _name(text: str) -> str:
    # Used as a directory name in the submission layout: keep it to one path component.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        msg = f"{text!r} must be letters, digits, '.', '_' or '-' (at most 64, no '/')"
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
    conf_key: str | None = None  # the LoadGen user.conf key that sets the same thing

    @property
    def env(self) -> str:
        return "MLBOX_" + self.name.upper()

    @property
    def all_flags(self) -> tuple[str, ...]:
        return (f"--{self.name.replace('_', '-')}", *self.flags)


_positive_int = _number(int)
_positive_float = _number(float)

OPTIONS: tuple[Option, ...] = (
    # --- what to run ---------------------------------------------------------------
    Option("scenario", _choice(SCENARIOS), "LoadGen scenario", cm="CM_MLPERF_LOADGEN_SCENARIO", default="Offline"),
    Option(
        "mode",
        _choice(MODES),
        "performance, accuracy, or find-peak (Server: the highest target QPS whose run is VALID)",
        default="performance",
        conf_key="mode",
    ),
    Option("modelpath", _text, "model file (.onnx)", cm="CM_ML_MODEL_FILE_WITH_PATH"),
    Option("model", _text, "MLPerf model name for mlperf.conf lookups (resnet50, retinanet)", default="resnet50"),
    Option(
        "dataset",
        _text,
        "ImageNet-layout directory with val_map.txt (default: synthetic inputs shaped like the model's)",
    ),
    Option(
        "preprocessed_dir",
        _text,
        "cache of preprocessed dataset samples (.npy) (default: ~/.cache/mlbox-bench, else a temp dir)",
    ),
    # --- LoadGen test settings (unset: mlperf.conf decides) -------------------------
    Option(
        "duration",
        _positive_float,
        "minimum run time in seconds; also lowers the query count to what early stopping needs, "
        "so a short run can be VALID",
        conf_key="min_duration",
    ),
    Option(
        "target_qps",
        _positive_float,
        "Server: arrival rate; Offline: expected rate (calibrated when unset); MultiStream: expected rate",
        flags=("--target_qps",),
        conf_key="target_qps",
    ),
    Option(
        "target_latency",
        _positive_float,
        "Server: latency bound; SingleStream/MultiStream: expected query latency (calibrated when unset), in ms",
        conf_key="target_latency",
    ),
    Option(
        "latency_percentile",
        _number(float, high=100),
        "latency percentile the bound applies to, e.g. 99 (SingleStream/MultiStream/Server)",
        conf_key="target_latency_percentile",
    ),
    Option("min_query_count", _positive_int, "minimum number of queries", conf_key="min_query_count"),
    Option("max_query_count", _positive_int, "maximum number of queries", conf_key="max_query_count"),
    Option("samples", _positive_int, "samples in the query sample library", cm="CM_MLPERF_LOADGEN_SAMPLES"),
    Option(
        "performance_sample_count",
        _positive_int,
        "samples LoadGen keeps loaded in memory for performance runs",
        conf_key="performance_sample_count_override",
    ),
    Option("samples_per_query", _positive_int, "samples per query (MultiStream)", conf_key="samples_per_query"),
    Option("user_conf", _text, "a LoadGen user.conf (read once, after mlperf.conf)", flags=("--user_conf",)),
    # --- how samples are run ------------------------------------------------------
    Option(
        "max_batchsize",
        _positive_int,
        "largest batch per session run",
        flags=("--max_batchsize",),
        default=32,
    ),
    Option("runner", _choice(RUNNERS), "how samples are run", cm="CM_MLPERF_RUNNER", default="inline"),
    Option("concurrency", _positive_int, "worker count of the runner", cm="CM_MLPERF_CONCURRENCY", default=2),
    Option(
        "ep", _text, "onnxruntime execution provider", cm="CM_MLPERF_EXECUTION_PROVIDER", default="CPUExecutionProvider"
    ),
    Option(
        "execmode", _choice(EXECMODES), "onnxruntime execution mode", cm="CM_MLPERF_EXEC_MODE", default="sequential"
    ),
    Option(
        "intraop",
        _number(int, above=False),
        "onnxruntime intra-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTRAOP",
        default=0,
    ),
    Option(
        "interop",
        _number(int, above=False),
        "onnxruntime inter-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTEROP",
        default=0,
    ),
    # --- output -----------------------------------------------------------------
    Option(
        "output_dir",
        _text,
        "where LoadGen logs and result.json go (created if missing)",
        flags=("--output_dir",),
        cm="CM_MLPERF_OUTPUT_DIR",
        default="results",
    ),
    Option(
        "submission_layout",
        _bool,
        "write MLPerf's results/<system>/<model>/<Scenario>/... layout under the output dir",
        is_flag=True,
        default=False,
    ),
    Option("system_name", _name, "system name in the submission layout", default="mlbox"),
    Option("allow_invalid", _bool, "exit 0 even when LoadGen says INVALID", is_flag=True, default=False),
    # --- what the image is (set by the image as MLBOX_DEFAULT_*; recorded in result.json)
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
USER_CONF_MODES = {"1": "accuracy", "2": "performance", "3": "find-peak"}


@dataclass(frozen=True)
class Settings:
    scenario: str
    mode: str
    modelpath: str | None
    model: str
    dataset: str | None
    preprocessed_dir: str | None
    duration: float | None
    target_qps: float | None
    target_latency: float | None
    latency_percentile: float | None
    min_query_count: int | None
    max_query_count: int | None
    samples: int | None
    performance_sample_count: int | None
    samples_per_query: int | None
    user_conf: str | None
    max_batchsize: int
    runner: str
    concurrency: int
    ep: str
    execmode: str
    intraop: int
    interop: int
    output_dir: str
    submission_layout: bool
    system_name: str
    allow_invalid: bool
    weights: str
    device: str
    backend: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def set_by_user(self, name: str) -> bool:
        """True when a flag or variable set it: mlbox-bench must apply it on top of
        mlperf.conf and user.conf (a user.conf value is already in LoadGen's settings)."""
        return getattr(self, name) is not None and not self.source(name).startswith(("user.conf", "default"))

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            f.name: {"value": getattr(self, f.name), "source": self.source(f.name)}
            for f in fields(self)
            if f.name != "sources"
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbox-bench",
        description="Run an MLPerf Inference LoadGen benchmark with onnxruntime. "
        "Every option is also an MLBOX_<NAME> environment variable; CM_* names in brackets are aliases. "
        "Precedence: flag > MLBOX_* > CM_* > --user-conf > image default (MLBOX_DEFAULT_*) > default. "
        "@FILE stands for the arguments in FILE, one per line.",
        argument_default=argparse.SUPPRESS,  # absent flags stay absent: env and defaults come next
        # A Kubernetes Indexed Job gives each pod the same command line: `@/etc/mlbox/$(INDEX)`
        # lets each one read its own cell of the matrix without a shell in between.
        fromfile_prefix_chars="@",
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

    def resolve(opt: Option, conf: Mapping[str, str]) -> None:
        candidates = [(f"flag {opt.all_flags[0]}", args.get(opt.name)), (opt.env, env.get(opt.env))]
        if opt.cm:
            candidates.append((opt.cm, env.get(opt.cm)))
        if opt.conf_key and opt.conf_key in conf:
            candidates.append((f"user.conf {values['user_conf']}", _from_conf(opt, conf[opt.conf_key])))
        candidates.append((DEFAULT_PREFIX + opt.name.upper() + " (image)", env.get(DEFAULT_PREFIX + opt.name.upper())))
        for source, raw in candidates:
            if raw is None:
                continue
            try:
                values[opt.name] = opt.parse(raw)
            except SettingsError as err:
                msg = f"{source}: {err}"
                raise SettingsError(msg) from None
            sources[opt.name] = source
            return
        values[opt.name] = opt.default

    # user.conf entries are looked up by model and scenario, so those two come first.
    for name in ("model", "scenario", "user_conf"):
        resolve(BY_NAME[name], {})
    conf = read_user_conf(values["user_conf"], values["model"], values["scenario"]) if values["user_conf"] else {}
    for opt in OPTIONS:
        if opt.name not in values:
            resolve(opt, conf)
    settings = Settings(**values, sources=sources)
    _check_combinations(settings)
    return settings, print_only


def _from_conf(opt: Option, raw: str) -> str:
    """user.conf units -> ours: min_duration is in ms (ours: s); mode is LoadGen's number."""
    if opt.name == "duration":
        try:
            return str(float(raw) / 1000)
        except ValueError:
            msg = f"user.conf: min_duration = {raw} is not a number of milliseconds"
            raise SettingsError(msg) from None
    if opt.name == "mode":
        if raw not in USER_CONF_MODES:
            msg = f"user.conf: mode = {raw} is not supported (1 accuracy, 2 performance, 3 find-peak)"
            raise SettingsError(msg)
        return USER_CONF_MODES[raw]
    return raw


def read_user_conf(path: str, model: str, scenario: str) -> dict[str, str]:
    """The keys a LoadGen user.conf sets for this model and scenario, looked up the way
    LoadGen does: model.Scenario.key, then *.Scenario.key, model.*.key, *.*.key.

    mlbox-bench reads the file only to know which settings it sets (for precedence and
    --print-settings); LoadGen itself still loads it, once, through FromConfig.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        msg = f"--user-conf {path}: cannot read it ({err.strerror})"
        raise SettingsError(msg) from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 3 or words[1] != "=":
            # LoadGen silently ignores `key=value` without spaces: refuse it instead.
            msg = f"--user-conf {path} line {number}: expected 'model.scenario.key = value', got {line.strip()!r}"
            raise SettingsError(msg)
        entries[words[0]] = words[2]
    found: dict[str, str] = {}
    keys = {k.rsplit(".", 1)[-1] for k in entries}
    for key in keys:
        for m, sc in ((model, scenario), ("*", scenario), (model, "*"), ("*", "*")):
            if f"{m}.{sc}.{key}" in entries:
                found[key] = entries[f"{m}.{sc}.{key}"]
                break
    return found


def _check_combinations(s: Settings) -> None:
    if s.mode == "find-peak" and s.scenario != "Server":
        msg = (
            f"--mode find-peak searches Server's target QPS; it does not apply to {s.scenario} (use --scenario Server)"
        )
        raise SettingsError(msg)
    if s.mode == "find-peak" and s.submission_layout:
        msg = "--submission-layout: a find-peak search is not a submission run; run --mode performance at the peak"
        raise SettingsError(msg)
    if s.samples is not None and s.performance_sample_count is not None and s.performance_sample_count > s.samples:
        msg = (
            f"--performance-sample-count {s.performance_sample_count} is larger than --samples {s.samples}: "
            "LoadGen cannot keep more samples loaded than the library has"
        )
        raise SettingsError(msg)
    if s.min_query_count is not None and s.max_query_count is not None and s.max_query_count < s.min_query_count:
        msg = f"--max-query-count {s.max_query_count} is below --min-query-count {s.min_query_count}"
        raise SettingsError(msg)


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    known = {o.env for o in OPTIONS} | {DEFAULT_PREFIX + o.name.upper() for o in OPTIONS} | HOST_VARIABLES
    for name in sorted(env):
        if name.startswith("MLBOX_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            guess = f"; did you mean {close[0]}?" if close else ""
            msg = f"unknown environment variable {name}{guess}"
            raise SettingsError(msg)
