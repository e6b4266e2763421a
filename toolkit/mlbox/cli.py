"""The ``mlbox`` command line. Commands parse options and call the core; nothing more.

Logs and build output go to stderr; results (image references) go to stdout, last line.
Errors from the core (MlboxError) become one message and a fixed exit code, here only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlbox.errors import MlboxError

if TYPE_CHECKING:
    from mlbox.catalog import Catalog
    from mlbox.plan import BuildPlan

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("mlbox")


@dataclass(frozen=True)
class Context:
    catalog_path: Path
    debug: bool

    def catalog(self) -> Catalog:
        from mlbox.catalog import load_catalog  # lazy: keeps `mlbox --help` instant

        return load_catalog(self.catalog_path)


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
    """The options that pick one cell of the image matrix (shared by render and build)."""
    options = [
        click.option("--model", "-m", required=True, envvar="MLBOX_MODEL", help="Model name, e.g. resnet50."),
        click.option("--device", "-d", default="cpu", show_default=True, envvar="MLBOX_DEVICE", help="Device: cpu."),
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _plan(
    ctx: Context, model: str, device: str, variant: str | None, backend: str | None, base_image: str | None
) -> BuildPlan:
    from mlbox.catalog import check_image_ref
    from mlbox.paths import templates_dir
    from mlbox.plan import make_plan, select

    if base_image is not None:
        check_image_ref(base_image, what="--base-image")
    spec = select(ctx.catalog(), model=model, device=device, variant=variant, backend=backend, base_image=base_image)
    return make_plan(spec, templates_dir())


@cli.command()
@selection_options
@pass_ctx
def render(
    ctx: Context, model: str, device: str, variant: str | None, backend: str | None, base_image: str | None
) -> None:
    """Print the rendered Dockerfile for one image (no engine needed)."""
    plan = _plan(ctx, model, device, variant, backend, base_image)
    click.echo(plan.dockerfile, nl=False)


@cli.command()
@selection_options
@click.option(
    "--model-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MLBOX_MODEL_FILE",
    help="Use this local model file (verified against the catalog's checksum).",
)
@click.option("--model-url", envvar="MLBOX_MODEL_URL", help="Download the model from this URL (a mirror) instead.")
@pass_ctx
def build(
    ctx: Context,
    model: str,
    device: str,
    variant: str | None,
    backend: str | None,
    base_image: str | None,
    model_file: Path | None,
    model_url: str | None,
) -> None:
    """Fetch the model, resolve the wheelhouse and build the image.

    Build output streams to stderr; the image reference is the last line on stdout.
    """
    from mlbox.build import build_image
    from mlbox.catalog import check_url
    from mlbox.engine import DockerEngine
    from mlbox.paths import cache_dir

    if model_url is not None:
        check_url(model_url, what="--model-url")
    plan = _plan(ctx, model, device, variant, backend, base_image)
    engine = DockerEngine()
    engine.api_version()  # fail fast, before downloads, when no engine is running
    result = build_image(
        plan,
        engine,
        cache=cache_dir(),
        on_line=lambda line: click.echo(f"  | {line}", err=True),
        model_file=model_file,
        model_url=model_url,
    )
    log.info("built %s (%s)", result.tag, result.image_id)
    click.echo(result.tag)


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
