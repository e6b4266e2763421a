"""benchmarks/figures.py: the check `make bench` runs names what got worse, and only that."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figures", REPO / "benchmarks" / "figures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["figures"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(figures: ModuleType, tmp_path: Path, before: dict[str, float], after: dict[str, float]) -> int:
    directions = {"overhead": ("us", "lower"), "ratio": ("ratio", "higher"), "rss": ("MB", "lower")}
    for name, values in (("previous", before), ("current", after)):
        made = figures.Figures()
        for key, value in values.items():
            made.add(key, value, *directions[key])
        made.write(tmp_path / name / "bench.json")
    code: int = figures.main(["compare", str(tmp_path / "previous"), str(tmp_path / "current")])
    return code


def test_a_figure_worse_by_more_than_ten_percent_is_named(
    figures: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {"overhead": 10.0, "ratio": 1.0, "rss": 900.0}
    assert run(figures, tmp_path, before, {"overhead": 10.9, "ratio": 0.91, "rss": 500.0}) == 0  # noise, and better
    assert "no figure worse" in capsys.readouterr().out
    assert run(figures, tmp_path, before, {"overhead": 12.0, "ratio": 0.85, "rss": 900.0}) == 1
    out = capsys.readouterr().out.split("figure(s) worse by more than 10%:")[1]
    assert "overhead" in out
    assert "WORSE by 20%" in out
    assert "ratio" in out
    assert "WORSE by 15%" in out
    assert "rss" not in out


def test_a_figure_without_a_previous_value_is_new_not_worse(
    figures: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(figures, tmp_path, {}, {"overhead": 50.0}) == 0
    assert "new" in capsys.readouterr().out
    written = json.loads((tmp_path / "current" / "bench.json").read_text())
    assert written == {"overhead": {"value": 50.0, "unit": "us", "better": "lower"}}
