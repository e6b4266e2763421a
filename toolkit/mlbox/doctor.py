"""`mlbox doctor`: is this machine ready to build, push and run? Each check says what
to fix. Checks never change anything."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlbox.engine import Engine
from mlbox.errors import MlboxError

MIN_FREE_BYTES = 5 * 1024**3  # a CPU image with its wheelhouse and model is ~1 GB; builds need room


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not relevant here (a note, not a failure)
    detail: str
    fix: str = ""


def run_checks(
    engine: Engine,
    *,
    base_images: list[str],
    cache: Path,
    registry: str | None,
    username: str | None,
    password: str | None,
    cuda: bool,
) -> list[Check]:
    checks: list[Check] = []
    info: dict[str, object] = {}
    try:
        version = engine.api_version()
        info = engine.info()
        checks.append(Check("engine", True, f"{engine.name} API {version}, server {info.get('ServerVersion')}"))
    except MlboxError as err:
        checks.append(Check("engine", False, str(err), err.hint or "start dockerd"))
    for ref in base_images:
        if not info:
            checks.append(Check(f"base image {ref}", None, "unknown: no engine"))
            continue
        present = engine.image_exists(ref)
        fix = f"docker pull {ref}; offline, make one with `mlbox base --set-default`"
        checks.append(
            Check(f"base image {ref}", present, "present" if present else "not in the engine", "" if present else fix)
        )
    roots = [("mlbox cache", cache)]
    if info.get("DockerRootDir"):
        roots.append(("docker storage", Path(str(info["DockerRootDir"]))))
    for name, path in roots:
        existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free
        ok = free >= MIN_FREE_BYTES
        where = "MLBOX_CACHE_DIR" if name == "mlbox cache" else "dockerd --data-root"
        fix = "" if ok else f"free some space, or point {where} elsewhere"
        checks.append(Check(f"disk: {name}", ok, f"{free / 1024**3:.1f} GiB free at {existing}", fix))
    if registry:
        checks.append(_registry_check(registry, username, password))
    if cuda:
        runtimes = info.get("Runtimes") or {}
        has_nvidia = isinstance(runtimes, dict) and "nvidia" in runtimes
        smi = shutil.which("nvidia-smi")
        ok = has_nvidia and smi is not None
        detail = (
            f"nvidia runtime {'present' if has_nvidia else 'missing'}, nvidia-smi {'found' if smi else 'not found'}"
        )
        checks.append(
            Check("GPU runtime", ok, detail, "" if ok else "install the NVIDIA driver and nvidia-container-toolkit")
        )
    else:
        checks.append(Check("GPU runtime", None, "not checked (pass --cuda when you will run cuda images)"))
    return checks


def _registry_check(registry: str, username: str | None, password: str | None) -> Check:
    """GET /v2/ as a client would: 200 ok; 401 means a login is needed or was refused."""
    import requests

    host = registry.split("/", 1)[0]
    auth = (username, password) if username and password else None
    errors = []
    for scheme in ("https", "http"):
        try:
            resp = requests.get(f"{scheme}://{host}/v2/", auth=auth, timeout=10)
        except (requests.RequestException, ValueError) as err:  # urllib3's LocationParseError is a ValueError
            errors.append(f"{scheme}: {type(err).__name__}")
            continue
        if resp.status_code == 200:
            return Check(f"registry {host}", True, f"reachable over {scheme}" + (", login accepted" if auth else ""))
        if resp.status_code == 401:
            what = "login refused" if auth else "needs a login"
            fix = "check MLBOX_REGISTRY_USERNAME/PASSWORD (or --username/--password-stdin, or docker login)"
            return Check(f"registry {host}", False, f"reachable over {scheme}, {what}", fix)
        return Check(
            f"registry {host}", False, f"{scheme}://{host}/v2/ answered HTTP {resp.status_code}", "is this a registry?"
        )
    return Check(
        f"registry {host}", False, "unreachable (" + "; ".join(errors) + ")", "check the address and the network"
    )


def credentials_from_env() -> tuple[str | None, str | None]:
    return os.environ.get("MLBOX_REGISTRY_USERNAME"), os.environ.get("MLBOX_REGISTRY_PASSWORD")
