"""Render Dockerfiles from the Jinja2 templates in dockerfiles/.

Templates hold layout; every value they receive was validated by the catalog schema,
and ``_context`` re-checks that no string can start a new Dockerfile line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from mlbox.errors import TemplateError
from mlbox.plan import BUILD_ARGS, IMAGE_ROOT, IMAGE_UID, MODEL_DIR, RESULTS_DIR

if TYPE_CHECKING:
    from mlbox.plan import BuildPlan, ImageSpec

ENTRY_TEMPLATE = "Dockerfile.j2"


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never empty text
        autoescape=False,  # Dockerfiles, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # JSON string quoting is also valid Dockerfile quoting for LABEL/ENV values.
    env.filters["q"] = json.dumps
    return env


def template_hash(templates_dir: Path) -> str:
    """sha256 over every template file: labels the image with the layout it was built from."""
    digest = hashlib.sha256()
    for path in sorted(templates_dir.rglob("*.j2")):
        digest.update(path.relative_to(templates_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def render_dockerfile(
    templates_dir: Path, spec: ImageSpec, labels: tuple[tuple[str, str], ...], *, loadgen_from: str = "wheel"
) -> str:
    context = _context(spec, labels)
    context["loadgen_from"] = loadgen_from
    try:
        return _environment(templates_dir).get_template(ENTRY_TEMPLATE).render(**context)
    except jinja2.TemplateNotFound as err:
        msg = f"template {err.name!r} not found under {templates_dir}"
        raise TemplateError(msg, hint="check that dockerfiles/ is complete") from None
    except jinja2.UndefinedError as err:
        msg = f"template {ENTRY_TEMPLATE} uses an undefined value: {err.message}"
        raise TemplateError(msg) from None
    except jinja2.TemplateSyntaxError as err:
        msg = f"template {err.filename}:{err.lineno}: {err.message}"
        raise TemplateError(msg) from None


def _context(spec: ImageSpec, labels: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    context: dict[str, Any] = {
        "spec": spec,
        "variant": spec.variant_spec,
        "labels": labels,
        "build_args": BUILD_ARGS,
        "image_root": IMAGE_ROOT,
        "model_dir": MODEL_DIR,
        "results_dir": RESULTS_DIR,
        "uid": IMAGE_UID,
    }
    _refuse_line_breaks(context)
    return context


def dockerfile_name(plan: BuildPlan) -> str:
    """`mlbox:resnet50-cpu-synthetic` -> `resnet50-cpu-synthetic.Dockerfile`."""
    name = plan.spec.tag.rsplit(":", 1)[-1]
    return name + ("-loadgen-source" if plan.loadgen_from == "source" else "") + ".Dockerfile"


def write_dockerfile(directory: Path, plan: BuildPlan) -> Path:
    """Write atomically (a half-written Dockerfile is never left behind); return the path."""
    from mlbox.files import atomic_file

    target = directory / dockerfile_name(plan)
    with atomic_file(target) as (out, _):
        out.write(plan.dockerfile.encode())
    return target


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
