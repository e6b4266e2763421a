"""Publishing: tag, push through the engine, and record what the registry now holds.

A publish record (JSON lines, one per pushed image) is appended only after the registry
confirmed the push with a digest; a refused push leaves no record and no new tag.
Credentials travel only in the engine API's auth header: never in argv, logs, build
arguments, labels or layers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlbox.engine import Engine, LineSink
from mlbox.errors import EngineError, PushError
from mlbox.reference import check_domain, check_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registry:
    host: str
    namespace: str

    def repository(self, local_repository: str) -> str:
        return f"{self.host}/{self.namespace}/{local_repository}"


def parse_registry(text: str) -> Registry:
    """HOST[:PORT]/NAMESPACE, by the engines' reference grammar (see reference.py)."""
    host, sep, namespace = text.partition("/")
    try:
        if not sep:
            msg = "it has no /NAMESPACE"
            raise ValueError(msg)
        check_domain(host)
        check_path(namespace)
    except ValueError as err:
        msg = f"--registry {text[:80]!r} is not HOST[:PORT]/NAMESPACE (for example registry.example.com/ml): {err}"
        raise PushError(msg, hint="no scheme (http://) and no tag; lower-case letters, digits, '.', '_', '-'") from None
    return Registry(host, namespace)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never printed, even in a traceback's locals

    def auth(self, registry: Registry) -> dict[str, str]:
        return {"username": self.username, "password": self.password, "serveraddress": registry.host}


def credentials(
    username: str | None, password_stdin: bool, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """--username (or MLBOX_REGISTRY_USERNAME) with --password-stdin or
    MLBOX_REGISTRY_PASSWORD; else None (the engine then uses the user's docker config, as
    `docker push` does). A password is never taken as an argument."""
    env = os.environ if environ is None else environ
    if password_stdin:
        if not username:
            msg = "--password-stdin needs --username"
            raise PushError(msg, hint="or set MLBOX_REGISTRY_USERNAME")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            msg = "--password-stdin: no password on standard input"
            raise PushError(msg, hint='echo "$TOKEN" | mlbox push ... --username USER --password-stdin')
        return Credentials(username, password)
    password = env.get("MLBOX_REGISTRY_PASSWORD")
    if bool(username) != bool(password):
        msg = "a registry login needs both a user and a password"
        hint = "--username (or MLBOX_REGISTRY_USERNAME) with --password-stdin (or MLBOX_REGISTRY_PASSWORD)"
        raise PushError(msg, hint=hint)
    return Credentials(username, password) if username and password else None


@dataclass(frozen=True)
class Published:
    image: str  # the local tag
    reference: str  # repository@digest
    record: dict[str, Any]


def push_image(
    engine: Engine,
    local_tag: str,
    registry: Registry,
    creds: Credentials | None,
    *,
    records: Path,
    on_progress: LineSink,
) -> Published:
    try:
        image = engine.inspect_image(local_tag)
    except EngineError as err:
        msg = f"cannot push {local_tag}: {err}"
        raise PushError(msg, hint="build it first: `mlbox build` with the same selection") from None
    local_repository, _, tag = local_tag.rpartition(":")
    repository = registry.repository(local_repository)
    remote = f"{repository}:{tag}"
    engine.tag(local_tag, repository, tag)
    try:
        digest = engine.push(repository, tag, auth=creds.auth(registry) if creds else None, on_progress=on_progress)
    except BaseException:
        engine.untag(remote)  # a refused push leaves no tag behind
        raise
    labels = (image.get("Config") or {}).get("Labels") or {}
    record = make_record(local_tag, registry, digest, image_id=image.get("Id"), labels=labels)
    append_record(records, record)
    return Published(local_tag, f"{repository}@{digest}", record)


def make_record(
    local_tag: str, registry: Registry, digest: str, *, image_id: str | None, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The publish record of ``local_tag``, now in ``registry`` as ``digest``: what `mlbox
    push` writes, and `mlbox publish-record` for images a BuildKit builder pushed."""
    local_repository, _, tag = local_tag.rpartition(":")
    repository = registry.repository(local_repository)
    return {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "image": local_tag,
        "image_id": image_id,
        "registry": f"{registry.host}/{registry.namespace}",
        "tags": [f"{repository}:{tag}"],
        "digest": digest,
        "references": [f"{repository}@{digest}"],
        "labels": dict(labels),
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every publish record in ``path``, oldest first; lines that are not one are skipped,
    with a warning (a reader must not fail on what another tool appended)."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in _REQUIRED):
                raise TypeError
            records.append(record)
        except (ValueError, TypeError):
            log.warning("%s line %d is not a publish record; skipped", path, number)
    return records


_REQUIRED = ("image",)  # what every reader needs; each checks the rest it uses


def append_record(path: Path, record: dict[str, Any]) -> None:
    """One line, written with a single append and fsynced: a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
