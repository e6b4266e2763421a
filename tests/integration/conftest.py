"""Fixtures for tests against a real Docker engine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


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


def run_container(
    client: Any, image: str, args: list[str], *, results: Path, timeout: int = 300, **kwargs: Any
) -> tuple[int, str]:
    """Run a container to completion; always remove it; return (exit code, logs)."""
    results.mkdir(parents=True, exist_ok=True)
    container = client.containers.run(
        image,
        args,
        detach=True,
        network_mode="none",
        user=f"{os.getuid()}:{os.getgid()}",
        volumes={str(results): {"bind": "/results", "mode": "rw"}},
        **kwargs,
    )
    try:
        status = container.wait(timeout=timeout)
        logs = container.logs().decode(errors="replace")
        return int(status["StatusCode"]), logs
    finally:
        container.remove(force=True)
