"""The ``mlbox`` command line. Commands parse options and call the core; nothing more.

Logs and build output go to stderr; results (image references) go to stdout, last line.
Errors from the core (MlboxError) become one message and a fixed exit code, here only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlbox.errors import MlboxError

if TYPE_CHECKING:
    from mlbox.catalog import Catalog
    from mlbox.plan import BuildPlan
    from mlbox.publish import Credentials, Registry

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("mlbox")


@dataclass(frozen=True)
class Context:
    catalog_path: Path
    debug: bool
    _loaded: list[Catalog] = field(default_factory=list, repr=False, compare=False)

    def catalog(self) -> Catalog:
        """The catalog, read and validated on first use only (a command may ask twice)."""
        if not self._loaded:
            from mlbox.catalog import load_catalog  # lazy: keeps `mlbox --help` instant

            self._loaded.append(load_catalog(self.catalog_path))
        return self._loaded[0]


pass_ctx = click.make_pass_decorator(Context)


def _default_catalog() -> str:
    from mlbox.paths import default_catalog

    return str(default_catalog())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    default=_default_catalog,
    envvar="MLBOX_CATALOG",
    show_envvar=True,
    help="The image catalog (images.yaml).",
)
@click.option("--debug", is_flag=True, envvar="MLBOX_DEBUG", help="Show tracebacks and debug logs.")
@click.version_option(package_name="mlbox")
@click.pass_context
def cli(ctx: click.Context, catalog: Path, debug: bool) -> None:
    """mlbox: build self-contained MLPerf Inference LoadGen benchmark images and run them."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="mlbox: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Context(catalog_path=catalog, debug=debug)


