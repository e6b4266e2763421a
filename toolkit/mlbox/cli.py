"""The ``mlbox`` command line. Commands parse options, call the core and print; nothing more.

Logs and build output go to stderr; results (image references) go to stdout, last line.
Every exit goes through ``main``: errors from the core (MlboxError) become one message
and a fixed exit code there (errors.exit_codes() is the table), with a traceback under
--debug / MLBOX_DEBUG. Every option has an MLBOX_* variable, shown by --help, and a
default the user's configuration file may set (config.py).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlbox.errors import MlboxError, exit_codes

if TYPE_CHECKING:
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


_state = _State()


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option with its MLBOX_* variable, shown in --help."""
    return click.option(*decls, envvar=env, show_envvar=True, **kwargs)


@dataclass(frozen=True)
class Context:
    catalog_path: Path | None  # None: the catalog shipped with mlbox
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

            self._engines.append(connect())
        return self._engines[0]


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
@option("--debug", is_flag=True, env="MLBOX_DEBUG", help="Show tracebacks and debug logs.")
@click.version_option(package_name="mlbox")
@click.pass_context
def cli(ctx: click.Context, catalog: Path | None, config_path: Path | None, debug: bool) -> None:
    """mlbox: build self-contained MLPerf Inference LoadGen benchmark images and run them."""
    _state.debug = debug
    logging.basicConfig(format="mlbox: %(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    from mlbox.config import read_config
    from mlbox.paths import config_file

    settings = read_config(config_path or config_file(), _option_names())
    # Each command sees the file's values as its options' defaults (flags and MLBOX_* win).
    ctx.default_map = {
        name: {p.name: settings[p.name] for p in command.params if p.name in settings}
        for name, command in cli.commands.items()
    }
    ctx.obj = Context(catalog_path=catalog)


def _option_names() -> set[str]:
    """Every option name of every command: what a configuration file may set."""
    return {p.name for c in cli.commands.values() for p in c.params if isinstance(p, click.Option) and p.name}


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
            type=click.Choice(["nvidia", "pip"]),
            default=None,
            env="MLBOX_CUDA_FROM",
            help="cuda images: NVIDIA's CUDA runtime base image, or NVIDIA's CUDA/cuDNN wheels on the plain base "
            "[default: nvidia; pip for a backend whose wheels bring their own CUDA (tensorflow)].",
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


def json_option(func: F) -> F:
    return option("--json", "as_json", is_flag=True, env="MLBOX_JSON", help="Print JSON on stdout instead.")(func)


def _plans(ctx: Context, kwargs: dict[str, Any], *, all_: bool) -> list[BuildPlan]:
    """The plans of a selection; cells mlbox cannot build yet are named on stderr."""
    from mlbox.paths import templates
    from mlbox.plan import Selection, plans_for

    selected = Selection(**{k: kwargs[k] for k in Selection.__dataclass_fields__})
    plans, skipped = plans_for(ctx.catalog(), selected, templates(), all_=all_)
    for c in skipped:
        log.info("skipping %s/%s on %s: mlbox cannot build it yet (needs %s)", c.model, c.variant, c.device, c.missing)
    return plans


def registry_options(func: F) -> F:
    options = [
        option("--registry", env="MLBOX_REGISTRY", help="Where to push: HOST[:PORT]/NAMESPACE."),
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
    """Every image in the catalog: model, variant, device, backend, tag, built?, pushed?

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
        ["MODEL", "VARIANT", "DEVICE", "BACKEND", "TAG", "BUILT", "PUSHED", "NOTE"],
        [
            [
                r["model"], r["variant"], r["device"], r["backend"], r["tag"], yes_no(r["built"]),
                yes_no(bool(r["pushed"])), "" if r["buildable"] else "needs " + str(r["missing"]),
            ]
            for r in rows
        ],
    )  # fmt: skip


@cli.command()
@selection_options
@all_option
@option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    env="MLBOX_OUT",
    help="Write <tag>.Dockerfile files here instead of printing (required with --all).",
)
@pass_ctx
def render(ctx: Context, /, all_: bool, out: Path | None, **kwargs: Any) -> None:
    """Render Dockerfiles (no engine needed): one to stdout, or --all --out DIR."""
    plans = _plans(ctx, kwargs, all_=all_)
    if out is None:
        if len(plans) > 1:
            msg = "--all renders many Dockerfiles: pass --out DIR"
            raise click.UsageError(msg)
        click.echo(plans[0].dockerfile, nl=False)
        return
    from mlbox.build import write_dockerfile

    out.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        click.echo(write_dockerfile(out, plan))


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
    and exits with the benchmark's exit code (0 VALID, 4 INVALID, ...).
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
        log.warning("no result.json in %s (exit code %d)", out, code)
    return code


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
    from mlbox.files import atomic_file
    from mlbox.results import collect, plot_html, table_rows

    runs = collect(list(dirs) or [Path("results")])
    if not runs:
        msg = "no result.json under " + ", ".join(str(d) for d in dirs or [Path("results")])
        raise MlboxError(msg, hint="run a benchmark first: `mlbox run` or `make demo`")
    columns = ["RUN", "IMAGE", "DIGEST", "SCENARIO", "METRIC", "VALIDITY", "P99 MS"]
    rows = table_rows(runs)
    if as_json:
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
    else:
        ui.table(columns, rows)
    if plot is not None:
        with atomic_file(plot) as (f, _):
            f.write(plot_html(runs).encode())
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
        ctx.engine(), base_images=bases, cache=cache_dir(), registry=registry, username=user, password=password,
        cuda=cuda,
    )  # fmt: skip
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

    Every argument is passed to mlbox-bench; `mlbox bench --help` shows them.
    """
    from mlbox_bench.cli import main as bench_main

    return bench_main(list(bench_args))


def main(argv: list[str] | None = None) -> int:
    """The one way out of mlbox: every command's result and every error become an exit code here."""
    _state.debug = False
    try:
        rv = cli.main(args=argv, prog_name="mlbox", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except MlboxError as err:
        if _state.debug:
            traceback.print_exc()
        click.echo(f"error: {err}", err=True)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return rv if isinstance(rv, int) else 0
