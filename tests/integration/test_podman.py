"""The tiny onnxruntime image built and benchmarked with rootless Podman.

Run as root (as `make test` is), the test makes a temporary unprivileged user with
subordinate ids, starts `podman system service` as that user, and points mlbox at it with
CONTAINER_HOST; run as a user, mlbox's own service is rootless already. Afterwards the
service, Podman's pause process, the user and the storage are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlbox.engine import PodmanEngine
from mlbox.fetch import digests
from tests.integration.conftest import Served
from tests.support.engine import Mlbox
from tests.support.podman import RootlessPodman, write_configuration

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def rootless() -> Iterator[RootlessPodman | None]:
    if os.geteuid() != 0:
        yield None  # mlbox starts a rootless service itself
        return
    service = RootlessPodman.start()
    try:
        yield service
    finally:
        stray = service.stop()
        assert stray == [], f"processes left behind by the rootless Podman service: {stray}"


@pytest.fixture
def podman_env(rootless: RootlessPodman | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if rootless is not None:
        monkeypatch.setenv("CONTAINER_HOST", rootless.url)
        return {"CONTAINER_HOST": rootless.url}
    env = write_configuration(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_an_image_builds_and_benchmarks_with_rootless_podman(
    rootless: RootlessPodman | None,
    podman_env: dict[str, str],
    base_rootfs: Path,
    base_image: str,
    served: Served,
    mlbox: Mlbox,
) -> None:
    if rootless is not None:  # the service is the unprivileged user's
        assert (rootless.root / "podman.sock").stat().st_uid == rootless.uid
    engine = PodmanEngine.from_env()
    try:
        repository, _, tag = base_image.rpartition(":")
        engine.import_rootfs(base_rootfs, repository=repository, tag=tag, changes=["ENV LANG=C.UTF-8"])
    finally:
        engine.close()

    # The served model is in the shared cache (the Docker build of the same row fetched it).
    env = {**podman_env, "MLBOX_CATALOG": str(served.catalog), "MLBOX_ENGINE": "podman"}
    select = ["--model", "tiny", "--base-image", base_image]
    built = mlbox("build", *select, env=env, timeout=840)
    assert built.returncode == 0, built.stderr[-4000:]
    assert built.stdout.strip().splitlines()[-1] == served.tag
    assert "STEP 1/" in built.stderr  # Buildah's output, streamed

    # The container's root is the service's unprivileged user on the host: results go
    # to a directory that user owns (and that it can reach, unlike pytest's private tmp).
    holder = Path(tempfile.mkdtemp(prefix="mlbox-podman-results-"))
    holder.chmod(0o755)
    out = holder / "results"
    out.mkdir()
    owner = (rootless.uid, rootless.gid) if rootless else (os.getuid(), os.getgid())
    os.chown(out, *owner)
    try:
        ran = mlbox(
            "run",
            *select,
            "--results",
            str(out),
            "--read-only",
            "--",
            "--scenario",
            "Offline",
            "--duration",
            "1",
            "--samples",
            "64",
            "--allow-invalid",
            env=env,
            timeout=600,
        )
        assert ran.returncode == 0, ran.stderr[-4000:]
        assert ran.stdout.strip() == str(out / "result.json")
        result = json.loads((out / "result.json").read_text())
        assert result["model"]["sha256"] == digests(served.model)[1]
        assert result["backend"]["provider"] == "CPUExecutionProvider"
        assert result["validity"] in ("VALID", "INVALID")
        # mlbox ran the container as its caller (root, when the test runs as root): in a
        # rootless container root is the unprivileged user, and so owns what it wrote.
        assert (out / "mlperf_log_summary.txt").stat().st_uid == owner[0]
        record = json.loads((out / "mlbox-run.json").read_text())
        assert record["image"] == served.tag
        assert record["exit_code"] == 0
        assert record["read_only"] is True
    finally:
        shutil.rmtree(holder)
