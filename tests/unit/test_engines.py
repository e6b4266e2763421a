"""Choosing the engine, and what the Podman engine refuses before it talks to a service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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


class StuckPodman:
    """The API calls the Podman engine makes while a container runs: its state says running
    ``running`` times, then exited with 3; its followed log gives ``streamed`` and, unless
    ``ends``, then stays open (as Podman 4.3.1's did) until ``release`` is set."""

    def __init__(self, running: int, streamed: bytes, full: bytes, *, ends: bool) -> None:
        self.states = [{"Running": True, "ExitCode": 0}] * running + [{"Running": False, "ExitCode": 3}]
        self.streamed, self.full, self.ends = streamed, full, ends
        self.release = threading.Event()
        self.calls: list[str] = []

    def inspect_container(self, container: str) -> dict[str, object]:
        self.calls.append("inspect")
        return {"State": self.states.pop(0) if len(self.states) > 1 else self.states[0]}

    def logs(self, container: str, *, stream: bool, follow: bool) -> object:
        self.calls.append("follow" if follow else "logs")
        if not follow:
            return self.full

        def chunks() -> Iterator[bytes]:
            yield self.streamed
            if not self.ends:
                self.release.wait(10)  # an engine that waits for the stream fails, late

        return chunks()

    def wait(self, *args: object, **kwargs: object) -> None:
        msg = "Podman's compat /wait must not be used"
        raise AssertionError(msg)


def podman_with(api: StuckPodman, monkeypatch: pytest.MonkeyPatch) -> PodmanEngine:
    engine = PodmanEngine("unix:///nonexistent.sock")
    engine._client = type("Client", (), {"api": api})()
    monkeypatch.setattr(PodmanEngine, "WAIT_POLL_S", 0.01)
    monkeypatch.setattr(PodmanEngine, "LOG_GRACE_S", 0.05)
    return engine


def test_podman_waits_by_reading_the_state_not_through_the_compat_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    api = StuckPodman(2, b"", b"", ends=True)
    assert podman_with(api, monkeypatch).wait_container("c1") == 3
    assert api.calls == ["inspect"] * 3


def test_a_podman_log_that_stays_open_after_the_exit_is_read_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Podman's followed log gave two lines and stayed open after the container exited: the
    engine notices the exit, and reads the rest of the finished log in one piece."""
    api = StuckPodman(3, b"first\nsecond\n", b"first\nsecond\nlast words\n", ends=False)
    try:
        assert list(podman_with(api, monkeypatch).container_logs("c1")) == ["first", "second", "last words"]
    finally:
        api.release.set()
    assert api.calls.count("logs") == 1


def test_a_podman_log_that_ends_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    api = StuckPodman(0, b"only\nlines\n", b"", ends=True)
    assert list(podman_with(api, monkeypatch).container_logs("c1")) == ["only", "lines"]
    assert "logs" not in api.calls
