"""`mlbox bake`: the build contexts of many images and a Buildx Bake file that builds them
on any BuildKit builder (docker-container, kubernetes, remote); `mlbox publish-record`:
the digests such a build pushed, back into mlbox's publish records.

mlbox schedules nothing here: it stages each context exactly as `mlbox build` does (model
verified, wheelhouse resolved, Dockerfile rendered) and describes the builds; the builder
runs them. The bake file and the records are pure functions of plans, build arguments,
metadata and the registry (`bake_file`, `records_from_metadata`), tested without an engine.
The executor (`write_bake`) writes the bake file last and atomically: DIR/docker-bake.json
exists only when every context it names is complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlbox import layout
from mlbox.build import Inputs, build_args, stage_context
from mlbox.errors import CatalogError, PushError, RecordError
from mlbox.files import NotText, atomic_file, read_text, writing_into
from mlbox.plan import BuildPlan
from mlbox.publish import Registry, Verified, make_record, parse_registry
from mlbox.spec import ImageSpec

log = logging.getLogger(__name__)

BAKE_FILE = "docker-bake.json"
# Bake refuses target and group names outside these characters.
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# The image's platform, from the wheel platform its wheelhouse was resolved for.
_PLATFORMS = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}


@dataclass(frozen=True)
class Target:
    """One image of the bake file: its plan, where its context is, and its build arguments."""

    name: str
    plan: BuildPlan
    args: Mapping[str, str]


def target_name(plan: BuildPlan) -> str:
    """`mlbox:resnet50-cpu-synthetic` -> `resnet50-cpu-synthetic`: the tag, as bake names go."""
    return _NOT_IN_NAME.sub("_", plan.spec.tag.rpartition(":")[2])


def platform(spec: ImageSpec) -> str:
    arch = next((a for a in _PLATFORMS if spec.wheel_platform.endswith("_" + a)), None)
    if arch is None:
        msg = f"no container platform for wheel platform {spec.wheel_platform!r}"
        raise CatalogError(msg, hint=f"mlbox knows {', '.join(_PLATFORMS)} wheels")
    return _PLATFORMS[arch]


def image_tags(plan: BuildPlan, registry: Registry | None) -> list[str]:
    """What `mlbox build` tags the image, or with a registry what `mlbox push` pushes it as."""
    if registry is None:
        return [plan.spec.tag]
    repository, _, tag = plan.spec.tag.rpartition(":")
    return [f"{registry.repository(repository)}:{tag}"]


def image_labels(plan: BuildPlan, args: Mapping[str, str]) -> dict[str, str]:
    """Every label an image built from ``plan`` with ``args`` carries: the plan's, and the
    ones the build arguments fill (the Dockerfile's LABEL line says the same)."""
    return dict(plan.labels) | {label: args[name] for name, label in layout.BUILD_ARG_LABELS.items()}


def cache_ref(plan: BuildPlan, registry: Registry) -> str:
    """A registry cache per image, in a repository beside the images' (not among their tags)."""
    repository, _, tag = plan.spec.tag.rpartition(":")
    return f"{registry.repository(repository)}-cache:{tag}"


def bake_file(targets: Sequence[Target], root: Path, registry: Registry | None) -> dict[str, Any]:
    """The Buildx Bake file (JSON) for ``targets``, staged under ``root``.

    Contexts are absolute paths: bake resolves relative ones against the directory it runs
    in, not the file's. Without a registry, targets carry the local tags (`--load`); with
    one, the registry's tags and a registry cache (mode=max caches every stage).
    """
    definitions: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {"default": []}
    for t in targets:
        spec = t.plan.spec
        definition: dict[str, Any] = {
            "context": str(root / t.name),
            "dockerfile": "Dockerfile",
            "tags": image_tags(t.plan, registry),
            "labels": image_labels(t.plan, t.args),
            "args": dict(t.args),
            "platforms": [platform(spec)],
        }
        if registry is not None:
            cache = cache_ref(t.plan, registry)
            definition["cache-from"] = [f"type=registry,ref={cache}"]
            definition["cache-to"] = [f"type=registry,ref={cache},mode=max"]
        definitions[t.name] = definition
        for group in ("default", spec.model, spec.device):
            groups.setdefault(_NOT_IN_NAME.sub("_", group), []).append(t.name)
    clash = sorted(set(groups) & set(definitions))
    if clash:
        msg = f"bake group and target names clash: {', '.join(clash)}"
        raise CatalogError(msg, hint="a model or device is named like an image tag: rename it in the catalog")
    return {
        "group": {name: {"targets": members} for name, members in groups.items()},
        "target": definitions,
    }


def write_bake(
    plans: Sequence[BuildPlan],
    out: Path,
    *,
    registry: Registry | None,
    prepare: Callable[[BuildPlan], Inputs],
    created: datetime,
    force: bool = False,
) -> Path:
    """Stage every plan's context into OUT/<target>/ and write OUT/docker-bake.json. What
    OUT holds under those names must be mlbox's (see files.WRITTEN) unless ``force``."""
    names = [BAKE_FILE, *(target_name(plan) for plan in plans)]
    # Refused before any download or staging; what is staged is recorded even if a later
    # target fails, so the next bake may replace it.
    with writing_into(out, names, force=force) as wrote:
        out.mkdir(parents=True, exist_ok=True)
        bake_path = out / BAKE_FILE
        # The contexts are about to change: no bake file may name a half-staged one meanwhile.
        bake_path.unlink(missing_ok=True)
        targets = []
        for plan in plans:
            inputs = prepare(plan)
            name = target_name(plan)
            _stage(out / name, plan, inputs)
            wrote(name)
            targets.append(Target(name, plan, build_args(plan, inputs, created=created)))
            log.info("staged %s in %s", plan.spec.tag, out / name)
        definition = bake_file(targets, out.resolve(), registry)
        with atomic_file(bake_path) as (f, _):
            f.write((json.dumps(definition, indent=2) + "\n").encode())
        wrote(BAKE_FILE)
    return bake_path


def _stage(dest: Path, plan: BuildPlan, inputs: Inputs) -> None:
    """Stage beside ``dest`` and rename: a failure leaves the previous context or none."""
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        stage_context(partial, plan, inputs)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


# (registry, local tag) -> the digest the registry holds for the tag; None: unreachable.
Lookup = Callable[[Registry, str], str | None]


def records_from_metadata(
    metadata: Mapping[str, Any],
    definition: Mapping[str, Any],
    registry: Registry | None,
    *,
    local_repository: str,
    lookup: Lookup,
) -> list[dict[str, Any]]:
    """Publish records for every target in bake's `--metadata-file` output, as `mlbox push`
    writes them. Labels come from the bake file (bake's metadata has none). A pushed name is
    REGISTRY/LOCAL_REPOSITORY:TAG (`mlbox push` names it so), which gives the registry, when
    none is given, and the local tag.

    A digest is recorded only under a name it belongs to: one of its own target's tags in
    the bake file, for which ``lookup`` (the registry) gives the same digest. Metadata is
    easily edited or mixed up with another build's, and `mlbox k8s` runs what the record
    names."""
    targets = definition.get("target")
    if not isinstance(targets, Mapping):
        msg = "the bake file has no targets"
        raise RecordError(msg, hint="pass the docker-bake.json that `mlbox bake` wrote (--bake-file)")
    records = []
    unreachable: set[Registry] = set()  # asked once: one timeout per registry, not one per image
    for name, result in metadata.items():
        if not isinstance(result, Mapping):
            continue  # not a target: bake also writes e.g. "buildx.build.warnings"
        if name not in targets:
            msg = f"the metadata names target {name!r}, which the bake file does not have"
            raise RecordError(msg, hint="pass the bake file this build used (--bake-file)")
        digest = result.get("containerimage.digest")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            msg = f"target {name!r} has no image digest in the metadata"
            raise RecordError(msg, hint="build with `docker buildx bake --push --metadata-file FILE`")
        names = [n.strip() for n in str(result.get("image.name") or "").split(",") if n.strip()]
        pushed = [(n, p) for n in names if (p := _pushed_as(n, local_repository, registry)) is not None]
        if not pushed:
            where = f"{registry.host}/{registry.namespace}" if registry else f"a registry as .../{local_repository}:TAG"
            msg = f"target {name!r} was pushed as {', '.join(names) or 'nothing'}, not to {where}"
            hint = "bake with `mlbox bake --registry R` and build with `docker buildx bake --push`"
            raise RecordError(msg, hint=hint)
        for pushed_name, _ in pushed:
            _check_own_tag(name, pushed_name, targets)
        config = result.get("containerimage.config.digest")
        image_id = config if isinstance(config, str) and _DIGEST.match(config) else None
        labels = targets[name].get("labels") or {}
        for pushed_name, (reg, tag) in pushed:
            found = None if reg in unreachable else lookup(reg, tag)
            if found is None:
                unreachable.add(reg)
            verified = _verify(pushed_name, digest, found)
            records.append(make_record(tag, reg, digest, image_id=image_id, labels=labels, verified=verified))
    if not records:
        msg = "the metadata file names no built target"
        raise RecordError(msg, hint="is it the file `docker buildx bake --metadata-file` wrote?")
    return records


def _check_own_tag(target: str, pushed_name: str, targets: Mapping[str, Any]) -> None:
    """Refuse ``pushed_name`` unless it is one of ``target``'s tags in the bake file."""
    own = list(targets[target].get("tags") or [])
    if pushed_name in own:
        return
    owner = next(
        (t for t, d in targets.items() if isinstance(d, Mapping) and pushed_name in (d.get("tags") or [])), None
    )
    whose = f"the tag of target {owner!r}" if owner else "a tag no target of the bake file has"
    msg = f"target {target!r} was pushed as {pushed_name}, {whose}; its own tags: {', '.join(own) or 'none'}"
    hint = (
        "record the unedited metadata file with the bake file of the same build (--bake-file); "
        "a digest is recorded only under its own target's tags (`mlbox bake --registry R` writes them)"
    )
    raise RecordError(msg, hint=hint)


def _verify(pushed_name: str, digest: str, in_registry: str | None) -> Verified:
    if in_registry is None:
        log.warning(
            "%s: the registry could not be reached: digest %s is not checked against it (recorded as metadata-only)",
            pushed_name,
            digest,
        )
        return "metadata-only"
    if in_registry != digest:
        msg = f"the registry holds {in_registry} for {pushed_name}, not the metadata's {digest}"
        hint = "the tag moved since (another push), or the metadata file is not this push's: record the right one"
        raise RecordError(msg, hint=hint)
    return "registry"


def _pushed_as(name: str, local_repository: str, registry: Registry | None) -> tuple[Registry, str] | None:
    """`host/ns/mlbox:tag` -> (host/ns, `mlbox:tag`); None for a name that is not
    ``registry``'s (or, without one, any registry's)."""
    head, sep, tag = name.rpartition(f"/{local_repository}:")
    if not sep or not head:
        return None
    try:
        found = parse_registry(head)
    except PushError:
        return None
    if registry is not None and found != registry:
        return None
    return found, f"{local_repository}:{tag}"


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except OSError as err:
        msg = f"cannot read the {what} {path}: {err.strerror}"
        raise RecordError(msg) from None
    except NotText as err:  # a sentence naming the file and its first bad byte
        msg = f"the {what} {err}"
        raise RecordError(msg) from None
    except ValueError as err:
        msg = f"the {what} {path} is not JSON: {err}"
        raise RecordError(msg) from None
    except RecursionError:  # json.loads recurses per level: 100,000 "[" exhaust the stack
        msg = f"the {what} {path} nests too deeply to be bake's"
        raise RecordError(msg) from None
    if not isinstance(data, dict):
        msg = f"the {what} {path} is not a JSON object"
        raise RecordError(msg)
    return data
