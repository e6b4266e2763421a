"""Unit tests: no engine, no network, no subprocess, no MLBOX_* from the caller's shell.

The guard below makes any accidental engine call or subprocess fail loudly instead of
passing by luck (as pypa/cibuildwheel's `mock_protection` does). A unit test that must
start a program says so with @pytest.mark.subprocess; executors are tested against the
fake engine in tests/support/fake_engine.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

# Programs a unit test may meet without asking: the harness records host facts in
# result.json, through nvidia-smi (only on a GPU machine) and platform.processor(), which
# runs `uname -p` once per process.
ALLOWED_PROGRAMS = frozenset({"nvidia-smi", "uname"})


@pytest.fixture(autouse=True)
def _guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MLBOX_"):
            monkeypatch.delenv(name)

    def refuse_engine(*args: object, **kwargs: object) -> None:
        msg = "a unit test tried to reach the Docker engine: use tests/support/fake_engine.py (or an integration test)"
        raise AssertionError(msg)

    try:
        import docker
    except ImportError:  # a GPU machine runs the gpu tests without the engine's SDK
        docker = None
    for name in ("from_env", "DockerClient", "APIClient") if docker else ():
        monkeypatch.setattr(docker, name, refuse_engine)

    if "subprocess" in request.keywords:
        return
    real_popen = subprocess.Popen

    class GuardedPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            program = Path(str(args[0] if isinstance(args, list | tuple) else args).split()[0]).name
            if program not in ALLOWED_PROGRAMS:
                msg = f"a unit test started {program!r}: mark it @pytest.mark.subprocess if it must"
                raise AssertionError(msg)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", GuardedPopen)
