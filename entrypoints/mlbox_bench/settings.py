"""mlbox-bench settings: one table of options (this module's rows and each backend
module's OPTIONS), parsed once into a frozen object.

Each option is a flag, an ``MLBOX_*`` variable (``MLBOX_<NAME>``, except the three whose
``MLBOX_<NAME>`` the host tool reads with another meaning: see HOST_VARIABLES) and, for the
names MLCommons automation users know, an ``MLC_*`` and a ``CM_*`` alias. MLCommons' reference app's flags (``--qps``,
``--time``, ``--accuracy``, ...) are accepted with the reference's meaning and units.
Precedence, highest first:

    flag > MLBOX_<NAME> > MLC_* > CM_* > --user-conf file > image default > implied > default

An image describes itself with ``MLBOX_DEFAULT_<NAME>`` variables (its Dockerfile's
ENV), so a user's ``MLBOX_*`` or ``CM_*`` always wins over what the image baked in.
Options left unset fall through to LoadGen's own mlperf.conf. Every value records
where it came from (``--print-settings`` shows it).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mlbox_bench import fields as lg_fields
from mlbox_bench import tasks
from mlbox_bench.backends import BACKENDS, FORMATS, PREPROCESSING, guess_format
from mlbox_bench.errors import BenchError, did_you_mean, quote
from mlbox_bench.fields import SCENARIOS
from mlbox_bench.layout import Where, scenario_dir
from mlbox_bench.mlperf import DEFAULT_ROUND, SUBMISSION_ROUNDS, conf_key, conf_name, find, task_of

# The rows' vocabulary lives in mlbox_bench.options, shared with the backend modules (which
# cannot import this module: it imports them), under the private names the rows use here.
# Option and SettingsError are re-exported: the CLI, the host tool and tests import them here.
from mlbox_bench.options import (
    MAX_BATCH,
    MAX_LATENCY_MS,
    MAX_QPS,
    MAX_QUERIES,
    MAX_SAMPLES,
    MAX_SECONDS,
    MAX_THREADS,
    MAX_WINDOW_MS,
)
from mlbox_bench.options import Number as _Number
from mlbox_bench.options import Option as Option
from mlbox_bench.options import SettingsError as SettingsError
from mlbox_bench.options import boolean as _bool
from mlbox_bench.options import choice as _choice
from mlbox_bench.options import nonempty as _text

MODES = ("performance", "accuracy", "find-peak")
RUNNERS = ("inline", "threadpool", "threadpool+replication", "processpool")
COMPLIANCE_TESTS = ("TEST01", "TEST04")
DIVISIONS = ("closed", "open")
LAYOUTS = ("NCHW", "NHWC")
MODEL_FILE_SUFFIXES = (".onnx", ".pb", ".pt", ".pth", ".tflite", ".savedmodel", ".plan", ".engine")

# MLBOX_* names the host tool `mlbox` reads (each of its options has one); they may be
# set around `mlbox bench`, which runs this harness in the host tool's environment, so the
# harness reads none of them (MODEL, DEVICE and BACKEND pick catalog rows there: the
# harness's options of those names have variables of their own). A test checks this list
# against the mlbox CLI.
# How alike (difflib's ratio) an MLC_*/CM_* name must be to one the harness reads to count
# as its typo: CM_MLPERF_LOADGEN_SCENARO is (0.98); CM_MLPERF_EXECUTION_MODE, a name of
# CM's own beside the harness's CM_MLPERF_EXEC_MODE, is not (0.88).
NEAR_MISS = 0.9
# Names MLCommons' CM scripts set themselves that are near misses of the harness's: the
# mlperf app's list of scenarios and modes, and the seed scripts' documented variables.
CM_OWN_VARIABLES = frozenset(
    prefix + name
    for prefix in ("CM_", "MLC_")
    for name in (
        "MLPERF_LOADGEN_SCENARIOS",
        "MLPERF_LOADGEN_MODE",
        "MLPERF_LOADGEN_MODES",
        "MLPERF_EXECUTION_MODE",
        "MLPERF_DEVICE",
        "ML_MODEL_FILE",
        "ML_MODEL_PATH",
    )
)

HOST_VARIABLES = frozenset(
    "MLBOX_" + name
    for name in (
        "MODEL",
        "DEVICE",
        "BACKEND",
        "CATALOG",
        "CONFIG",
        "CACHE_DIR",
        "STATE_DIR",
        "DEBUG",
        "VARIANT",
        "BASE_IMAGE",
        "CUDA_FROM",
        "LOADGEN_FROM",
        "ALL",
        "JSON",
        "OUT",
        "MODEL_FILE",
        "MODEL_URL",
        "MIRROR",
        "PUSH",
        "REGISTRY",
        "REGISTRY_USERNAME",
        "REGISTRY_PASSWORD",
        "PASSWORD_STDIN",
        "IMAGE",
        "RESULTS",
        "NETWORK",
        "SHM_SIZE",
        "CPUSET_CPUS",
        "READ_ONLY",
        "GPUS",
        "PLOT",
        "CUDA",
        "BASE_SUITE",
        "DEBIAN_MIRROR",
        "FORCE",
        "FORCE_OUT",
        "SET_DEFAULT",
        "ENGINE",
        "BAKE_FILE",
        "SCENARIOS",
        "MATRIX",
        "RUN_NAME",
        "NAMESPACE",
        "PARALLELISM",
        "GPUS_PER_POD",
        "CPU",
        "MEMORY",
        "STORAGE",
        "STORAGE_CLASS",
        "ACCESS_MODE",
        "PULL_SECRET",
    )
)


def _name(text: str) -> str:
    # Used as a directory name in the submission layout: keep it to one path component.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        msg = f"{quote(text)} must be letters, digits, '.', '_' or '-' (at most 64, no '/')"
        raise SettingsError(msg)
    return text


def _model_name(text: str) -> str:
    """An MLPerf model name; a file path here is a mistake LoadGen would not notice (it
    would silently fall back to generic mlperf.conf rules)."""
    if "/" in text or os.sep in text or text.lower().endswith(MODEL_FILE_SUFFIXES):
        msg = (
            f"{quote(text)} looks like a model file; this is the MLPerf model name that picks mlperf.conf's rules "
            "(resnet50, retinanet, ...): pass the file with --modelpath"
        )
        raise SettingsError(msg)
    return _name(text)


def _task(text: str) -> str:
    """A task mlbox-bench knows (any case): its own (tasks.TASKS), or one registered in
    this process."""
    for name in tasks.known():
        if text.casefold() == name.casefold():
            return name
    msg = f"{quote(text, 40)} is not a task mlbox-bench knows ({', '.join(tasks.known())})"
    raise SettingsError(msg)


def _shape(text: str) -> tuple[int, ...]:
    """`3,224,224` -> (3, 224, 224): one sample's input shape, without the batch."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        msg = f"{quote(text)} is not a shape: give positive whole numbers, e.g. 3,224,224"
        raise SettingsError(msg)
    return dims


