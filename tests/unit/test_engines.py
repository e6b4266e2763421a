"""Choosing the engine, and what the Podman engine refuses before it talks to a service."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbox.cli import main
from mlbox.engine import ContainerSpec, PodmanEngine, connect
from mlbox.errors import EngineError, RunError
from tests.support.fake_engine import FakeEngine, use_fake_engine


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("default", "docker"),
        ("flag", "podman"),
        ("variable", "podman"),
        ("config", "podman"),
        ("flag-over-config", "docker"),
    ],
)
def test_the_engine_comes_from_flag_variable_or_configuration_file(
    how: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []
    engine = FakeEngine()
    use_fake_engine(monkeypatch, engine, kinds)
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    argv = ["list", "--json"]
    if how in ("config", "flag-over-config"):
        config = tmp_path / "config.yaml"
        config.write_text("engine: podman\n")
        monkeypatch.setenv("MLBOX_CONFIG", str(config))
    if how == "flag":
        argv = ["--engine", "podman", *argv]
    elif how == "flag-over-config":
        argv = ["--engine", "docker", *argv]
    elif how == "variable":
        monkeypatch.setenv("MLBOX_ENGINE", "podman")
    assert main(argv) == 0
    assert kinds == [expected]
    assert engine.names()[-1] == "close"  # the command let go of its engine when it ended


def test_an_unknown_engine_in_the_configuration_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("engine: containerd\n")
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    assert main(["render", "-m", "resnet50"]) == 19
    assert "engine 'containerd' is not one of docker, podman" in capsys.readouterr().err


def test_podman_refuses_a_remote_url_it_cannot_speak_to() -> None:
    with pytest.raises(EngineError, match="unix:// or tcp:// only") as err:
        PodmanEngine.from_env({"CONTAINER_HOST": "ssh://core@host/run/podman/podman.sock"})
    assert "ssh -L" in (err.value.hint or "")
    assert PodmanEngine.from_env({"CONTAINER_HOST": "unix:///run/podman/podman.sock"})._base_url == (
        "unix:///run/podman/podman.sock"
    )


def test_podman_that_is_not_installed_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    engine = connect("podman")
    with pytest.raises(EngineError, match="podman program is not installed") as err:
        engine.api_version()
    assert "apt-get install podman" in (err.value.hint or "")


def test_podman_refuses_gpus_instead_of_starting_without_them() -> None:
    """Podman's Docker-compatible API ignores DeviceRequests: say so before anything starts."""
    spec = ContainerSpec(image="mlbox:resnet50-cuda", command=(), user="0:0", gpus=True)
    with pytest.raises(RunError, match="cannot give GPUs") as err:
        PodmanEngine("unix:///nonexistent.sock").create_container(spec)
    assert "nvidia.com/gpu=all" in (err.value.hint or "")


def test_an_unknown_engine_name_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="unknown engine 'lxc'"):
        connect("lxc")


def test_podman_waits_by_reading_the_state_not_through_the_compat_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Podman's /wait once never answered for a container that had already exited: the
    Podman engine reads the state until the container stops, and returns its exit code."""

    class Api:
        def __init__(self) -> None:
            self.states = [{"Running": True, "ExitCode": 0}] * 2 + [{"Running": False, "ExitCode": 3}]
            self.inspected = 0

        def inspect_container(self, container: str) -> dict[str, object]:
            assert container == "c1"
            self.inspected += 1
            return {"State": self.states.pop(0)}

        def wait(self, *args: object, **kwargs: object) -> None:
            msg = "Podman's compat /wait must not be used"
            raise AssertionError(msg)

    api = Api()
    engine = PodmanEngine("unix:///nonexistent.sock")
    engine._client = type("Client", (), {"api": api})()
    monkeypatch.setattr(PodmanEngine, "WAIT_POLL_S", 0.0)
    assert engine.wait_container("c1") == 3
    assert api.inspected == 3
