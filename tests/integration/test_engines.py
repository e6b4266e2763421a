"""Every method of the engine seam, on both real engines: Docker (dockerd) and Podman
(`podman system service`, which mlbox starts for itself, rootful when run as root).

Podman keeps what these tests make in a temporary storage directory; Docker's objects go
with the session guard (conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlbox.engine import ContainerSpec, DockerEngine, Engine, Mount, PodmanEngine
from mlbox.errors import BuildError, PushError
from tests.support.engine import AuthRegistry, Mlbox, registry_digest
from tests.support.podman import processes_mentioning, unmount_under, write_configuration

pytestmark = [pytest.mark.docker, pytest.mark.registry]

PROGRAM = """
import pathlib, sys, time
if sys.argv[1:] == ["sleep"]:
    time.sleep(120)
print(pathlib.Path("/made").read_text().strip())
pathlib.Path("/results/out").write_text("written")
print("to stderr", file=sys.stderr)
sys.exit(3)
"""


@pytest.fixture
def podman_env(
    tmp_path: Path, registry: str, auth_registry: AuthRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Podman's storage and registries configuration for this test, in the environment that
    mlbox (and the service it starts) inherits; removed afterwards, mounts and all."""
    root = tmp_path / "podman"
    root.mkdir()
    env = write_configuration(root, insecure=[registry, auth_registry.address])
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield env
    finally:
        unmount_under(root)


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "podman":
        request.getfixturevalue("podman_env")
        podman = PodmanEngine()
        try:
            yield podman
        finally:
            podman.close()
        return
    docker = DockerEngine()
    try:
        yield docker
    finally:
        docker.close()


def test_every_engine_method_on_a_real_engine(
    engine: Engine, base_rootfs: Path, registry: str, auth_registry: AuthRegistry, tmp_path: Path, namespace: str
) -> None:
    kind = "podman" if isinstance(engine, PodmanEngine) else "docker"
    repo = f"{namespace}-contract-{kind}"
    assert re.fullmatch(r"1\.\d+", engine.api_version())
    assert engine.info()["ServerVersion"]

    image_id = engine.import_rootfs(base_rootfs, repository=repo, tag="base", changes=["ENV LANG=C.UTF-8"])
    assert engine.image_exists(f"{repo}:base")
    base = engine.inspect_image(f"{repo}:base")
    assert base["Id"] == image_id  # named REPO:TAG, not REPO:latest (Podman 4.3 ignores `tag`)
    assert "LANG=C.UTF-8" in base["Config"]["Env"]

    context = tmp_path / "context"
    context.mkdir()
    (context / "program.py").write_text(PROGRAM)
    (context / "Dockerfile").write_text(
        f"FROM {repo}:base AS first\n"
        "RUN echo made-in-the-first-stage > /made\n"
        f"FROM {repo}:base\n"
        "COPY --from=first /made /made\n"
        "COPY program.py /program.py\n"
        'RUN echo "hello from RUN"\n'
        "ARG MLBOX_CREATED=unknown\n"
        'LABEL mlbox.test="yes" org.opencontainers.image.created="${MLBOX_CREATED}"\n'
        'ENTRYPOINT ["python3", "/program.py"]\n'
    )
    lines: list[str] = []
    built = engine.build(
        context, tag=f"{repo}:built", buildargs={"MLBOX_CREATED": "2026-01-02T03:04:05Z"}, on_line=lines.append
    )
    assert "hello from RUN" in lines  # streamed as it came
    image = engine.inspect_image(f"{repo}:built")
    assert image["Id"] == built
    assert {k: image["Config"]["Labels"][k] for k in ("mlbox.test", "org.opencontainers.image.created")} == {
        "mlbox.test": "yes",
        "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
    }
    (context / "Dockerfile").write_text(f"FROM {repo}:base\nRUN echo about to fail && false\n")
    with pytest.raises(BuildError) as failed:
        engine.build(context, tag=f"{repo}:broken", buildargs={}, on_line=lambda _: None)
    assert "RUN echo about to fail" in str(failed.value)  # the failing step, named
    assert "about to fail" in str(failed.value).split("last output:")[1]

    results = tmp_path / "results"
    results.mkdir()
    user = f"{os.getuid()}:{os.getgid()}"
    spec = ContainerSpec(
        f"{repo}:built", (), user, network="none", shm_size="256m", read_only=True, mounts=(Mount(results, "/results"),)
    )
    container = engine.create_container(spec)
    try:
        engine.start_container(container)
        logs = list(engine.container_logs(container))
        assert engine.wait_container(container) == 3
    finally:
        engine.remove_container(container)
    assert {"made-in-the-first-stage", "to stderr"} <= set(logs)
    assert (results / "out").read_text() == "written"

    sleeper = engine.create_container(ContainerSpec(f"{repo}:built", ("sleep",), user))
    try:
        engine.start_container(sleeper)
        started = time.monotonic()
        engine.stop_container(sleeper, timeout=1)
        assert engine.wait_container(sleeper) in (137, 143)  # SIGKILL or SIGTERM
        assert time.monotonic() - started < 30
    finally:
        engine.remove_container(sleeper)

    remote = f"{registry}/contract/{repo}"
    engine.tag(f"{repo}:built", remote, "v1")
    progress: list[str] = []
    digest = engine.push(remote, "v1", auth=None, on_progress=progress.append)
    assert digest == registry_digest(registry, f"contract/{repo}", "v1")
    engine.untag(f"{remote}:v1")
    assert not engine.image_exists(f"{remote}:v1")
    assert engine.image_exists(f"{repo}:built")  # untag removes the name only

    guarded = f"{auth_registry.address}/contract/{repo}"
    engine.tag(f"{repo}:built", guarded, "v1")
    wrong = {"username": auth_registry.username, "password": "wrong", "serveraddress": auth_registry.address}
    with pytest.raises(PushError, match=r"unauthorized|authentication required"):
        engine.push(guarded, "v1", auth=wrong, on_progress=lambda _: None)
    right = wrong | {"password": auth_registry.password}
    assert engine.push(guarded, "v1", auth=right, on_progress=lambda _: None).startswith("sha256:")


def test_mlbox_stops_the_podman_service_it_started(podman_env: dict[str, str], tmp_path: Path, mlbox: Mlbox) -> None:
    """`mlbox --engine podman` starts `podman system service` for the command and leaves
    nothing running when it ends: not on success, not on an error."""
    runtime = Path(tempfile.mkdtemp(prefix="mlbox-t-"))  # short: a socket path has 108 bytes
    try:
        env = {**podman_env, "XDG_RUNTIME_DIR": str(runtime), "MLBOX_STATE_DIR": str(tmp_path / "state")}
        listed = mlbox("--engine", "podman", "list", "--json", "--model", "resnet50", env=env)
        assert listed.returncode == 0, listed.stderr
        assert '"built": false' in listed.stdout  # the service answered: built? is known
        refused = mlbox("--engine", "podman", "run", "--image", "mlbox:not-there", env=env)
        assert refused.returncode == 14, refused.stderr
        assert "image mlbox:not-there not found" in refused.stderr
        assert processes_mentioning(str(runtime)) == []
        assert list(runtime.iterdir()) == []  # its socket directory went with it
    finally:
        shutil.rmtree(runtime)