def _seconds_to_ms(text: str) -> str:
    """--max-latency is in seconds (the reference app's unit); target_latency in ms."""
    return repr(_Number(float, most=MAX_LATENCY_MS / 1000)(text) * 1000.0)


@dataclass(frozen=True)
class Alias:
    """A flag of MLCommons' reference app that sets one or more options in its own way."""

    flag: str
    help: str
    sets: tuple[tuple[str, Callable[[str], str]], ...]  # (option, value text -> option text)
    takes_value: bool = True
    implies: tuple[tuple[str, str], ...] = ()  # (option, value) when nothing else sets it


def _same(text: str) -> str:
    return text


def _const(value: str) -> Callable[[str], str]:
    return lambda _: value


_seconds = _Number(float, most=MAX_SECONDS)
# The rows every run reads. Each backend module declares its own (its OPTIONS); the table
# lists them between these two parts, so --help reads: what and how to run, each backend's
# options, then where results go.
_RUN_OPTIONS: tuple[Option, ...] = (
    # --- what to run ---------------------------------------------------------------
    Option("scenario", _choice(SCENARIOS), "LoadGen scenario", cm="CM_MLPERF_LOADGEN_SCENARIO", default="Offline"),
    Option(
        "mode",
        _choice(MODES),
        "performance, accuracy, or find-peak (Server: the highest target QPS whose run is VALID)",
        default="performance",
    ),
    Option(
        "modelpath",
        _text,
        "model file (.onnx, .pt, .pt2, .pth, .pb, .tflite) or SavedModel directory",
        cm="CM_ML_MODEL_FILE_WITH_PATH",
    ),
    Option(
        "model_format",
        _choice(tuple(FORMATS)),
        "how the model file is stored; it picks the backend and the preprocessing (default: from the file)",
    ),
    Option(
        "preprocessing",
        _choice(PREPROCESSING),
        "dataset preprocessing: mlperf (the reference's: means subtracted) or torchvision (/255, mean/std) "
        "(default: the model format's)",
    ),
    Option(
        "input_shape", _shape, "one sample's input shape when the file does not say, e.g. 3,224,224 (NHWC: 224,224,3)"
    ),
    Option(
        "model",
        _model_name,
        "MLPerf model name for mlperf.conf's rules (resnet50 or resnet, retinanet); not a file",
        flags=("--model-name",),
        default="resnet50",
        variable="MLBOX_MLPERF_MODEL",
    ),
    Option(
        "task",
        _task,
        "the model's task (default: the MLPerf model's: resnet50 classification, retinanet detection)",
    ),
    Option(
        "dataset",
        _text,
        "ImageNet-layout directory with val_map.txt (default: synthetic inputs shaped like the model's)",
        flags=("--dataset-path",),
    ),
    Option(
        "preprocessed_dir",
        _text,
        "cache of preprocessed dataset samples (.npy) (default: ~/.cache/mlbox-bench, else a temp dir)",
    ),
    Option(
        "data_format",
        _choice(LAYOUTS),
        "image layout of the preprocessed samples, NCHW or NHWC (default: read from the model's input)",
    ),
    # --- LoadGen test settings (unset: mlperf.conf decides) -------------------------
    Option(
        "duration",
        _seconds,
        "minimum run time in seconds; also lowers the query count to what early stopping needs, "
        "so a short run can be VALID",
        flags=("--loadgen_duration_sec",),
        cm="CM_MLPERF_LOADGEN_DURATION_SEC",
    ),
    Option("max_duration", _seconds, "maximum run time in seconds (LoadGen stops issuing then)"),
    Option(
        "target_qps",
        _Number(float, most=MAX_QPS),
        "Server: arrival rate; Offline: expected rate (calibrated when unset)",
        flags=("--target_qps", "--qps", "--loadgen_expected_qps"),
        cm="CM_MLPERF_LOADGEN_EXPECTED_QPS",
    ),
    Option(
        "target_latency",
        _Number(float, most=MAX_LATENCY_MS),
        "Server: latency bound; SingleStream/MultiStream: expected query latency (calibrated when unset), in ms",
    ),
    Option(
        "latency_percentile",
        _Number(float, below=100),
        "latency percentile the bound applies to, e.g. 99 (SingleStream/MultiStream/Server)",
    ),
    Option("min_query_count", _Number(int, most=MAX_QUERIES), "minimum number of queries"),
    Option("max_query_count", _Number(int, most=MAX_QUERIES), "maximum number of queries"),
    Option(
        "samples", _Number(int, most=MAX_SAMPLES), "samples in the query sample library", cm="CM_MLPERF_LOADGEN_SAMPLES"
    ),
    Option(
        "performance_sample_count",
        _Number(int, most=MAX_SAMPLES),
        "samples LoadGen keeps loaded in memory for performance runs",
    ),
    Option("samples_per_query", _Number(int, most=MAX_BATCH), "samples per query (MultiStream)"),
    Option("user_conf", _text, "a LoadGen user.conf (read once, after mlperf.conf)", flags=("--user_conf",)),
    Option(
        "audit_conf",
        _text,
        "a LoadGen audit.config for this run (copied into the run's directory; ./audit.config is never read)",
        flags=("--audit_conf",),
    ),
    Option(
        "compliance",
        _choice(COMPLIANCE_TESTS),
        "run this MLPerf compliance test with its official audit settings (TEST01, TEST04)",
    ),
    # --- how samples are run ------------------------------------------------------
    Option(
        "max_batchsize",
        _Number(int, most=MAX_BATCH),
        "largest batch per session run",
        flags=("--max_batchsize",),
        default=32,
    ),
    Option("runner", _choice(RUNNERS), "how samples are run", cm="CM_MLPERF_RUNNER", default="inline"),
    Option(
        "tune",
        _choice(("auto", "off")),
        "auto: on a GPU, pick the runner, workers and batch size the user left open in a short search "
        "(result.json says what was picked and the flags that reproduce it); off: run exactly what is asked",
        default="auto",
    ),
    Option(
        "batch_window",
        _Number(float, above=False, most=MAX_WINDOW_MS),
        "Server: how long (ms) a worker may wait for more queries to batch with the first one "
        "(default: none on the CPU; on a GPU a tenth of the latency bound, at most 2 ms)",
    ),
    Option(
        "concurrency",
        _Number(int, most=MAX_THREADS),
        "worker count of the runner",
        cm="CM_MLPERF_CONCURRENCY",
        default=2,
    ),
)
_OUTPUT_OPTIONS: tuple[Option, ...] = (
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
        "write an MLPerf submission tree under OUTPUT_DIR/submission (see README) and each run under OUTPUT_DIR/runs",
        is_flag=True,
        default=False,
    ),
    Option("system_name", _name, "system name in the submission layout", default="mlbox"),
    Option("submitter", _name, "submitting organisation in the submission layout", default="mlbox"),
    Option("division", _choice(DIVISIONS), "MLPerf division in the submission layout", default="closed"),
    Option(
        "submission_round",
        _choice(SUBMISSION_ROUNDS),
        "MLPerf Inference round whose submission checker the layout is written for: it names the model's "
        "directory (resnet) and refuses a model the round does not have",
        default=DEFAULT_ROUND,
    ),
    Option("allow_invalid", _bool, "exit 0 even when LoadGen says INVALID", is_flag=True, default=False),
    # --- what the image is (set by the image as MLBOX_DEFAULT_*; recorded in result.json)
    Option(
        "weights",
        _choice(("published", "synthetic")),
        "weights kind of the model (set by the image)",
        default="published",
    ),
    Option(
        "device",
        _choice(("cpu", "cuda")),
        "device of the image (set by the image); pytorch and tensorflow run on it (tflite: cpu only)",
        default="cpu",
        variable="MLBOX_BENCH_DEVICE",
    ),
    Option(
        "backend",
        _choice(BACKENDS),
        "inference backend (default: the model format's)",
        cm="CM_MLPERF_BACKEND",
        variable="MLBOX_BENCH_BACKEND",
    ),
)


