"""The test suite's own promise: sessions side by side leave each other's files alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def pytest_directories() -> set[Path]:
    """Every session directory pytest could make in the temporary root this session uses."""
    root = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir())
    return {*root.glob("pytest-mlbox-*"), *root.glob("pytest-of-*/pytest-*")}


@pytest.mark.subprocess
def test_a_second_session_leaves_this_ones_temporary_files_alone_and_its_own_nowhere(tmp_path: Path) -> None:
    """As `pytest tests/unit` run while `make test` runs: before each session had its own
    base directory, the short one removed the long one's on its way out."""
    mine = tmp_path / "still-here"
    mine.write_text("in use")
    before = pytest_directories()
    test = "tests/unit/test_cli.py::test_no_assert_is_used_as_a_runtime_check"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout
    assert mine.read_text() == "in use"
    assert pytest_directories() == before  # the second session removed its own directory
