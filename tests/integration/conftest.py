"""Fixtures for tests against a real Docker engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO


@dataclass(frozen=True)
class EngineState:
    """What the engine holds: container, image and network ids, image tags, volume names."""

    containers: frozenset[str]
    images: frozenset[str]
    tags: frozenset[str]
    networks: frozenset[str]
    volumes: frozenset[str]

    @classmethod
    def of(cls, client: Any) -> EngineState:
        images = client.api.images(all=True)
        return cls(
            containers=frozenset(c["Id"] for c in client.api.containers(all=True)),
            images=frozenset(i["Id"] for i in images),
            tags=frozenset(t for i in images for t in (i.get("RepoTags") or []) if t != "<none>:<none>"),
            networks=frozenset(n["Id"] for n in client.api.networks()),
            volumes=frozenset(v["Name"] for v in (client.api.volumes().get("Volumes") or [])),
        )


def remove_new(client: Any, before: EngineState) -> list[str]:
    """Remove every container, tag, image, network and volume that is not in ``before``;
    return what was removed. Images go newest first, as children must go before parents."""
    from docker.errors import APIError, NotFound

    now = EngineState.of(client)
    removed: list[str] = []
    for cid in now.containers - before.containers:
        client.api.remove_container(cid, force=True, v=True)
        removed.append(f"container {cid[:12]}")
    for tag in sorted(now.tags - before.tags):
        try:
            client.api.remove_image(tag, force=False, noprune=True)  # only the tag: its image may be older
            removed.append(f"tag {tag}")
        except NotFound:
            pass
    pending = {i["Id"]: i["Created"] for i in client.api.images(all=True) if i["Id"] not in before.images}
    while pending:
        progress = False
        for image in sorted(pending, key=lambda i: pending[i], reverse=True):
            try:
                client.api.remove_image(image, force=True)
            except NotFound:
                pass
            except APIError:  # a child image not removed yet: next round
                continue
            del pending[image]
            removed.append(f"image {image[7:19]}")
            progress = True
        if not progress:
            removed += [f"KEPT image {image[7:19]} (could not remove)" for image in pending]
            break
    for nid in now.networks - before.networks:
        client.api.remove_network(nid)
        removed.append(f"network {nid[:12]}")
    for name in now.volumes - before.volumes:
        client.api.remove_volume(name, force=True)
        removed.append(f"volume {name}")
    return removed


@pytest.fixture(scope="session", autouse=True)
def _leave_the_engine_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever the suite makes in the engine (containers, images, tags, networks, volumes)
    is removed when it ends, pass or fail, like jupyter/docker-stacks' TrackedContainer.

    Kept on purpose: what existed before the session, in particular the base image that
    scripts/with-engine.sh bootstraps before pytest starts (debootstrap takes half a
    minute and every build starts from it). Within the session builds share their
    dependency layers through the engine's cache; those go at the end with the images.
    """
    if not request.config.getoption("--run-docker"):
        yield
        return
    import docker

    client = docker.from_env(version="auto")
    before = EngineState.of(client)
    try:
        yield
    finally:
        removed = remove_new(client, before)
        client.close()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and removed:
            reporter.write_line(f"engine: removed what the suite made: {len(removed)} object(s)")
            for line in removed:
                if line.startswith("KEPT"):
                    reporter.write_line(f"engine: {line}")


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
    """The base image `scripts/with-engine.sh` made (or made here if run directly)."""
    ref = os.environ.get("MLBOX_BASE_IMAGE")
    if ref:
        return ref
    from mlbox.base import BaseSpec, make_base
    from mlbox.engine import DockerEngine

    return make_base(BaseSpec(), DockerEngine())


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the wheelhouse is resolved once, not per test."""
    return tmp_path_factory.mktemp("mlbox-cache")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_mlbox(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> Result:
    """The real CLI in a subprocess, as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLBOX_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "mlbox", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def offline_headroom(tag: str, where: Path, batch: int) -> list[str]:
    """Flags that give an Offline run of a ResNet-50-sized image the headroom to be VALID
    on a busy 2-core machine: a probe run (batches of ``batch``, as the run's) measures the
    image's rate here, and the run asks for 3 x that rate over a 3 s minimum, so it lasts
    about 10 s at the probed rate and is VALID unless the machine gets 3 x faster between
    the two runs. Calibration alone is not enough: with both cores busy, PyTorch's and
    TensorFlow's runs went 1.3-1.8 x faster than their 0.5 s calibration (same batch). A
    1.5 x margin over 5 s was not enough either: one loaded PyTorch run was INVALID, so it
    went over 1.65 x faster than its probe and ended before its minimum duration."""
    args = [
        "--scenario",
        "Offline",
        "--samples",
        "64",
        "--duration",
        "3",
        "--max-batchsize",
        str(batch),
        "--allow-invalid",
    ]
    probe = run_mlbox("run", "--image", tag, "--results", str(where), "--", *args, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    rate = float(json.loads((where / "result.json").read_text())["metric"]["value"])
    return ["--duration", "3", "--max-batchsize", str(batch), "--target-qps", f"{3 * rate:.2f}"]


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
    """Run a container to completion (as the caller's uid:gid unless ``user`` says); always
    remove it; return (exit code, logs)."""
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


def catalog_with(tmp_path: Path, model: str, variant: str, url: str, md5: str) -> Path:
    """The repo's catalog plus a test model whose file is served on 127.0.0.1."""
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["models"][model] = {
        "description": "tiny test model with the ResNet50 I/O names (SYNTHETIC weights)",
        "mlperf_name": "resnet50",
        "default_variant": variant,
        "variants": {
            variant: {
                "description": "served over HTTP by the test",
                "framework": "onnx",
                "precision": "fp32",
                "backend": "onnxruntime",
                "file": "tiny.onnx",
                "url": url,
                "md5": md5,
            }
        },
    }
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass(frozen=True)
class Served:
    tag: str
    model: Path
    catalog: Path  # its model is in the shared cache (the server is gone afterwards)


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, base_image: str, shared_cache: Path, docker_client: Any
) -> Served:
    """The tiny model served over HTTP on 127.0.0.1 and built into mlbox:tiny-cpu, once."""
    from tests.conftest import FileServer, md5_of

    tmp = tmp_path_factory.mktemp("served")
    server = FileServer(tmp)
    (tmp / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    server.thread.start()
    try:
        catalog = catalog_with(tmp, "tiny", "served", server.url("tiny.onnx"), md5_of(tiny_model))
        result = run_mlbox(
            "build",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--base-image",
            base_image,
            env={"MLBOX_CATALOG": str(catalog), "MLBOX_CACHE_DIR": str(shared_cache)},
        )
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert result.returncode == 0, result.stderr[-4000:]
    assert server.requests, "the model was not downloaded from the test server"
    assert "Step 1/" in result.stderr  # build output streamed to stderr
    tag = result.stdout.strip().splitlines()[-1]
    assert tag == "mlbox:tiny-cpu"
    return Served(tag, tiny_model, catalog)


@pytest.fixture
def served_image(served: Served) -> tuple[str, Path]:
    return served.tag, served.model


@pytest.fixture
def served_catalog(served: Served) -> Path:
    return served.catalog


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