def _backend_options() -> tuple[Option, ...]:
    """Every backend module's OPTIONS, in BACKENDS order, each row recording the backends
    that read it: the module that declares it and any that name it in SHARED_OPTIONS."""
    declared: dict[str, tuple[Option, ...]] = {}
    readers: dict[str, list[str]] = {}
    for backend in BACKENDS:
        # Importing a backend module loads no inference library: it imports its own lazily.
        module = importlib.import_module(f"mlbox_bench.backends.{backend}")
        declared[backend] = module.OPTIONS
        for name in (*(o.name for o in module.OPTIONS), *getattr(module, "SHARED_OPTIONS", ())):
            readers.setdefault(name, []).append(backend)
    return tuple(replace(opt, owner=tuple(readers[opt.name])) for rows in declared.values() for opt in rows)


OPTIONS: tuple[Option, ...] = (*_RUN_OPTIONS, *_backend_options(), *_OUTPUT_OPTIONS)
BY_NAME = {o.name: o for o in OPTIONS}

# MLCommons' reference app (vision/classification_and_detection/python/main.py): its flags,
# with its meaning and units.
ALIASES: tuple[Alias, ...] = (
    Alias("--accuracy", "the reference's accuracy pass: --mode accuracy", (("mode", _const("accuracy")),), False),
    Alias(
        "--find-peak-performance",
        "the reference's peak search: --mode find-peak",
        (("mode", _const("find-peak")),),
        False,
    ),
    Alias(
        "--time", "run time in seconds: minimum and maximum duration", (("duration", _same), ("max_duration", _same))
    ),
    Alias(
        "--count",
        "dataset items to use: --samples N, and exactly N queries",
        (("samples", _same), ("min_query_count", _same), ("max_query_count", _same)),
    ),
    Alias(
        "--threads",
        "worker threads: --concurrency N, with the threadpool runner unless --runner says otherwise",
        (("concurrency", _same),),
        implies=(("runner", "threadpool"),),
    ),
    Alias(
        "--max-latency",
        "latency bound in SECONDS (Server bound; MultiStream expected latency): --target-latency x 1000",
        (("target_latency", _seconds_to_ms),),
    ),
)
USER_CONF_MODES = {"1": "accuracy", "2": "performance", "3": "find-peak"}


