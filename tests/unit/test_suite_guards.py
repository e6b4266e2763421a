"""The suite's own guards: a hung test ends at its time limit, and the engine guard sees
what a run did to the objects the user had."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.engine_guard import EngineState, changes_to_what_was_there, tags_outside

HANGING = '''
import socket

import pytest


def wait_for_the_engine(connection):
    """A hung engine: the connection is open, and no answer ever comes."""
    return connection.recv(1)


@pytest.mark.timeout(2)
def test_an_engine_call_that_never_returns():
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as connection:
            wait_for_the_engine(connection)


def test_the_run_goes_on():
    pass
'''


@pytest.mark.subprocess
def test_a_hung_test_fails_at_its_time_limit_saying_what_it_waited_for(tmp_path: Path) -> None:
    """The suite's own configuration (tests/conftest.py as a plugin, pyproject.toml's
    pytest-timeout settings) ends a test blocked in a socket read: that test fails with the
    stack it was waiting in, and the run goes on to the next test."""
    test = tmp_path / "test_hang.py"
    test.write_text(HANGING)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            "pyproject.toml",
            "--rootdir",
            ".",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(test),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Failed: Timeout (>2.0s) from pytest-timeout" in out
    # The failure shows the stack it was waiting in, down to the blocked call.
    assert "def wait_for_the_engine(connection):" in out
    assert ">       return connection.recv(1)" in out
    assert "1 failed, 1 passed" in out


def state(tags: dict[str, str], containers: frozenset[str] = frozenset()) -> EngineState:
    return EngineState(containers, frozenset(tags.values()), tags, frozenset(), frozenset())


def test_the_engine_guard_names_every_object_of_the_users_the_run_changed() -> None:
    before = state({"mlbox:resnet50-cpu-synthetic": "sha256:" + "a" * 64, "mlbox-base:bookworm": "sha256:" + "b" * 64})
    after = state({"mlbox:resnet50-cpu-synthetic": "sha256:" + "c" * 64})
    assert changes_to_what_was_there(before, after) == [
        "tag mlbox-base:bookworm is gone",
        "tag mlbox:resnet50-cpu-synthetic names another image (aaaaaaaaaaaa -> cccccccccccc)",
        "image aaaaaaaaaaaa is gone",
        "image bbbbbbbbbbbb is gone",
    ]
    assert changes_to_what_was_there(before, before) == []


def test_the_engine_guard_names_tags_made_outside_the_runs_namespace() -> None:
    before = state({"mlbox-base:bookworm": "sha256:" + "b" * 64})
    after = state(
        {
            **before.tags,
            "mlbox-test-1a2b-gw0:tiny-cpu": "sha256:" + "d" * 64,
            "127.0.0.1:5000/bench/mlbox-test-1a2b-gw1:tiny-cpu": "sha256:" + "d" * 64,
            "mlbox:tiny-cpu": "sha256:" + "d" * 64,
        }
    )
    assert tags_outside("mlbox-test-1a2b", before, after) == ["mlbox:tiny-cpu"]
