"""Publishing: tag, push through the engine, and record what the registry now holds.

A publish record (JSON lines, one per pushed image) is appended only after the registry
confirmed the push with a digest; a refused push leaves no record and no new tag.
Credentials travel only in the engine API's auth header, or in the Authorization header
of mlbox's own registry requests (`registry_digest`): never in argv, URLs, logs, messages,
build arguments, labels or layers.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from mlbox.engine import Engine, LineSink
from mlbox.errors import EngineError, PushError, RecordError
from mlbox.reference import check_domain, check_path

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

# How a record's digest was confirmed: "registry" (the registry itself gave it for the
# tag), or "metadata-only" (bake's metadata says so; the registry could not be reached).
Verified = Literal["registry", "metadata-only"]
# Every manifest a tag may name: bake pushes an OCI index when it adds attestations, the
# engine a Docker v2 manifest. Accepting them all makes the registry answer the digest of
# what the tag names, not of a conversion.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
REGISTRY_TIMEOUT_S = 5.0  # an unreachable registry costs this much per scheme, not a hang
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


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
    # The digest is the registry's own answer to the push.
    record = make_record(local_tag, registry, digest, image_id=image.get("Id"), labels=labels, verified="registry")
    append_record(records, record)
    return Published(local_tag, f"{repository}@{digest}", record)


def make_record(
    local_tag: str,
    registry: Registry,
    digest: str,
    *,
    image_id: str | None,
    labels: Mapping[str, str],
    verified: Verified,
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
        "verified": verified,
    }


def registry_digest(
    registry: Registry, local_tag: str, creds: Credentials | None, *, timeout: float = REGISTRY_TIMEOUT_S
) -> str | None:
    """The digest ``registry`` holds for ``local_tag`` (`mlbox:TAG`, pushed as
    REGISTRY/mlbox:TAG), by the Distribution API: HEAD /v2/NAME/manifests/TAG, its
    Docker-Content-Digest header. None when the registry cannot be reached; a registry
    that answers without confirming the tag is a RecordError."""
    import requests

    repository, _, tag = local_tag.rpartition(":")
    name = f"{registry.repository(repository)}:{tag}"
    # Plain http only where Docker itself allows it without configuration: loopback.
    schemes = ("https", "http") if _loopback(registry.host) else ("https",)
    with requests.Session() as http:
        for scheme in schemes:
            url = f"{scheme}://{registry.host}/v2/{registry.namespace}/{repository}/manifests/{tag}"
            try:
                resp = _head_manifest(http, url, creds, timeout)
            except requests.RequestException as err:
                log.debug("%s: %s", url, type(err).__name__)  # the type only: no header, no URL of a token service
                continue
            return _confirmed_digest(resp, name, registry.host, creds)
    return None


def _head_manifest(http: requests.Session, url: str, creds: Credentials | None, timeout: float) -> requests.Response:
    """HEAD the manifest, anonymously first, then with what the registry's 401 asks for."""
    headers = {"Accept": MANIFEST_TYPES}
    resp = http.head(url, headers=headers, timeout=timeout)
    if resp.status_code == 401:
        authorization = _authorization(http, resp.headers.get("WWW-Authenticate", ""), creds, timeout)
        if authorization:
            resp = http.head(url, headers={**headers, "Authorization": authorization}, timeout=timeout)
    return resp


def _authorization(http: requests.Session, challenge: str, creds: Credentials | None, timeout: float) -> str | None:
    """The Authorization header a 401's challenge asks for: Basic with the login, or a
    Bearer token from the registry's token service (Docker Hub, GHCR and Harbor want one
    even for anonymous pulls). None when there is nothing to answer with."""
    scheme, _, rest = challenge.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    if scheme.lower() == "basic":
        if creds is None:
            return None
        return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    realm = params.get("realm", "")
    if scheme.lower() != "bearer" or urlsplit(realm).scheme not in ("https", "http"):
        return None
    # A password goes only where it cannot be read on the way: https, or this machine.
    login = (creds.username, creds.password) if creds and _private(realm) else None
    query = {key: params[key] for key in ("service", "scope") if key in params}
    token = http.get(realm, params=query, auth=login, timeout=timeout)
    try:
        body = token.json() if token.status_code == 200 else {}
    except ValueError:
        return None
    value = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    return f"Bearer {value}" if isinstance(value, str) and value else None


def _confirmed_digest(resp: requests.Response, name: str, host: str, creds: Credentials | None) -> str:
    digest = resp.headers.get("Docker-Content-Digest", "")
    if resp.status_code == 200 and _DIGEST.match(digest):
        return digest
    login_hint = (
        "pass --username with --password-stdin (or MLBOX_REGISTRY_USERNAME and MLBOX_REGISTRY_PASSWORD) "
        "for a user who may pull it; publish-record does not read `docker login`'s credentials"
    )
    if resp.status_code == 401:
        msg = f"registry {host} refused the login for {name}" if creds else f"registry {host} needs a login for {name}"
        raise RecordError(msg, hint=login_hint)
    if resp.status_code == 403:
        msg = f"registry {host} refused access to {name} (HTTP 403)"
        raise RecordError(msg, hint=login_hint)
    if resp.status_code == 404:
        msg = f"{name} is not in the registry, so it was not pushed there"
        hint = "record the metadata of the build that pushed it (`docker buildx bake --push --metadata-file`)"
        raise RecordError(msg, hint=hint)
    if resp.status_code == 200:
        msg = f"registry {host} answered for {name} without a digest"
    else:
        msg = f"registry {host} answered HTTP {resp.status_code} for {name}"
    raise RecordError(msg, hint=f"is {host} a registry (Distribution API v2)? try again later if it is")


def _loopback(host: str) -> bool:
    name = host.rpartition(":")[0] if ":" in host else host
    try:
        return name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _private(url: str) -> bool:
    """Whether a password may travel to ``url``: over TLS, or not off this machine."""
    parts = urlsplit(url)
    return parts.scheme == "https" or _loopback(parts.netloc)


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


def list_field(record: Mapping[str, Any], key: str) -> list[Any]:
    """A record's list field (tags, references); [] when it is missing or not a list:
    another tool may have appended an odd record."""
    value = record.get(key)
    return value if isinstance(value, list) else []


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