@dataclass(frozen=True)
class Settings:
    scenario: str
    mode: str
    modelpath: str | None
    model_format: str | None
    preprocessing: str | None
    input_shape: tuple[int, ...] | None
    model: str
    task: str
    dataset: str | None
    preprocessed_dir: str | None
    data_format: str | None
    duration: float | None
    max_duration: float | None
    target_qps: float | None
    target_latency: float | None
    latency_percentile: float | None
    min_query_count: int | None
    max_query_count: int | None
    samples: int | None
    performance_sample_count: int | None
    samples_per_query: int | None
    user_conf: str | None
    audit_conf: str | None
    compliance: str | None
    max_batchsize: int
    runner: str
    tune: str
    batch_window: float | None
    samples_on_device: bool
    concurrency: int
    ep: str
    ep_options: tuple[tuple[str, str], ...]
    execmode: str
    intraop: int
    interop: int
    torch_threads: int
    torch_interop_threads: int
    half: bool
    channels_last: bool
    torch_compile: bool
    torch_compile_mode: str
    model_code: str | None
    model_cfg: str | None
    tf_intra_op_threads: int
    tf_inter_op_threads: int
    tf_input: str | None
    tf_output: str | None
    tflite_threads: int
    output_dir: str
    submission_layout: bool
    system_name: str
    submitter: str
    division: str
    submission_round: str
    allow_invalid: bool
    weights: str
    device: str
    backend: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def set_by_user(self, name: str) -> bool:
        """True when a flag or variable set it, or the task fixed it: mlbox-bench must apply
        it on top of mlperf.conf and user.conf (a user.conf value is already in LoadGen's
        settings), and calibration or the runner search must not pick another."""
        return getattr(self, name) is not None and not self.source(name).startswith(("user.conf", "default"))

    def model_file(self) -> tuple[str, str]:
        """(modelpath, model_format) for a backend to load; a given modelpath always has a
        format (given, or read from the file), so only a missing file is refused here."""
        if self.modelpath is None or self.model_format is None:
            msg = "no model to run: pass --modelpath FILE (env MLBOX_MODELPATH)"
            raise BenchError(msg)
        return self.modelpath, self.model_format

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            f.name: {"value": getattr(self, f.name), "source": self.source(f.name)}
            for f in fields(self)
            if f.name != "sources"
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbox-bench",
        description="Run an MLPerf Inference LoadGen benchmark with onnxruntime, PyTorch, TensorFlow or LiteRT. "
        "Every option is also an environment variable, shown in brackets (MLBOX_<NAME>, except --model, "
        "--device and --backend, whose MLBOX_<NAME> select catalog rows for the host tool `mlbox`); "
        "MLC_*/CM_* names there are aliases. "
        "Precedence: flag > MLBOX_* > MLC_* > CM_* > --user-conf > image default (MLBOX_DEFAULT_*) > default. "
        "@FILE stands for the arguments in FILE, one per line.",
        argument_default=argparse.SUPPRESS,  # absent flags stay absent: env and defaults come next
        # A Kubernetes Indexed Job gives each pod the same command line: `@/etc/mlbox/$(INDEX)`
        # lets each one read its own cell of the matrix without a shell in between.
        fromfile_prefix_chars="@",
    )
    for opt in OPTIONS:
        extra = f" [env {', '.join((opt.env, *opt.aliases))}]"
        default = f" (default: {opt.default})" if opt.default not in (None, False) else ""
        if opt.is_flag:
            parser.add_argument(*opt.all_flags, dest=opt.name, action="store_const", const="1", help=opt.help + extra)
        else:
            bounds = f" (range: {opt.parse.range})" if isinstance(opt.parse, _Number) else ""
            parser.add_argument(
                *opt.all_flags, dest=opt.name, metavar=opt.name.upper(), help=opt.help + bounds + default + extra
            )
    group = parser.add_argument_group("MLCommons reference app flags (same meaning and units)")
    for alias in ALIASES:
        dest = "alias" + alias.flag
        if alias.takes_value:
            group.add_argument(alias.flag, dest=dest, metavar="N", help=alias.help)
        else:
            group.add_argument(alias.flag, dest=dest, action="store_const", const="1", help=alias.help)
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
    flagged, implied = _flag_values(args)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def resolve(opt: Option, conf: Mapping[str, str]) -> None:
        candidates = [flagged.get(opt.name, ("", None)), (opt.env, env.get(opt.env))]
        candidates += [(name, env.get(name)) for name in opt.aliases]
        if opt.name in conf:
            candidates.append((f"user.conf {values['user_conf']}", conf[opt.name]))
        candidates.append((opt.image_env + " (image)", env.get(opt.image_env)))
        candidates.append(implied.get(opt.name, ("", None)))
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

    # Options a user.conf cannot set come first: they say which user.conf entries apply
    # (model, scenario) and where the submission's own user.conf is.
    from_conf = lg_fields.SETTINGS | {"mode"}
    for opt in OPTIONS:
        if opt.name not in from_conf:
            resolve(opt, {})
    if values["user_conf"] is None and values["compliance"] and values["submission_layout"]:
        # A compliance run repeats the performance run: same user.conf, no new calibration.
        own = scenario_dir(cast("Where", SimpleNamespace(**values))) / "user.conf"
        if own.is_file():
            values["user_conf"], sources["user_conf"] = str(own), "submission user.conf"
    conf = read_user_conf(values["user_conf"], values["model"], values["scenario"]) if values["user_conf"] else {}
    for opt in OPTIONS:
        if opt.name in from_conf:
            resolve(opt, conf)
    _derive_backend(values, sources)
    _derive_task(values, sources)
    _fit_task(values, sources)
    settings = Settings(**values, sources=sources)
    _check_combinations(settings)
    return settings, print_only


