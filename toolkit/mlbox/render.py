"""Render Dockerfiles from the Jinja2 templates (mlbox's packaged dockerfiles/).

Templates hold layout; every value they receive was validated by the catalog schema,
and ``_context`` re-checks that no string can start a new Dockerfile line. Templates are
read through importlib.resources' Traversable, so a wheel install renders the same as a
checkout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from typing import Any

import jinja2

from mlbox import layout
from mlbox.catalog import Catalog
from mlbox.errors import CatalogError, TemplateError
from mlbox.spec import ImageSpec

ENTRY_TEMPLATE = "Dockerfile.j2"


def _environment(templates: Traversable) -> jinja2.Environment:
    def load(name: str) -> str | None:
        path = templates.joinpath(*name.split("/"))
        return path.read_text(encoding="utf-8") if path.is_file() else None

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never empty text
        autoescape=False,  # Dockerfiles, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # JSON string quoting is also valid Dockerfile quoting for LABEL/ENV values.
    env.filters["q"] = json.dumps
    return env


def _template_files(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _template_files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".j2"):
            yield prefix + entry.name, entry


def template_names(templates: Traversable) -> list[str]:
    """Every template file, as the loader names it (`partials/backend-onnxruntime.j2`)."""
    return [name for name, _ in _template_files(templates)]


def check_partials(catalog: Catalog, templates: Traversable) -> None:
    """Every device and every buildable backend of the catalog has its template partial:
    a catalog that names one mlbox cannot render is refused when it loads, not mid-build."""
    names = set(template_names(templates))
    wanted = [("devices", d, f"partials/device-{d}.j2") for d in catalog.devices]
    wanted += [("backends", b, f"partials/backend-{b}.j2") for b, spec in catalog.backends.items() if not spec.missing]
    for section, name, partial in wanted:
        if partial not in names:
            msg = f"{section}.{name}: mlbox has no template for it ({partial})"
            have = sorted(n.removeprefix("partials/").removesuffix(".j2") for n in names if n.startswith("partials/"))
            raise CatalogError(msg, hint=f"mlbox's partials: {', '.join(have)}; or set {section}.{name}.missing")


def template_hash(templates: Traversable) -> str:
    """sha256 over every template file: labels the image with the layout it was built from."""
    digest = hashlib.sha256()
    for name, path in _template_files(templates):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def render_dockerfile(
    templates: Traversable,
    spec: ImageSpec,
    labels: tuple[tuple[str, str], ...],
    defaults: tuple[tuple[str, str], ...],
) -> str:
    """The Dockerfile of one image. ``defaults`` are (mlbox-bench option, value) pairs the
    image sets as MLBOX_DEFAULT_<OPTION>."""
    context = _context(spec, labels, defaults)
    try:
        return _environment(templates).get_template(ENTRY_TEMPLATE).render(**context)
    except jinja2.TemplateNotFound as err:
        msg = f"template {err.name!r} not found among mlbox's templates"
        raise TemplateError(msg, hint="reinstall mlbox, or check that dockerfiles/ is complete") from None
    except jinja2.UndefinedError as err:
        msg = f"template {ENTRY_TEMPLATE} uses an undefined value: {err.message}"
        raise TemplateError(msg) from None
    except jinja2.TemplateSyntaxError as err:
        msg = f"template {err.filename or err.name}:{err.lineno}: {err.message}"
        raise TemplateError(msg) from None


def _context(
    spec: ImageSpec,
    labels: tuple[tuple[str, str], ...],
    defaults: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "spec": spec,
        "variant": spec.variant_spec,
        "labels": labels,
        "defaults": tuple((layout.default_variable(name), value) for name, value in defaults),
        "build_args": layout.BUILD_ARG_LABELS,
        "loadgen_from": spec.loadgen_from,
        "L": layout,  # paths, uid and context folder names: the one layout contract
    }
    _refuse_line_breaks({k: v for k, v in context.items() if k != "L"})
    return context


def _refuse_line_breaks(value: object, path: str = "") -> None:
    """Defence in depth: the schema already refuses these, but a template must never see one."""
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            msg = f"value {path} contains a line break: {value!r}"
            raise TemplateError(msg)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_line_breaks(item, f"{path}.{key}")
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            _refuse_line_breaks(item, f"{path}[{i}]")
    elif hasattr(value, "__dataclass_fields__"):
        for key in value.__dataclass_fields__:
            _refuse_line_breaks(getattr(value, key), f"{path}.{key}")
