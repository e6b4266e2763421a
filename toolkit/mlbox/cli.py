"""The ``mlbox`` command line. Commands parse options, call the core and print; nothing more.

Logs and build output go to stderr; results (image references) go to stdout, last line.
Every exit goes through ``main``: errors from the core (MlboxError) become one message
and a fixed exit code there (errors.exit_codes() is the table), with a traceback under
--debug / MLBOX_DEBUG. Nothing else escapes as a traceback either: an OSError is a
sentence (exit 3), any other exception an "internal error" (exit 1, a bug). Every option
has an MLBOX_* variable, shown by --help, and a default the user's configuration file may
set (config.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlbox import DISTRIBUTION
from mlbox.errors import MlboxError, bench_outcome, exit_codes, one_line
from mlbox_bench.files import os_reason

if TYPE_CHECKING:
    from mlbox.build import Inputs
    from mlbox.catalog import Catalog
    from mlbox.engine import Engine
    from mlbox.plan import BuildPlan
    from mlbox.publish import Credentials, Registry

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("mlbox")


@dataclass
class _State:
    """What main() needs to know after a command ran (set by the group's callback)."""

    debug: bool = False
    config_file: Path | None = None  # the configuration file the group read


_state = _State()


class _Option(click.Option):
    """A click option whose error says where a bad value came from. click names the
    option's variable whatever the source, so a configuration-file value was blamed on
    an MLBOX_* variable that was not even set."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        names = " / ".join(repr(name) for name in self.opts)
        source = ctx.get_parameter_source(self.name) if ctx and self.name else None
        if source is click.core.ParameterSource.DEFAULT_MAP:
            return f"{names} (from the configuration file {_state.config_file})"
        if source is click.core.ParameterSource.ENVIRONMENT:
            return f"{names} (from {self.envvar})"
        return names


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option with its MLBOX_* variable, shown in --help."""
    return click.option(*decls, cls=_Option, envvar=env, show_envvar=True, **kwargs)


@dataclass(frozen=True)
class Context:
    catalog_path: Path | None  # None: the catalog shipped with mlbox
    engine_kind: str = "docker"
    _loaded: list[Catalog] = field(default_factory=list, repr=False, compare=False)
    _engines: list[Engine] = field(default_factory=list, repr=False, compare=False)

    def catalog(self) -> Catalog:
        """The catalog, read and validated on first use only (a command may ask twice)."""
        if not self._loaded:
            from mlbox.catalog import load_catalog  # lazy: keeps `mlbox --help` instant
            from mlbox.paths import packaged_catalog, templates
            from mlbox.render import check_partials

            catalog = load_catalog(self.catalog_path or packaged_catalog())
            check_partials(catalog, templates())
            self._loaded.append(catalog)
        return self._loaded[0]

    def engine(self) -> Engine:
        """The container engine; nothing is contacted until the first call on it."""
        if not self._engines:
            from mlbox.engine import connect

            self._engines.append(connect(self.engine_kind))
        return self._engines[0]

    def close(self) -> None:
        """When the command ends, however it ends: stops a Podman service mlbox started."""
        while self._engines:
            self._engines.pop().close()


pass_ctx = click.make_pass_decorator(Context)


def _epilog() -> str:
    lines = ["Exit codes:"] + [f"  {code:>3}  {meaning}" for code, meaning in exit_codes()]
    return "\b\n" + "\n".join(lines)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_epilog(),
)
@option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    env="MLBOX_CATALOG",
    help="Another image catalog (images.yaml) [default: the one shipped with mlbox].",
)
@option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    env="MLBOX_CONFIG",
    help="Option defaults, by option name [default: $XDG_CONFIG_HOME/mlbox/config.yaml].",
)
@option(
    "--engine",
    type=click.Choice(["docker", "podman"]),
    default=None,
    env="MLBOX_ENGINE",
    help="Container engine: docker, or podman through its Docker-compatible API (the service CONTAINER_HOST "
    "names, else one mlbox starts for the command) [default: the configuration file's, else docker].",
)
@option("--debug", is_flag=True, env="MLBOX_DEBUG", help="Show tracebacks and debug logs.")
@click.version_option(package_name=DISTRIBUTION)
@click.pass_context
def cli(ctx: click.Context, catalog: Path | None, config_path: Path | None, engine: str | None, debug: bool) -> None:
    """mlbox: build self-contained MLPerf Inference LoadGen benchmark images and run them."""
    _state.debug = debug
    logging.basicConfig(format="mlbox: %(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    from mlbox.config import read_config
    from mlbox.paths import config_file

    path = config_path or config_file()
    _state.config_file = path
    settings = read_config(path, _option_names())
    # Each command sees the file's values as its options' defaults (flags and MLBOX_* win).
    ctx.default_map = {
        name: {p.name: settings[p.name] for p in command.params if p.name in settings}
        for name, command in cli.commands.items()
    }
    ctx.obj = Context(catalog_path=catalog, engine_kind=engine or _configured_engine(settings, path))
    ctx.call_on_close(ctx.obj.close)


# Options of the group itself that the configuration file may set too (not --config,
# which names the file, nor --catalog and --debug, which stay per invocation).
GROUP_SETTINGS = {"engine"}


def _option_names() -> set[str]:
    """Every option name of every command: what a configuration file may set."""
    names = {p.name for c in cli.commands.values() for p in c.params if isinstance(p, click.Option) and p.name}
    return names | GROUP_SETTINGS


def _configured_engine(settings: dict[str, Any], path: Path) -> str:
    from mlbox.engine import ENGINES
    from mlbox.errors import ConfigError

    kind = str(settings.get("engine", "docker"))
    if kind not in ENGINES:
        msg = f"{path}: engine {kind!r} is not one of {', '.join(ENGINES)}"
        raise ConfigError(msg, hint="for example `engine: podman`")
    return kind


def selection_options(func: F) -> F:
    """The options that pick cells of the image matrix (shared by list, render and build).

    One image: --model (and optionally --device, --variant, --backend). With --all, every
    buildable image, and the same options become filters.
    """
    options = [
        option("--model", "-m", default=None, env="MLBOX_MODEL", help="Model name, e.g. resnet50."),
        option("--device", "-d", default=None, env="MLBOX_DEVICE", help="Device: cpu or cuda [default: cpu]."),
        option("--variant", default=None, env="MLBOX_VARIANT", help="Model variant [default: the model's default]."),
        option("--backend", default=None, env="MLBOX_BACKEND", help="Backend [default: the variant's]."),
        option(
            "--base-image",
            default=None,
            env="MLBOX_BASE_IMAGE",
            help="Base image reference (e.g. from `mlbox base`) [default: the catalog's].",
        ),
        option(
            "--cuda-from",
            type=click.Choice(["pip", "nvidia"]),
            default="pip",
            show_default=True,
            env="MLBOX_CUDA_FROM",
            help="cuda images: NVIDIA's CUDA/cuDNN wheels on the plain base (nothing fetched inside the build), "
            "or NVIDIA's CUDA runtime image (tag -nvidiabase; installs Python from Ubuntu's archive, pinned, "
            "so the build needs that network).",
        ),
        option(
            "--loadgen-from",
            type=click.Choice(["wheel", "source"]),
            default="wheel",
            show_default=True,
            env="MLBOX_LOADGEN_FROM",
            help="LoadGen from PyPI's wheel, or compiled from PyPI's sdist in a builder stage.",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def all_option(func: F) -> F:
    return option(
        "--all", "all_", is_flag=True, env="MLBOX_ALL", help="Every buildable image (the selection options filter)."
    )(func)


def force_out_option(func: F) -> F:
    return option(
        "--force",
        is_flag=True,
        env="MLBOX_FORCE_OUT",  # not MLBOX_FORCE: that one is `build --force`, another meaning
        help="Replace what --out holds under the names this writes, even what mlbox did not write.",
    )(func)


def json_option(func: F) -> F:
    return option("--json", "as_json", is_flag=True, env="MLBOX_JSON", help="Print JSON on stdout instead.")(func)


def _plans(ctx: Context, kwargs: dict[str, Any], *, all_: bool) -> list[BuildPlan]:
    """The plans of a selection; cells mlbox cannot build yet are named on stderr."""
    from mlbox.paths import templates
    from mlbox.plan import Selection, plans_for

    chosen = {k: kwargs[k] for k in Selection.__dataclass_fields__ if k != "default_base"}  # not an option
    source = click.get_current_context().get_parameter_source("base_image")
    if source is click.core.ParameterSource.DEFAULT_MAP:  # the configuration file's: a default, not a request
        chosen["default_base"] = chosen.pop("base_image")
    selected = Selection(**chosen)
    plans, skipped = plans_for(ctx.catalog(), selected, templates(), all_=all_)
    for c in skipped:
        log.info("skipping %s/%s on %s: mlbox cannot build it yet (needs %s)", c.model, c.variant, c.device, c.missing)
    return plans


def login_options(func: F) -> F:
    """--username and --password-stdin: a registry login (publish.credentials reads them)."""
    options = [
        option(
            "--username",
            env="MLBOX_REGISTRY_USERNAME",
            help="Registry user; the password comes from --password-stdin or MLBOX_REGISTRY_PASSWORD.",
        ),
        option(
            "--password-stdin",
            is_flag=True,
            env="MLBOX_PASSWORD_STDIN",
            help="Read the registry password from standard input (never from an argument).",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def registry_options(func: F) -> F:
    return option("--registry", env="MLBOX_REGISTRY", help="Where to push: HOST[:PORT]/NAMESPACE.")(login_options(func))


def _registry_and_credentials(
    registry: str | None, username: str | None, password_stdin: bool
) -> tuple[Registry, Credentials | None]:
    """Checked before anything is built or pushed; the password stays in this process."""
    from mlbox.errors import PushError
    from mlbox.publish import credentials, parse_registry

    if not registry:
        msg = "no registry given"
        raise PushError(msg, hint="pass --registry HOST[:PORT]/NAMESPACE (or set MLBOX_REGISTRY)")
    return parse_registry(registry), credentials(username, password_stdin)


def _push(engine: Engine, tags: list[str], target: Registry, creds: Credentials | None) -> list[str]:
    """Push local tags; print NAME@DIGEST per image on stdout; return the references."""
    from mlbox import ui
    from mlbox.paths import publish_records
    from mlbox.publish import push_image

    engine.api_version()  # fail fast when no engine runs
    references = []
    for tag in tags:
        log.info("pushing %s to %s/%s", tag, target.host, target.namespace)
        published = push_image(
            engine, tag, target, creds, records=publish_records(), on_progress=lambda ln: ui.console.print(f"  | {ln}")
        )
        click.echo(published.reference)
        references.append(published.reference)
    return references


@cli.command(name="list")
@selection_options
@json_option
@pass_ctx
def list_(ctx: Context, /, as_json: bool, **kwargs: Any) -> None:
    """Every image in the catalog: model, variant, device, backend, tag, built?, pushed?, task

    Filters: --model, --device, --variant, --backend. Images mlbox cannot build yet are
    listed with what they need. Built? asks the engine; without one it says unknown.
    """
    import json

    from mlbox.inventory import inventory

    filters = {k: kwargs[k] for k in ("model", "device", "variant", "backend")}
    rows = inventory(ctx.catalog(), ctx.engine(), **filters)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from mlbox import ui

    def yes_no(value: Any) -> str:
        return "?" if value is None else ("yes" if value else "no")

    ui.table(
        ["MODEL", "VARIANT", "DEVICE", "BACKEND", "TAG", "BUILT", "PUSHED", "TASK", "NOTE"],
        [
            [
                r["model"],
                r["variant"],
                r["device"],
                r["backend"],
                r["tag"],
                yes_no(r["built"]),
                yes_no(bool(r["pushed"])),
                r["task"],
                "" if r["buildable"] else "needs " + str(r["missing"]),
            ]
            for r in rows
        ],
    )


@cli.command()
@selection_options
@all_option
@option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    env="MLBOX_OUT",
    help="Write <tag>.Dockerfile files here instead of printing (required with --all).",
)
@force_out_option
@pass_ctx
def render(ctx: Context, /, all_: bool, out: Path | None, force: bool, **kwargs: Any) -> None:
    """Render Dockerfiles (no engine needed): one to stdout, or --all --out DIR."""
    plans = _plans(ctx, kwargs, all_=all_)
    if out is None:
        if len(plans) > 1:
            msg = "--all renders many Dockerfiles: pass --out DIR"
            raise click.UsageError(msg)
        click.echo(plans[0].dockerfile, nl=False)
        return
    from mlbox.build import write_dockerfile
    from mlbox.files import writing_into

    with writing_into(out, [plan.dockerfile_name for plan in plans], force=force) as wrote:
        for plan in plans:
            click.echo(write_dockerfile(out, plan))
            wrote(plan.dockerfile_name)


@cli.command()
@selection_options
@all_option
@option(
    "--model-file",
    type=click.Path(dir_okay=False, path_type=Path),
    env="MLBOX_MODEL_FILE",
    help="Use this local model file (verified against the catalog's checksum).",
)
@option("--model-url", env="MLBOX_MODEL_URL", help="Download the model from this URL instead.")
@option(
    "--mirror",
    env="MLBOX_MIRROR",
    help="Base URL of a model mirror for air-gapped sites (a copy of an mlbox cache's models/ over HTTP): "
    "files are fetched as MIRROR/<checksum>/<file>, then verified.",
)
@json_option
@option("--push", "push_after", is_flag=True, env="MLBOX_PUSH", help="Push each image after it is built.")
@registry_options
@pass_ctx
def build(
    ctx: Context,
    /,
    all_: bool,
    model_file: Path | None,
    model_url: str | None,
    mirror: str | None,
    as_json: bool,
    push_after: bool,
    registry: str | None,
    username: str | None,
    password_stdin: bool,
    **kwargs: Any,
) -> None:
    """Fetch the model, resolve the wheelhouse and build the image(s).

    Build output streams to stderr; the image reference is the last line on stdout.
    """
    import json

    from mlbox import ui
    from mlbox.build import build_image, prepare_inputs
    from mlbox.catalog import check_url
    from mlbox.paths import cache_dir

    for value, what in ((model_url, "--model-url"), (mirror, "--mirror")):
        if value is not None:
            check_url(value, what=what)
    # A bad --registry or a missing password is refused before anything is built.
    target = _registry_and_credentials(registry, username, password_stdin) if push_after else None
    plans = _plans(ctx, kwargs, all_=all_)
    mirror = mirror or ctx.catalog().defaults.mirror
    if len(plans) > 1 and (model_file or model_url):
        msg = "--model-file/--model-url name one file: build one image at a time with them"
        raise click.UsageError(msg)
    engine = ctx.engine()
    engine.api_version()  # fail fast, before downloads, when no engine is running
    results = []
    for plan in plans:
        with ui.download_bar(plan.spec.variant_spec.file) as bar:
            inputs = prepare_inputs(
                plan, cache_dir(), model_file=model_file, model_url=model_url, mirror=mirror, progress=bar
            )
        with ui.build_display(plan.spec.tag) as on_line:
            result = build_image(plan, engine, inputs, on_line=on_line)
        log.info("built %s (%s)", result.tag, result.image_id)
        results.append(result)
        if not as_json:
            click.echo(result.tag)
    if target is not None:
        references = _push(engine, [r.tag for r in results], *target)
        for result, reference in zip(results, references, strict=True):
            result.pushed.append(reference)
    if as_json:
        click.echo(json.dumps([r.describe() for r in results], indent=2))


@cli.command()
@selection_options
@all_option
@registry_options
@pass_ctx
def push(
    ctx: Context, /, all_: bool, registry: str | None, username: str | None, password_stdin: bool, **kwargs: Any
) -> None:
    """Push built image(s) to a registry; print NAME@DIGEST for each on stdout.

    Credentials: your docker config (docker login), --username with --password-stdin, or
    MLBOX_REGISTRY_USERNAME / MLBOX_REGISTRY_PASSWORD. A publish record (JSON lines) is
    appended after each successful push.
    """
    target, creds = _registry_and_credentials(registry, username, password_stdin)
    plans = _plans(ctx, kwargs, all_=all_)
    _push(ctx.engine(), [plan.spec.tag for plan in plans], target, creds)


@cli.command()
@selection_options
@all_option
@option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    env="MLBOX_OUT",
    help="Directory for the build contexts (one per image) and docker-bake.json.",
)
@option(
    "--registry",
    env="MLBOX_REGISTRY",
    help="Tag the images for this registry (HOST[:PORT]/NAMESPACE), with a registry build cache beside them "
    "[default: local tags, for --load].",
)
@option(
    "--mirror",
    env="MLBOX_MIRROR",
    help="Base URL of a model mirror for air-gapped sites: files are fetched as MIRROR/<checksum>/<file>.",
)
@force_out_option
@pass_ctx
def bake(
    ctx: Context, /, all_: bool, out: Path, registry: str | None, mirror: str | None, force: bool, **kwargs: Any
) -> None:
    """Stage build contexts and a Buildx Bake file for BuildKit builders (no engine needed).

    Each image's context is what `mlbox build` sends its engine (model verified, wheelhouse,
    Dockerfile); OUT/docker-bake.json has a target per image (tags, labels, build
    arguments, platform, registry cache) and groups per model, per device and `default`.
    Then: `docker buildx bake -f OUT/docker-bake.json --push --metadata-file OUT/metadata.json`
    and `mlbox publish-record OUT/metadata.json`. Prints the bake file's path on stdout.
    """
    from datetime import UTC, datetime

    from mlbox import ui
    from mlbox.bake import write_bake
    from mlbox.build import prepare_inputs
    from mlbox.catalog import check_url
    from mlbox.paths import cache_dir
    from mlbox.publish import parse_registry

    if mirror is not None:
        check_url(mirror, what="--mirror")
    target = parse_registry(registry) if registry else None
    plans = _plans(ctx, kwargs, all_=all_)
    mirror = mirror or ctx.catalog().defaults.mirror

    def prepare(plan: BuildPlan) -> Inputs:
        with ui.download_bar(plan.spec.variant_spec.file) as bar:
            return prepare_inputs(plan, cache_dir(), mirror=mirror, progress=bar)

    path = write_bake(plans, out, registry=target, prepare=prepare, created=datetime.now(UTC), force=force)
    click.echo(path)


@cli.command(name="publish-record")
@click.argument("metadata", type=click.Path(dir_okay=False, path_type=Path))
@option(
    "--bake-file",
    type=click.Path(dir_okay=False, path_type=Path),
    env="MLBOX_BAKE_FILE",
    help="The bake file the build used [default: docker-bake.json beside METADATA].",
)
@option(
    "--registry",
    env="MLBOX_REGISTRY",
    help="Record only pushes to this registry (HOST[:PORT]/NAMESPACE) [default: the one each pushed name is in].",
)
@login_options  # for the digest check
@pass_ctx
def publish_record(
    ctx: Context,
    /,
    metadata: Path,
    bake_file: Path | None,
    registry: str | None,
    username: str | None,
    password_stdin: bool,
) -> None:
    """Record what `docker buildx bake --push --metadata-file METADATA` pushed.

    Appends a publish record per pushed image, as `mlbox push` does (digests from bake's
    metadata, labels from the bake file), and prints NAME@DIGEST for each on stdout. Each
    pushed name must be its own target's tag in the bake file, and the registry must hold
    the metadata's digest for it; an unreachable registry leaves the record marked
    "verified": "metadata-only", with a warning.
    """
    from mlbox.bake import BAKE_FILE, read_json, records_from_metadata
    from mlbox.paths import publish_records
    from mlbox.publish import append_record, credentials, parse_registry, registry_digest

    creds = credentials(username, password_stdin)
    records = records_from_metadata(
        read_json(metadata, "bake metadata file"),
        read_json(bake_file or metadata.parent / BAKE_FILE, "bake file"),
        parse_registry(registry) if registry else None,
        local_repository=ctx.catalog().defaults.registry,
        lookup=lambda reg, tag: registry_digest(reg, tag, creds),
    )
    for record in records:  # every record is checked before the first is appended
        append_record(publish_records(), record)
        click.echo(record["references"][0])


@cli.command(context_settings={"ignore_unknown_options": True})
@selection_options
@option("--image", env="MLBOX_IMAGE", help="Run this image reference instead of a catalog selection.")
@option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    env="MLBOX_RESULTS",
    help="Results directory, mounted at /results [default: results/<image>-<time>].",
)
@option("--network", default="none", show_default=True, env="MLBOX_NETWORK", help="Container network: none, bridge...")
@option(
    "--shm-size",
    default="2g",
    show_default=True,
    env="MLBOX_SHM_SIZE",
    help="Size of /dev/shm (processpool shares samples there).",
)
@option("--cpuset-cpus", env="MLBOX_CPUSET_CPUS", help="Pin the container to these CPUs, e.g. 0-3.")
@option(
    "--read-only",
    is_flag=True,
    env="MLBOX_READ_ONLY",
    help="Read-only root filesystem (the results mount stays writable).",
)
@option(
    "--gpus",
    type=click.Choice(["auto", "all", "none"]),
    default="auto",
    show_default=True,
    env="MLBOX_GPUS",
    help="auto: all GPUs for cuda images.",
)
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def run(
    ctx: Context,
    /,
    image: str | None,
    results: Path | None,
    network: str,
    shm_size: str,
    cpuset_cpus: str | None,
    read_only: bool,
    gpus: str,
    bench_args: tuple[str, ...],
    **kwargs: Any,
) -> int:
    """Run a benchmark image: `mlbox run -m resnet50 -- --scenario Server --target-qps 20`.

    Runs as you (--user), with no network, streams the log, prints where result.json is
    and exits with the benchmark's outcome (0 VALID, 4 INVALID, 21-24 the benchmark failed:
    see the exit codes below).
    """
    from mlbox import ui
    from mlbox.catalog import check_image_ref
    from mlbox.run import RunOptions, default_results_dir, run_benchmark

    if image is None:
        image = _plans(ctx, kwargs, all_=False)[0].spec.tag
    check_image_ref(image, what="--image")
    out = results or default_results_dir(image)
    opts = RunOptions(out, network, shm_size, cpuset_cpus, read_only, gpus)
    log.info("running %s; results in %s", image, out)
    code = run_benchmark(ctx.engine(), image, bench_args, opts, on_line=lambda line: ui.console.print(line))
    result = out / "result.json"
    if result.is_file():
        click.echo(result)
    else:
        log.warning("no result.json in %s (the benchmark exited with %d)", out, code)
    return bench_outcome(code)


@cli.command(context_settings={"ignore_unknown_options": True})
@selection_options
@all_option
@option(
    "--registry",
    env="MLBOX_REGISTRY",
    help="Where the images were pushed (HOST[:PORT]/NAMESPACE): each Job runs its image by the digest "
    "its publish record holds.",
)
@option(
    "--scenario",
    "scenarios",
    multiple=True,
    env="MLBOX_SCENARIOS",
    help="A scenario of the matrix (SingleStream, MultiStream, Server, Offline); repeat for more "
    "[default: the image's].",
)
@option(
    "--matrix",
    multiple=True,
    env="MLBOX_MATRIX",
    help="Another axis of the matrix: OPTION=V1,V2,... with an mlbox-bench option, e.g. concurrency=1,2,4; "
    "repeatable. Each cell is one completion of the image's Indexed Job.",
)
@option(
    "--run-name",
    env="MLBOX_RUN_NAME",
    help="Names the Jobs, the claim and the results directory [default: the UTC time, YYYYMMDD-HHMMSS].",
)
@option("--namespace", env="MLBOX_NAMESPACE", help="Kubernetes namespace [default: kubectl's current one].")
@option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    env="MLBOX_OUT",
    help="Directory for RUN.yaml (claim, network policy, ConfigMaps, Jobs) and RUN-collect.yaml.",
)
@option(
    "--parallelism",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    env="MLBOX_PARALLELISM",
    help="Cells of one image running at once (benchmarks sharing a node disturb each other).",
)
@option(
    "--gpus-per-pod",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    env="MLBOX_GPUS_PER_POD",
    help="nvidia.com/gpu per pod of a cuda image.",
)
@option("--cpu", env="MLBOX_CPU", help="CPU request and limit per pod, e.g. 8 (with --memory: Guaranteed QoS).")
@option("--memory", env="MLBOX_MEMORY", help="Memory request and limit per pod, e.g. 16Gi (counts /dev/shm).")
@option(
    "--shm-size",
    default="2g",
    show_default=True,
    env="MLBOX_SHM_SIZE",
    help="Size of the memory-backed /dev/shm (processpool shares samples there): 2g or 2Gi.",
)
@option("--storage", default="5Gi", show_default=True, env="MLBOX_STORAGE", help="Size of the results volume claim.")
@option("--storage-class", env="MLBOX_STORAGE_CLASS", help="Storage class of the claim [default: the cluster's].")
@option(
    "--access-mode",
    type=click.Choice(["ReadWriteOnce", "ReadWriteMany"]),
    default="ReadWriteOnce",
    show_default=True,
    env="MLBOX_ACCESS_MODE",
    help="The claim's access mode: ReadWriteMany when the run's pods may be on several nodes at once.",
)
@option(
    "--pull-secret",
    env="MLBOX_PULL_SECRET",
    help="Name of the Secret the pods pull with, for a registry that needs a login "
    "(`kubectl create secret docker-registry NAME ...`; mlbox never sees the password).",
)
@force_out_option
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def k8s(
    ctx: Context,
    /,
    all_: bool,
    registry: str | None,
    scenarios: tuple[str, ...],
    matrix: tuple[str, ...],
    run_name: str | None,
    namespace: str | None,
    out: Path,
    parallelism: int,
    gpus_per_pod: int,
    cpu: str | None,
    memory: str | None,
    shm_size: str,
    storage: str,
    storage_class: str | None,
    access_mode: str,
    pull_secret: str | None,
    force: bool,
    bench_args: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Kubernetes Jobs that benchmark published images, pinned by digest (kubectl applies them).

    `mlbox k8s -m resnet50 --registry R --scenario Offline --scenario Server --out k8s -- --duration 600`:
    per image an Indexed Job over the matrix (scenarios x --matrix settings), pinned by the
    digest of its publish record; non-root, read-only root file system, no capabilities,
    no network; cuda images get nvidia.com/gpu. Results go to a volume claim; RUN-collect.yaml
    is a Pod to `kubectl cp` them from, for `mlbox results`. Prints the two files' paths.
    """
    from datetime import UTC, datetime

    from mlbox.errors import RecordError
    from mlbox.files import atomic_file, writing_into
    from mlbox.inventory import published_records
    from mlbox.k8s import MatrixError, Options, find_published, manifests, to_yaml
    from mlbox.publish import parse_registry

    if not registry:
        msg = "no registry given"
        raise RecordError(msg, hint="pass the --registry the images were pushed to (or set MLBOX_REGISTRY)")
    target = parse_registry(registry)
    plans = _plans(ctx, kwargs, all_=all_)
    published = find_published([plan.spec for plan in plans], published_records(), target)
    run = run_name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    opts = Options(
        run=run,
        scenarios=scenarios,
        matrix=tuple(_axis(text) for text in matrix),
        bench_args=bench_args,
        namespace=namespace,
        parallelism=parallelism,
        gpus_per_pod=gpus_per_pod,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
        storage=storage,
        storage_class=storage_class,
        access_mode=access_mode,
        pull_secret=pull_secret,
    )
    try:
        docs, collect = manifests(published, opts)
    except MatrixError as err:
        raise click.UsageError(str(err)) from None
    files = (
        (out / f"{run}.yaml", docs, _k8s_run_header(run, namespace)),
        (out / f"{run}-collect.yaml", collect, _k8s_collect_header(run, namespace, collect[0]["metadata"]["name"])),
    )
    with writing_into(out, [path.name for path, _, _ in files], force=force) as wrote:
        for path, documents, header in files:
            with atomic_file(path) as (f, _):
                f.write((header + to_yaml(documents)).encode())
            wrote(path.name)
            click.echo(path)


def _axis(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        msg = f"--matrix {text!r}: expected OPTION=V1,V2,... (e.g. concurrency=1,2,4)"
        raise click.BadParameter(msg)
    return name, tuple(v.strip() for v in values.split(","))


def _k8s_run_header(run: str, namespace: str | None) -> str:
    ns = f" -n {namespace}" if namespace else ""
    return (
        f"# mlbox benchmark run {run}: kubectl apply{ns} -f {run}.yaml\n"
        f"# Wait for it: kubectl wait{ns} --for=condition=complete job -l mlbox/run={run} --timeout=24h\n"
        f"# Then collect the results with {run}-collect.yaml.\n"
    )


def _k8s_collect_header(run: str, namespace: str | None, pod: str) -> str:
    ns = f" -n {namespace}" if namespace else ""
    where = f"{namespace}/{pod}" if namespace else pod
    return (
        f"# Results of mlbox run {run}, once its Jobs are done:\n"
        f"#   kubectl apply{ns} -f {run}-collect.yaml\n"
        f"#   kubectl wait{ns} --for=condition=ready pod/{pod}\n"
        f"#   kubectl cp {where}:/results/{run} results/{run}\n"
        f"#   kubectl delete{ns} pod/{pod}\n"
        f"#   mlbox results results/{run}\n"
    )


@cli.command()
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    env="MLBOX_PLOT",
    help="Write latency percentiles as HTML here.",
)
@json_option
def results(dirs: tuple[Path, ...], plot: Path | None, as_json: bool) -> None:
    """A table across result.json files under DIRS (default: ./results), and a plot."""
    import json

    from mlbox import ui
    from mlbox.files import atomic_file, cannot_write
    from mlbox.results import collect, plot_html, table_rows

    runs = collect(list(dirs) or [Path("results")])
    if not runs:
        msg = "no usable result.json under " + ", ".join(str(d) for d in dirs or [Path("results")])
        raise MlboxError(msg, hint="run a benchmark first: `mlbox run` or `make demo`")
    columns = ["RUN", "IMAGE", "DIGEST", "SCENARIO", "METRIC", "VALIDITY", "P99 MS"]
    rows = table_rows(runs)
    if as_json:
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
    else:
        ui.table(columns, rows)
    if plot is not None:
        page = plot_html(runs)
        try:
            with atomic_file(plot) as (f, _):
                f.write(page.encode())
        except OSError as err:
            raise cannot_write(plot, err, option="--plot") from None
        log.info("latency plot: %s", plot)


@cli.command()
@option("--registry", env="MLBOX_REGISTRY", help="Also check this registry (HOST[:PORT]/NAMESPACE) and your login.")
@option("--cuda", is_flag=True, env="MLBOX_CUDA", help="Also check the GPU runtime and the cuda base image.")
@option(
    "--base-image",
    env="MLBOX_BASE_IMAGE",
    help="The base image your builds use [default: your configuration's, else the catalog's].",
)
@pass_ctx
def doctor(ctx: Context, /, registry: str | None, cuda: bool, base_image: str | None) -> int:
    """Check the engine, base image, registry login, disk space and GPU runtime; say what to fix.

    Exits 1 when a check fails.
    """
    from mlbox import ui
    from mlbox.doctor import credentials_from_env, run_checks
    from mlbox.paths import cache_dir

    catalog = ctx.catalog()
    # The base image a build will really use: --base-image / MLBOX_BASE_IMAGE / the
    # configuration file, else the catalog's (and for cuda images, the cuda device's).
    bases = [base_image or catalog.defaults.base_image]
    cuda_base = catalog.devices["cuda"].base_image if "cuda" in catalog.devices else None
    if cuda and base_image is None and cuda_base:
        bases.append(cuda_base)
    user, password = credentials_from_env()
    checks = run_checks(
        ctx.engine(),
        base_images=bases,
        cache=cache_dir(),
        registry=registry,
        username=user,
        password=password,
        cuda=cuda,
    )
    marks = {True: "ok", False: "FAIL", None: "-"}
    ui.table(["CHECK", "", "DETAIL", "FIX"], [[c.name, marks[c.ok], c.detail, c.fix] for c in checks])
    return 1 if any(c.ok is False for c in checks) else 0


@cli.command()
@option("--suite", default="bookworm", show_default=True, env="MLBOX_BASE_SUITE", help="Debian suite.")
@option(
    "--mirror",
    default="http://deb.debian.org/debian",
    show_default=True,
    env="MLBOX_DEBIAN_MIRROR",
    help="Debian mirror; a snapshot.debian.org URL makes the base reproducible.",
)
@option("--force", is_flag=True, env="MLBOX_FORCE", help="Rebuild even if the image exists.")
@option(
    "--set-default",
    is_flag=True,
    env="MLBOX_SET_DEFAULT",
    help="Also make it your default base image (base_image in your configuration file).",
)
@pass_ctx
def base(ctx: Context, /, suite: str, mirror: str, force: bool, set_default: bool) -> None:
    """Make a base image from Debian packages (debootstrap + docker import).

    For machines that cannot pull images. Prints the image reference last on stdout.
    """
    from mlbox.base import BaseSpec, make_base
    from mlbox.catalog import check_name, check_url

    check_name(suite, what="--suite")
    check_url(mirror, what="--mirror")
    ref = make_base(BaseSpec(suite=suite, mirror=mirror), ctx.engine(), force=force)
    if set_default:
        from mlbox.config import set_value
        from mlbox.paths import config_file

        click_ctx = click.get_current_context()
        path = click_ctx.find_root().params.get("config_path") or config_file()
        set_value(path, "base_image", ref, _option_names())
        log.info("%s is now your default base image (%s)", ref, path)
    click.echo(ref)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def bench(bench_args: tuple[str, ...]) -> int:
    """Run the benchmark harness (mlbox-bench) on this host, without Docker.

    Every argument is passed to mlbox-bench; `mlbox bench --help` shows them. Exits as
    `mlbox run` does (0 VALID, 4 INVALID, 21-24 the benchmark failed).
    """
    from mlbox_bench.cli import main as bench_main

    return bench_outcome(bench_main(list(bench_args)))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (`kill`, `docker stop`, a CI job's timeout). It unwinds like Ctrl-C,
    so every cleanup that Ctrl-C runs (the staged build context, a benchmark's container,
    a half-pushed tag) runs for it too; without a handler Python dies and runs none."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """The one way out of mlbox: every command's result and every error become an exit code here."""
    # signal.signal works only in the main thread; elsewhere (an embedding app) SIGTERM stays its owner's.
    owner = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if owner else None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    _state.debug = False
    try:
        rv = cli.main(args=argv, prog_name="mlbox", standalone_mode=False)
    except click.exceptions.Abort as err:  # click turns KeyboardInterrupt into Abort
        return _interrupted(err.__cause__)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except MlboxError as err:
        return _error(str(err), err.hint, err.exit_code)
    except KeyboardInterrupt as err:
        return _interrupted(err)
    except OSError as err:  # the system refused something no layer below turned into a sentence: not a bug
        where = f": {one_line(os.fsdecode(err.filename), 500)}" if isinstance(err.filename, str | bytes) else ""
        return _error(f"{one_line(os_reason(err))}{where}", None, MlboxError.exit_code)
    except Exception as err:
        message = f"internal error: {type(err).__name__}: {one_line(str(err))}"
        return _error(f"{message} — this is a bug; run with --debug for the traceback and report it", None, 1)
    return rv if isinstance(rv, int) else 0


def _error(message: str, hint: str | None, code: int) -> int:
    """One error's way out: its message and hint on stderr (the traceback too under --debug)."""
    if _state.debug:
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return code


def _interrupted(cause: BaseException | None) -> int:
    if isinstance(cause, Terminated):
        click.echo("terminated", err=True)
        return 128 + signal.SIGTERM
    click.echo("interrupted", err=True)
    return 130