def selection_options(func: F) -> F:
    """The options that pick cells of the image matrix (shared by list, render and build).

    One image: --model (and optionally --device, --variant, --backend). With --all, every
    buildable image, and the same options become filters.
    """
    options = [
        click.option("--model", "-m", default=None, envvar="MLBOX_MODEL", help="Model name, e.g. resnet50."),
        click.option("--device", "-d", default=None, envvar="MLBOX_DEVICE", help="Device: cpu or cuda [default: cpu]."),
        click.option(
            "--variant", default=None, envvar="MLBOX_VARIANT", help="Model variant [default: the model's default]."
        ),
        click.option("--backend", default=None, envvar="MLBOX_BACKEND", help="Backend [default: the variant's]."),
        click.option(
            "--base-image",
            default=None,
            envvar="MLBOX_BASE_IMAGE",
            help="Base image reference (e.g. from `mlbox base`) [default: the catalog's].",
        ),
        click.option(
            "--cuda-from",
            type=click.Choice(["nvidia", "pip"]),
            default="nvidia",
            show_default=True,
            envvar="MLBOX_CUDA_FROM",
            help="cuda images: NVIDIA's CUDA runtime base image, or NVIDIA's CUDA/cuDNN wheels on the plain base.",
        ),
        click.option(
            "--loadgen-from",
            type=click.Choice(["wheel", "source"]),
            default="wheel",
            show_default=True,
            envvar="MLBOX_LOADGEN_FROM",
            help="LoadGen from PyPI's wheel, or compiled from PyPI's sdist in a builder stage.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class Selection:
    model: str | None
    device: str | None
    variant: str | None
    backend: str | None
    base_image: str | None
    loadgen_from: str
    cuda_from: str


def selection(**kwargs: Any) -> Selection:
    return Selection(**{k: kwargs[k] for k in Selection.__dataclass_fields__})


def _plans(ctx: Context, sel: Selection, *, all_: bool) -> list[BuildPlan]:
    """One plan (a --model selection) or, with --all, every buildable cell the filters allow."""
    from mlbox.catalog import check_image_ref
    from mlbox.errors import CatalogError
    from mlbox.paths import templates_dir
    from mlbox.plan import make_plan, matrix, select

    if sel.base_image is not None:
        check_image_ref(sel.base_image, what="--base-image")
    catalog = ctx.catalog()
    if all_:
        cells = matrix(
            catalog, model=sel.model, device=sel.device, variant=sel.variant, backend=sel.backend,
            base_image=sel.base_image, cuda_from=sel.cuda_from,
        )  # fmt: skip
        for c in cells:
            if c.spec is None:
                log.info(
                    "skipping %s/%s on %s: mlbox cannot build it yet (needs %s)",
                    c.model,
                    c.variant,
                    c.device,
                    c.missing,
                )
        specs = [c.spec for c in cells if c.spec is not None]
        if not specs:
            msg = "no buildable image matches these filters"
            raise CatalogError(msg, hint="`mlbox list` shows every image and why some cannot be built")
    else:
        if sel.model is None:
            msg = "pick an image with --model (and --device, --variant), or pass --all"
            raise CatalogError(msg, hint="`mlbox list` shows what exists")
        specs = [
            select(
                catalog, model=sel.model, device=sel.device or "cpu", variant=sel.variant, backend=sel.backend,
                base_image=sel.base_image, cuda_from=sel.cuda_from,
            )
        ]  # fmt: skip
    build_requires = catalog.defaults.loadgen_build_requires
    return [
        make_plan(spec, templates_dir(), loadgen_from=sel.loadgen_from, loadgen_build_requirements=build_requires)
        for spec in specs
    ]


def registry_options(func: F) -> F:
    options = [
        click.option("--registry", envvar="MLBOX_REGISTRY", help="Where to push: HOST[:PORT]/NAMESPACE."),
        click.option("--username", help="Registry user; the password comes from --password-stdin."),
        click.option("--password-stdin", is_flag=True, help="Read the registry password from standard input."),
    ]
    for option in reversed(options):
        func = option(func)
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


def _push(tags: list[str], target: Registry, creds: Credentials | None) -> list[str]:
    """Push local tags; print NAME@DIGEST per image on stdout; return the references."""
    from mlbox import ui
    from mlbox.engine import DockerEngine
    from mlbox.paths import publish_records
    from mlbox.publish import push_image

    engine = DockerEngine()
    engine.api_version()
    references = []
    for tag in tags:
        log.info("pushing %s to %s/%s", tag, target.host, target.namespace)
        published = push_image(
            engine,
            tag,
            target,
            creds,
            records=publish_records(),
            on_progress=lambda line: ui.console.print(f"  | {line}"),
        )
        click.echo(published.reference)
        references.append(published.reference)
    return references


@cli.command(name="list")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def list_(ctx: Context, /, as_json: bool, **kwargs: Any) -> None:
    """Every image in the catalog: model, variant, device, backend, tag, built?, pushed?

    Filters: --model, --device, --variant, --backend. Images mlbox cannot build yet are
    listed with what they need. Built? asks the engine; without one it says unknown.
    """
    import json

    from mlbox.inventory import inventory

    sel = selection(**kwargs)
    rows = inventory(ctx.catalog(), model=sel.model, device=sel.device, variant=sel.variant, backend=sel.backend)
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
@click.option("--all", "all_", is_flag=True, help="Every buildable image (the selection options filter).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <tag>.Dockerfile files here instead of printing (required with --all).",
)
@pass_ctx
def render(ctx: Context, /, all_: bool, out: Path | None, **kwargs: Any) -> None:
    """Render Dockerfiles (no engine needed): one to stdout, or --all --out DIR."""
    plans = _plans(ctx, selection(**kwargs), all_=all_)
    if out is None:
        if len(plans) > 1:
            msg = "--all renders many Dockerfiles: pass --out DIR"
            raise click.UsageError(msg)
        click.echo(plans[0].dockerfile, nl=False)
        return
    from mlbox.render import write_dockerfile

    out.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        click.echo(write_dockerfile(out, plan))


@cli.command()
@selection_options
@click.option("--all", "all_", is_flag=True, help="Every buildable image (the selection options filter).")
@click.option(
    "--model-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MLBOX_MODEL_FILE",
    help="Use this local model file (verified against the catalog's checksum).",
)
@click.option("--model-url", envvar="MLBOX_MODEL_URL", help="Download the model from this URL instead.")
@click.option(
    "--mirror",
    envvar="MLBOX_MIRROR",
    help="Base URL of a model mirror (air-gapped sites): files are fetched as MIRROR/<file>, then verified.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--push", "push_after", is_flag=True, help="Push each image after it is built (needs --registry).")
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
    from mlbox.engine import DockerEngine
    from mlbox.paths import cache_dir

    for value, what in ((model_url, "--model-url"), (mirror, "--mirror")):
        if value is not None:
            check_url(value, what=what)
    # A bad --registry or a missing password is refused before anything is built.
    target = _registry_and_credentials(registry, username, password_stdin) if push_after else None
    plans = _plans(ctx, selection(**kwargs), all_=all_)
    mirror = mirror or ctx.catalog().defaults.mirror
    if len(plans) > 1 and (model_file or model_url):
        msg = "--model-file/--model-url name one file: build one image at a time with them"
        raise click.UsageError(msg)
    engine = DockerEngine()
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
        references = _push([r.tag for r in results], *target)
        for result, reference in zip(results, references, strict=True):
            result.pushed.append(reference)
    if as_json:
        click.echo(json.dumps([r.describe() for r in results], indent=2))


@cli.command()
@selection_options
@click.option("--all", "all_", is_flag=True, help="Every buildable image the filters allow (all must be built).")
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
    plans = _plans(ctx, selection(**kwargs), all_=all_)
    _push([plan.spec.tag for plan in plans], target, creds)


@cli.command(context_settings={"ignore_unknown_options": True})
@selection_options
@click.option("--image", help="Run this image reference instead of a catalog selection.")
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    help="Results directory, mounted at /results [default: results/<image>-<time>].",
)
@click.option("--network", default="none", show_default=True, help="Container network: none, bridge, host, ...")
@click.option(
    "--shm-size", default="2g", show_default=True, help="Size of /dev/shm (processpool shares samples there)."
)
@click.option("--cpuset-cpus", help="Pin the container to these CPUs, e.g. 0-3.")
@click.option("--read-only", is_flag=True, help="Read-only root filesystem (the results mount stays writable).")
@click.option(
    "--gpus",
    type=click.Choice(["auto", "all", "none"]),
    default="auto",
    show_default=True,
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
) -> None:
    """Run a benchmark image: `mlbox run -m resnet50 -- --scenario Server --target-qps 20`.

    Runs as you (--user), with no network, streams the log, prints where result.json is
    and exits with the benchmark's exit code (0 VALID, 4 INVALID, ...).
    """
    from mlbox import ui
    from mlbox.catalog import check_image_ref
    from mlbox.engine import DockerEngine
    from mlbox.run import RunOptions, default_results_dir, run_benchmark

    if image is None:
        image = _plans(ctx, selection(**kwargs), all_=False)[0].spec.tag
    check_image_ref(image, what="--image")
    out = results or default_results_dir(image)
    opts = RunOptions(out, network, shm_size, cpuset_cpus, read_only, gpus)
    log.info("running %s; results in %s", image, out)
    code = run_benchmark(DockerEngine(), image, bench_args, opts, on_line=lambda line: ui.console.print(line))
    result = out / "result.json"
    if result.is_file():
        click.echo(result)
    else:
        log.warning("no result.json in %s (exit code %d)", out, code)
    sys.exit(code)


@cli.command()
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write latency percentiles as HTML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
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
@click.option(
    "--registry", envvar="MLBOX_REGISTRY", help="Also check this registry (HOST[:PORT]/NAMESPACE) and your login."
)
@click.option("--cuda", is_flag=True, help="Also check the GPU runtime (for cuda images).")
@click.option("--base-image", envvar="MLBOX_BASE_IMAGE", help="Also check this base image.")
@pass_ctx
def doctor(ctx: Context, /, registry: str | None, cuda: bool, base_image: str | None) -> None:
    """Check the engine, base image, registry login, disk space and GPU runtime; say what to fix."""
    from mlbox import ui
    from mlbox.doctor import credentials_from_env, run_checks
    from mlbox.paths import cache_dir

    bases = [ctx.catalog().defaults.base_image, *([base_image] if base_image else [])]
    user, password = credentials_from_env()
    checks = run_checks(
        base_images=bases, cache=cache_dir(), registry=registry, username=user, password=password, cuda=cuda
    )
    marks = {True: "ok", False: "FAIL", None: "-"}
    ui.table(["CHECK", "", "DETAIL", "FIX"], [[c.name, marks[c.ok], c.detail, c.fix] for c in checks])
    if any(c.ok is False for c in checks):
        sys.exit(1)


@cli.command()
@click.option("--suite", default="bookworm", show_default=True, envvar="MLBOX_BASE_SUITE", help="Debian suite.")
@click.option(
    "--mirror",
    default="http://deb.debian.org/debian",
    show_default=True,
    envvar="MLBOX_DEBIAN_MIRROR",
    help="Debian mirror; a snapshot.debian.org URL makes the base reproducible.",
)
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def base(suite: str, mirror: str, force: bool) -> None:
    """Make a base image from Debian packages (debootstrap + docker import).

    For machines that cannot pull images. Prints the image reference last on stdout.
    """
    from mlbox.base import BaseSpec, make_base
    from mlbox.catalog import check_name, check_url
    from mlbox.engine import DockerEngine

    check_name(suite, what="--suite")
    check_url(mirror, what="--mirror")
    click.echo(make_base(BaseSpec(suite=suite, mirror=mirror), DockerEngine(), force=force))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def bench(bench_args: tuple[str, ...]) -> None:
    """Run the benchmark harness (mlbox-bench) on this host, without Docker.

    Every argument is passed to mlbox-bench; `mlbox bench --help` shows them.
    """
    from mlbox_bench.cli import main as bench_main

    sys.exit(bench_main(list(bench_args)))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="mlbox", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except MlboxError as err:
        if "--debug" in (argv or sys.argv):
            raise
        click.echo(f"error: {err}", err=True)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0
