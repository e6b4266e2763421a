"""Fixtures of the tiers that reach a real engine (integration, images): the Docker client,
the base image, the run's own image namespace, real registries on 127.0.0.1, and `mlbox`
run in a subprocess as a user runs it.

The namespace: every image the suite builds is tagged in a repository of the run's own
(``mlbox-test-<run>-<worker>``, through a catalog whose ``defaults.registry`` names it),
never in the user's ``mlbox`` repository, so `make test` after `make demo` leaves the demo's
``mlbox:resnet50-cpu-synthetic`` as it was. The engine guard (engine_guard.py) checks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.engine_guard import namespace_of_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def namespace(request: pytest.FixtureRequest) -> str:
    """This worker's repository name: workers build the same catalog rows side by side."""
    workerinput = getattr(request.config, "workerinput", None)
    worker = workerinput["workerid"] if workerinput else "main"
    return f"{namespace_of_run()}-{worker}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    client = docker.from_env(version="auto")  # fails the test (not skips) when no engine runs
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The base image `scripts/with-engine.sh` made (MLBOX_BASE_IMAGE), or one bootstrapped
    here in the run's namespace when pytest runs without it."""
    ref = os.environ.get("MLBOX_BASE_IMAGE")
    if ref:
        return ref
    from mlbox.base import BaseSpec, make_base
    from mlbox.engine import DockerEngine

    return make_base(BaseSpec(repository=namespace_of_run() + "-base"), DockerEngine())


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mlbox cache for the worker: wheelhouses and model files are resolved once, not per test."""
    return tmp_path_factory.mktemp("mlbox-cache")


def write_catalog(path: Path, namespace: str, models: Mapping[str, Any] | None = None) -> Path:
    """The repository's catalog, tagging in ``namespace``, plus ``models``."""
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["defaults"]["registry"] = namespace
    data["models"].update(models or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def session_catalog(tmp_path_factory: pytest.TempPathFactory, namespace: str) -> Path:
    """The shipped catalog, tagging in the run's namespace: what `mlbox` uses by default here."""
    return write_catalog(tmp_path_factory.mktemp("catalog") / "images.yaml", namespace)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Mlbox:
    """The real CLI in a subprocess, as a user runs it, with the run's catalog and cache
    unless ``env`` says otherwise. No MLBOX_* variable of the caller's leaks in."""

    defaults: Mapping[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: int = 600, stdin: str | None = None
    ) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLBOX_")}
        full_env.update(self.defaults)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "mlbox", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def mlbox(session_catalog: Path, shared_cache: Path) -> Mlbox:
    return Mlbox({"MLBOX_CATALOG": str(session_catalog), "MLBOX_CACHE_DIR": str(shared_cache)})


def run_container(
    client: Any,
    image: str,
    args: list[str],
    *,
    results: Path,
    timeout: int = 300,
    read_only_mounts: dict[Path, str] | None = None,
    user: str | None = None,
    **kwargs: Any,
) -> tuple[int, str]:
    """Run a container to completion (as the caller's uid:gid unless ``user`` says), with
    no network; always remove it; return (exit code, logs)."""
    results.mkdir(parents=True, exist_ok=True)
    volumes = {str(results): {"bind": "/results", "mode": "rw"}}
    volumes.update({str(host): {"bind": inside, "mode": "ro"} for host, inside in (read_only_mounts or {}).items()})
    container = client.containers.run(
        image,
        args,
        detach=True,
        network_mode="none",
        user=user or f"{os.getuid()}:{os.getgid()}",
        volumes=volumes,
        **kwargs,
    )
    try:
        status = container.wait(timeout=timeout)
        logs = container.logs().decode(errors="replace")
        return int(status["StatusCode"]), logs
    finally:
        container.remove(force=True)


def result_of(results: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((results / "result.json").read_text())
    return data


# --------------------------------------------------------------------------- registries


@dataclass(frozen=True)
class AuthRegistry:
    address: str
    username: str
    password: str = field(repr=False)


def _serve_registry(root: Path, htpasswd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start Debian's docker-registry (CNCF distribution) on a free 127.0.0.1 port."""
    import shutil
    import socket
    import time

    import requests

    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed: scripts/with-engine.sh installs it"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = f"auth: {{htpasswd: {{realm: mlbox-test, path: {htpasswd}}}}}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n" + auth
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"http://{address}/v2/", timeout=1).status_code in (200, 401):
                return proc, address
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            pytest.fail("the registry exited: " + (proc.stderr.read().decode() if proc.stderr else ""))
        time.sleep(0.1)
    proc.terminate()
    pytest.fail("the registry did not answer on /v2/ within 10 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry on 127.0.0.1 without auth, stopped when the session ends. Yields HOST:PORT."""
    proc, address = _serve_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield address
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """A real registry with htpasswd (bcrypt) auth on 127.0.0.1."""
    import secrets
    import shutil

    htpasswd_bin = shutil.which("htpasswd")
    assert htpasswd_bin, "htpasswd is in Debian's apache2-utils: scripts/with-engine.sh installs it"
    root = tmp_path_factory.mktemp("auth-registry")
    password = "pw-" + secrets.token_hex(12)  # unique: the secrets test searches for it
    entry = subprocess.run(
        [htpasswd_bin, "-Bbn", "mlbox", password], capture_output=True, text=True, check=True
    ).stdout.strip()
    (root / "htpasswd").write_text(entry + "\n")
    proc, address = _serve_registry(root, root / "htpasswd")
    try:
        yield AuthRegistry(address, "mlbox", password)
    finally:
        _stop(proc)


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def registry_digest(address: str, repository: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    """The digest as the registry itself reports it (an independent client)."""
    import requests

    resp = requests.get(
        f"http://{address}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_V2}, auth=auth, timeout=10
    )
    resp.raise_for_status()
    return str(resp.headers["Docker-Content-Digest"])


@pytest.fixture(scope="session")
def base_rootfs(tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str) -> Path:
    """The base image's file system as a tarball (`docker export`), to import into another
    engine the way `mlbox base` imports the tree debootstrap made."""
    path = tmp_path_factory.mktemp("rootfs") / "base.tar"
    container = docker_client.containers.create(base_image, ["true"])
    try:
        with path.open("wb") as out:
            for chunk in container.export():
                out.write(chunk)
    finally:
        container.remove(force=True)
    return path
