"""mlbox as a real package: a wheel built from the checkout, installed into a new virtual
environment and run from an empty directory, finds its catalog, templates and harness
inside itself and builds an image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.golden.regenerate import GOLDEN

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_the_wheel_lists_renders_and_builds_from_an_empty_directory(
    tmp_path: Path, base_image: str, docker_client: Any, shared_cache: Path, namespace: str
) -> None:
    # Built from a copy of the tracked files: setuptools writes build/ and *.egg-info into
    # the tree it builds, and the checkout must stay as it was.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)]
    run(pip_wheel, cwd=tmp_path)
    [wheel] = dist.glob("mlbox_mlperf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mlbox/data/images.yaml", "mlbox/data/dockerfiles/Dockerfile.j2", "mlbox_bench/cli.py"} <= names
    assert "mlbox/data/dockerfiles/partials/stage-runtime.j2" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    # Nothing of the checkout is reachable: not on PYTHONPATH, not the working directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLBOX_", "PYTHON"))}
    env |= {"MLBOX_CACHE_DIR": str(shared_cache), "MLBOX_STATE_DIR": str(tmp_path / "state")}
    mlbox = str(venv / "bin" / "mlbox")
    location = run(
        [str(venv / "bin" / "python"), "-c", "import mlbox, mlbox_bench; print(mlbox.__file__)"], cwd=empty, env=env
    )
    assert location.startswith(str(venv))

    rows = json.loads(run([mlbox, "list", "--json"], cwd=empty, env=env))
    assert ("resnet50", "synthetic", "cpu") in {(r["model"], r["variant"], r["device"]) for r in rows}

    rendered = run([mlbox, "render", "-m", "resnet50", "--variant", "synthetic"], cwd=empty, env=env)
    assert rendered == (GOLDEN / "resnet50-cpu-synthetic.Dockerfile").read_text()

    # The build reads the wheel's own catalog too: a copy of it, tagging in the run's namespace
    # (the user's mlbox:resnet50-cpu-synthetic, from `make demo`, stays as it is).
    packaged = run(
        [str(venv / "bin" / "python"), "-c", "from mlbox.paths import packaged_catalog as p; print(p())"],
        cwd=empty,
        env=env,
    ).strip()
    assert packaged.startswith(str(venv))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(Path(packaged).read_text().replace("registry: mlbox ", f"registry: {namespace} ", 1))
    assert f"registry: {namespace} " in catalog.read_text()
    built = run(
        [
            mlbox,
            "--catalog",
            str(catalog),
            "build",
            "-m",
            "resnet50",
            "--variant",
            "synthetic",
            "--base-image",
            base_image,
            "--json",
        ],
        cwd=empty,
        env=env,
        timeout=840,
    )
    [result] = json.loads(built)
    assert result["tag"] == f"{namespace}:resnet50-cpu-synthetic"
    image = docker_client.images.get(result["tag"])
    assert image.labels["mlbox.weights"] == "synthetic"
    probe = docker_client.containers.run(
        result["tag"],
        ["-c", "import mlbox_bench.cli; print(mlbox_bench.cli.__file__)"],
        entrypoint="python3",
        remove=True,
        network_mode="none",
    ).decode()
    assert probe.strip() == "/opt/mlbox/app/mlbox_bench/cli.py"  # the harness the wheel carried
    assert list(empty.iterdir()) == []  # nothing written where it ran