def _derive_task(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Unless given, the task is the MLPerf model's (classification for a model the table
    does not know, as before there was a choice). An image's default task goes with its
    default model: a model the user names brings its own task."""
    model_source = sources.get("model", "default")
    named = not model_source.startswith("default") and not model_source.endswith("(image)")
    if sources.get("task", "").endswith("(image)") and named and find(values["model"]):
        values["task"] = None
    if values["task"] is None:
        values["task"] = task_of(values["model"])
        if find(values["model"]) is not None:
            sources["task"] = f"default (model {values['model']})"


def _fit_task(values: dict[str, Any], sources: dict[str, str]) -> None:
    """What the task allows: its preprocessing (the model format's profile is a classifier's;
    only a profile the user asked for is an error) and its largest batch (a detector's
    outputs are one image's: the reference runs RetinaNet with max batch size 1). A value
    the task fixes says so as its source."""
    task = tasks.get(values["task"])
    if values["preprocessing"] not in task.profiles:
        source = sources.get("preprocessing", "default")
        if not source.startswith(("default", "model format")):
            msg = f"{source}: preprocessing {values['preprocessing']} is not one of the {task.name} task's"
            raise SettingsError(msg + f" ({', '.join(task.profiles)}); leave it out")
        values["preprocessing"], sources["preprocessing"] = task.profiles[0], f"the {task.name} task"
    if task.max_batch is not None and values["max_batchsize"] > task.max_batch:
        source = sources.get("max_batchsize", "default")
        if not source.startswith("default"):
            msg = f"{source}: max batch size {values['max_batchsize']}: the {task.name} task's models answer"
            raise SettingsError(
                msg + f" at most {task.max_batch} sample(s) per run (their outputs have no batch dimension)"
            )
        why = f"the {task.name} task (its models answer {task.max_batch} sample(s) per run)"
        values["max_batchsize"], sources["max_batchsize"] = task.max_batch, why


def _derive_backend(values: dict[str, Any], sources: dict[str, str]) -> None:
    """The model format (given, or read from the file) picks the backend and the
    preprocessing, unless those are given; a given backend must be able to load it."""
    if values["model_format"] is None and values["modelpath"] is not None:
        try:
            values["model_format"] = guess_format(values["modelpath"])
        except BenchError as err:
            raise SettingsError(str(err)) from None
        sources["model_format"] = "the model file"
    fmt = values["model_format"]
    if fmt is None:
        values["backend"] = values["backend"] or "onnxruntime"
        values["preprocessing"] = values["preprocessing"] or "mlperf"
        return
    loader, profile = FORMATS[fmt]
    if values["backend"] is None:
        values["backend"], sources["backend"] = loader, f"model format {fmt}"
    elif values["backend"] != loader:
        msg = f"{sources['backend']}: backend {values['backend']} cannot load {fmt} models ({loader} does)"
        raise SettingsError(msg)
    if values["preprocessing"] is None:
        values["preprocessing"], sources["preprocessing"] = profile, f"model format {fmt}"


def _flag_values(args: Mapping[str, Any]) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """(option -> (source, text) set on the command line, option -> implied value).
    A reference flag and an mlbox flag that set one option to different values clash."""
    flagged: dict[str, tuple[str, str]] = {}
    implied: dict[str, tuple[str, str]] = {}

    def put(name: str, source: str, text: str) -> None:
        if name in flagged and flagged[name][1] != text:
            both = f"{quote(text)} and {quote(flagged[name][1])}"
            msg = f"{source} and {flagged[name][0]} both set {name} ({both}): give one"
            raise SettingsError(msg)
        flagged[name] = (source, text)

    for opt in OPTIONS:
        if opt.name in args:
            put(opt.name, f"flag {opt.all_flags[0]}", args[opt.name])
    for alias in ALIASES:
        text = args.get("alias" + alias.flag)
        if text is None:
            continue
        for name, convert in alias.sets:
            try:
                put(name, f"flag {alias.flag}", convert(text))
            except SettingsError as err:
                msg = f"flag {alias.flag}: {err}"
                raise SettingsError(msg) from None
        for name, value in alias.implies:
            implied[name] = (f"flag {alias.flag} (implied)", value)
    return flagged, implied


def read_user_conf(path: str, model: str, scenario: str) -> dict[str, str]:
    """The settings (as option text) a LoadGen user.conf sets for this model and scenario,
    looked up the way LoadGen does: model.Scenario.key, *.Scenario.key, model.*.key, *.*.key.

    mlbox-bench reads the file only to know which settings it sets (for precedence and
    --print-settings); LoadGen itself still loads it, once, through FromConfig.

    Any name of the model means it: LoadGen is given mlperf.conf's name (resnet50), and a
    line for another of its names (resnet) is keyed by that name first, as the copy of
    the file LoadGen reads is (mlperf.user_conf_for_loadgen); the last line for a key wins,
    in both.
    """
    from mlbox_bench.files import read_user_text

    try:
        text = read_user_text(Path(path), "--user-conf")
    except BenchError as err:
        raise SettingsError(str(err)) from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 3 or words[1] != "=":
            # LoadGen silently ignores `key=value` without spaces: refuse it instead.
            msg = f"--user-conf {path} line {number}: expected 'model.scenario.key = value', got {quote(line.strip())}"
            raise SettingsError(msg)
        _check_conf_key(words[0], f"--user-conf {path} line {number}")
        entries[conf_key(words[0], model)] = words[2]
    own = conf_name(model)

    def lookup(key: str) -> str | None:
        for m, sc in ((own, scenario), ("*", scenario), (own, "*"), ("*", "*")):
            if f"{m}.{sc}.{key}" in entries:
                return entries[f"{m}.{sc}.{key}"]
        return None

    found: dict[str, str] = {}
    mode = lookup("mode")
    if mode is not None:
        if mode not in USER_CONF_MODES:
            msg = f"user.conf: mode = {mode} is not supported (1 accuracy, 2 performance, 3 find-peak)"
            raise SettingsError(msg)
        found["mode"] = USER_CONF_MODES[mode]
    for name, f in lg_fields.TABLE[scenario].items():
        raw = lookup(f.conf_key)
        if raw is None:
            continue
        try:
            found[name] = str(f.unit.from_conf(raw))
        except ValueError:
            msg = f"user.conf: {f.conf_key} = {raw} is not a number"
            raise SettingsError(msg) from None
    return found


def _check_conf_key(key: str, where: str) -> None:
    """model.Scenario.key as LoadGen matches it (case-sensitive); a model name may hold dots
    (3d-unet-99.9), so the scenario and key are the last two parts."""
    parts = key.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        msg = f"{where}: {quote(key)} is not model.scenario.key"
        raise SettingsError(msg)
    _, scenario, name = parts
    if scenario not in (*SCENARIOS, "*"):
        guess = did_you_mean(scenario, SCENARIOS)
        msg = f"{where}: scenario {quote(scenario, 40)} is not one of {', '.join(SCENARIOS)} or *{guess}"
        raise SettingsError(msg)
    if name not in lg_fields.LOADGEN_CONF_KEYS:
        guess = did_you_mean(name, sorted(lg_fields.LOADGEN_CONF_KEYS))
        msg = f"{where}: LoadGen has no setting {quote(name, 40)}{guess} (it would ignore the line)"
        raise SettingsError(msg)


def _check_combinations(s: Settings) -> None:
    for opt in OPTIONS:
        if opt.owner and s.backend not in opt.owner and s.set_by_user(opt.name):
            msg = f"{s.source(opt.name)}: {opt.name} is a {'/'.join(opt.owner)} option; this run uses {s.backend}"
            raise SettingsError(msg)
    if s.backend == "onnxruntime" and s.samples_on_device and not s.ep.startswith("CUDA"):
        msg = f"--samples-on-device keeps samples in GPU memory: it needs a CUDA provider, not {s.ep}"
        raise SettingsError(msg)
    if s.backend == "pytorch":
        from mlbox_bench.backends.pytorch import SEED_DEVICES, torch_device

        if s.set_by_user("ep") and s.ep not in SEED_DEVICES:
            seed = " or ".join(SEED_DEVICES)
            msg = f"{s.source('ep')}: PyTorch runs on {seed} (the seed app's spellings), not {s.ep}"
            raise SettingsError(msg + "; or pass --device cpu|cuda")
        names = ("half", "channels_last", "torch_compile", "samples_on_device")
        cuda_only = [f"--{n.replace('_', '-')}" for n in names if getattr(s, n)]
        if cuda_only and torch_device(s) != "cuda":
            msg = f"{', '.join(cuda_only)}: for CUDA only (--device cuda); this run is on the CPU"
            raise SettingsError(msg)
    if s.backend == "tflite" and s.device != "cpu":
        msg = f"{s.source('device')}: --device {s.device}: the tflite backend (LiteRT) runs on the CPU only"
        raise SettingsError(msg)
    if s.mode == "find-peak" and s.scenario != "Server":
        msg = (
            f"--mode find-peak searches Server's target QPS; it does not apply to {s.scenario} (use --scenario Server)"
        )
        raise SettingsError(msg)
    if s.mode == "find-peak" and s.submission_layout:
        msg = "--submission-layout: a find-peak search is not a submission run; run --mode performance at the peak"
        raise SettingsError(msg)
    if s.compliance and s.mode != "performance":
        msg = f"--compliance {s.compliance} is a performance run (its audit.config sets the mode); drop --mode {s.mode}"
        raise SettingsError(msg)
    if s.compliance and s.audit_conf:
        msg = f"--compliance {s.compliance} writes the official audit.config; --audit-conf gives another: pick one"
        raise SettingsError(msg)
    for name in sorted(lg_fields.SETTINGS):
        if s.set_by_user(name) and lg_fields.field(name, s.scenario) is None:
            where = ", ".join(lg_fields.scenarios_of(name))
            msg = f"{s.source(name)}: {name} does not apply to {s.scenario} (LoadGen uses it in {where})"
            raise SettingsError(msg)
    fraction = s.target_latency is not None and not float(s.target_latency).is_integer()
    if s.submission_layout and s.scenario == "Server" and fraction:
        msg = (
            f"{s.source('target_latency')}: Server's latency bound {s.target_latency} ms is not a whole number: "
            "LoadGen's user.conf reads whole milliseconds, so the submission's user.conf could not reproduce it"
        )
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
    """An MLBOX_* name the harness does not read is a mistake. MLC_*/CM_* ones are shared
    with MLCommons' automation, which sets hundreds of its own: one is refused only when it
    is a near miss of a name the harness reads (a typo) and not one of CM's own."""
    known = {o.env for o in OPTIONS} | {o.image_env for o in OPTIONS} | HOST_VARIABLES
    aliases = sorted({alias for o in OPTIONS for alias in o.aliases})
    for name in sorted(env):
        if name.startswith("MLBOX_") and name not in known:
            msg = f"unknown environment variable {name}{did_you_mean(name, sorted(known))}"
            raise SettingsError(msg)
        if name.startswith(("MLC_", "CM_")) and name not in aliases and name not in CM_OWN_VARIABLES:
            near = difflib.get_close_matches(name, aliases, n=1, cutoff=NEAR_MISS)
            if near:
                msg = f"unknown environment variable {name}; did you mean {near[0]!r}? (mlbox-bench reads {near[0]})"
                raise SettingsError(msg)
