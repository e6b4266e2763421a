"""The build executor: walks a BuildPlan. Fetch, stage a context, build through the engine."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from mlbox.convert import derived_model
from mlbox.engine import Engine, LineSink
from mlbox.errors import BuildError
from mlbox.fetch import ModelFile, digests, obtain_model, stage_file
from mlbox.files import atomic_file
from mlbox.plan import BuildPlan, ContextEntry
from mlbox.wheelhouse import LOCK_FILE, wheelhouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """What a build needs from the host, all verified: the model and the wheelhouses
    (by the context folder each one fills)."""

    model: ModelFile
    wheelhouses: dict[str, Path]


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    model: ModelFile
    plan: BuildPlan
    pushed: list[str] = field(default_factory=list)  # NAME@DIGEST, filled by --push

    def describe(self) -> dict[str, object]:
        """The machine-readable result (`mlbox build --json`)."""
        spec = self.plan.spec
        return {
            "tag": self.tag,
            "image_id": self.image_id,
            "model": spec.model,
            "variant": spec.variant,
            "device": spec.device,
            "backend": spec.backend,
            "weights": spec.weights,
            "model_sha256": self.model.sha256,
            "model_source": self.model.source,
            "loadgen": {"version": spec.loadgen, "from": self.plan.loadgen_from},
            "labels": dict(self.plan.labels),
            "pushed": list(self.pushed),
        }


def prepare_inputs(
    plan: BuildPlan,
    cache: Path,
    *,
    model_file: Path | None = None,
    model_url: str | None = None,
    mirror: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Inputs:
    spec = plan.spec
    log.info("model: %s/%s (%s weights)", spec.model, spec.variant, spec.weights)
    wanted = spec.source_variant or spec.variant_spec  # a derived variant is made from its source
    model = obtain_model(wanted, cache, model_file=model_file, url=model_url, mirror=mirror, progress=progress)
    derive = spec.variant_spec.derive
    if derive is not None:
        path = derived_model(spec.variant_spec, model.path, model.sha256, cache)
        md5, sha = digests(path)
        model = ModelFile(path, sha, md5, f"{derive.convert} of {model.source}")
    log.info("model file %s sha256 %s", model.path, model.sha256)
    log.info("resolving Python packages for the image on the host (wheelhouse)")
    houses = {
        w.folder: wheelhouse(
            w.requirements,
            python=spec.python,
            platform=spec.wheel_platform,
            cache=cache,
            no_deps=w.no_deps,
            sdist=w.sdist,
            index=w.index,
        )
        for w in plan.wheelhouses
    }
    return Inputs(model, houses)


def build_args(plan: BuildPlan, inputs: Inputs, *, created: datetime | None = None) -> dict[str, str]:
    """The per-build values of the plan's build arguments (they feed labels)."""
    values = {
        "MLBOX_CREATED": (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "MLBOX_MODEL_SHA256": inputs.model.sha256,
    }
    if set(values) != set(plan.build_args):  # the layout contract and this executor disagree: a bug
        msg = f"the executor fills {sorted(values)} but the plan declares {sorted(plan.build_args)}"
        raise BuildError(msg)
    return values


def build_image(
    plan: BuildPlan, engine: Engine, inputs: Inputs, *, on_line: LineSink, nocache: bool = False
) -> BuildResult:
    spec = plan.spec
    with tempfile.TemporaryDirectory(prefix="mlbox-context-") as tmp:
        context = Path(tmp)
        stage_context(context, plan, inputs)
        log.info("building %s", spec.tag)
        image_id = engine.build(
            context, tag=spec.tag, buildargs=build_args(plan, inputs), on_line=on_line, nocache=nocache
        )
    return BuildResult(tag=spec.tag, image_id=image_id, model=inputs.model, plan=plan)


def stage_context(context: Path, plan: BuildPlan, inputs: Inputs) -> None:
    """Lay out the build context: every entry of the plan, nothing else."""
    context.chmod(0o755)
    for entry in plan.context:
        _STAGERS[entry.kind](context / entry.dest, entry, inputs)
    executables = {context / e.dest for e in plan.context if e.executable}
    for path in [context, *context.rglob("*")]:  # readable by the image's non-root user
        path.chmod(0o755 if path.is_dir() or path in executables else 0o644)


def _stage_text(dest: Path, entry: ContextEntry, inputs: Inputs) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(entry.value)


def _stage_model(dest: Path, entry: ContextEntry, inputs: Inputs) -> None:
    stage_file(inputs.model.path, dest)


def _stage_wheelhouse(dest: Path, entry: ContextEntry, inputs: Inputs) -> None:
    source = inputs.wheelhouses[entry.value]
    for dist in sorted([*source.glob("*.whl"), *source.glob("*.tar.gz")]):
        stage_file(dist, dest / dist.name)
    stage_file(source / LOCK_FILE, dest / LOCK_FILE)


def _stage_package(dest: Path, entry: ContextEntry, inputs: Inputs) -> None:
    copy_tree(files(entry.value), dest)


_STAGERS: dict[str, Callable[[Path, ContextEntry, Inputs], None]] = {
    "text": _stage_text,
    "model": _stage_model,
    "wheelhouse": _stage_wheelhouse,
    "package": _stage_package,
}


def copy_tree(source: Traversable, dest: Path) -> None:
    """Copy an installed package's files (importlib.resources), without bytecode caches."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "__pycache__" or entry.name.endswith(".pyc"):
            continue
        if entry.is_dir():
            copy_tree(entry, dest / entry.name)
        else:
            (dest / entry.name).write_bytes(entry.read_bytes())


def write_dockerfile(directory: Path, plan: BuildPlan) -> Path:
    """Write atomically (a half-written Dockerfile is never left behind); return the path."""
    target = directory / plan.dockerfile_name
    with atomic_file(target) as (out, _):
        out.write(plan.dockerfile.encode())
    return target
