"""`mlbox list`: the image matrix joined with what the engine has and what was published."""

from __future__ import annotations

import logging
from typing import Any

from mlbox.catalog import Catalog
from mlbox.engine import Engine
from mlbox.errors import EngineError, RecordError
from mlbox.files import not_text
from mlbox.paths import publish_records
from mlbox.plan import matrix
from mlbox.publish import list_field, read_records

log = logging.getLogger(__name__)


def inventory(
    catalog: Catalog,
    engine: Engine,
    *,
    model: str | None = None,
    device: str | None = None,
    variant: str | None = None,
    backend: str | None = None,
) -> list[dict[str, Any]]:
    cells = matrix(catalog, model=model, device=device, variant=variant, backend=backend)
    built = _built(engine, {c.tag for c in cells})
    pushed = _pushed()
    return [
        {
            "model": c.model,
            "task": catalog.models[c.model].task,
            "variant": c.variant,
            "device": c.device,
            "backend": c.backend,
            "tag": c.tag,
            "buildable": c.spec is not None,
            "missing": c.missing,
            "weights": "synthetic" if catalog.models[c.model].is_synthetic(c.variant) else "published",
            "built": None if built is None else c.tag in built,
            "pushed": pushed.get(c.tag, []),
        }
        for c in cells
    ]


def _built(engine: Engine, tags: set[str]) -> set[str] | None:
    """Tags the engine has; None when no engine answers (`built?` is then unknown)."""
    try:
        return {tag for tag in sorted(tags) if engine.image_exists(tag)}
    except EngineError as err:
        log.warning("cannot ask the %s which images exist (%s): built? is unknown", engine.name, err)
        return None


def _pushed() -> dict[str, list[str]]:
    """Local tag -> references it was pushed as (with digests), from the publish records."""
    out: dict[str, list[str]] = {}
    for record in published_records():
        out.setdefault(record["image"], []).extend(str(r) for r in list_field(record, "references"))
    return out


def published_records() -> list[dict[str, Any]]:
    """The publish records (publish.read_records); RecordError, not a traceback, when the
    file cannot be read, is not UTF-8 or nests a line too deeply for json."""
    path = publish_records()
    try:
        return read_records(path)
    except OSError as err:
        msg = f"cannot read the publish records {path}: {err.strerror}"
        raise RecordError(msg, hint="fix its permissions, or point MLBOX_STATE_DIR elsewhere") from None
    except UnicodeDecodeError as err:
        raise RecordError(str(not_text(path, err)), hint="remove or fix the lines that are not JSON") from None
    except RecursionError:  # json.loads of a line of 100,000 "[": read_records skips only ValueError and TypeError
        msg = f"{path} has a line nested too deeply to read"
        raise RecordError(msg, hint="remove or fix the lines that are not publish records") from None
