"""The YAML mlbox reads (catalog, configuration) is bounded and unambiguous."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlbox import yamlfile
from mlbox.cli import main
from tests.conftest import REPO


def billion_laughs(levels: int) -> str:
    """Each level a list of nine aliases of the level below: 9**levels strings, in ~40
    bytes per level."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (billion_laughs(8), "aliases expand 28 nodes to 490,329,064 (a limit of 100,000)"),
        ("a: 1\nb: 2\na: 3\n", "key 'a' at line 3 repeats the one at line 1"),
        ("{a: 1, a: 2}\n", "key 'a' at line 1 repeats the one at line 1"),
        ("outer:\n  x: 1\n  inner: {y: 2, y: 3}\n", "key 'y' at line 3 repeats the one at line 3"),
        ("x: &x\n  - *x\n", "a recursive alias"),
        ("[" * 100 + "]" * 100, "nested more than 64 levels deep"),
        ("a: [1\n", "not valid YAML: did not find expected ',' or ']' at line 2, column 1"),
    ],
    ids=["billion-laughs", "repeated-key", "repeated-key-flow", "repeated-key-nested", "recursive", "deep", "syntax"],
)
def test_documents_mlbox_will_not_read(text: str, message: str) -> None:
    with pytest.raises(yamlfile.YamlProblem) as err:
        yamlfile.load(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_what_yaml_users_rely_on_still_loads() -> None:
    shared = "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\nlist: [*b, *b]\n"
    assert yamlfile.load(shared) == {"base": {"x": 1, "y": 2}, "m": {"x": 3, "y": 2}, "list": [{"x": 1, "y": 2}] * 2}
    assert yamlfile.load("") is None
    assert yamlfile.load("[" * 60 + "]" * 60) is not None
    assert yamlfile.load(billion_laughs(2)) is not None  # 81 strings: sharing, not a bomb


def test_a_catalog_with_a_second_defaults_block_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second `defaults:` used to win silently and change every image's FROM."""
    catalog = tmp_path / "images.yaml"
    text = (REPO / "images.yaml").read_text()
    catalog.write_text(text + "defaults:\n  base_image: attacker/base:1\n")
    assert main(["--catalog", str(catalog), "render", "-m", "resnet50"]) != 0
    err = capsys.readouterr().err
    assert f"key 'defaults' at line {text.count(chr(10)) + 1} repeats the one at line" in err
    assert "attacker" not in err  # one line about the key, not the catalog reprinted


def test_a_billion_laughs_catalog_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "images.yaml"
    catalog.write_text(billion_laughs(9))
    assert main(["--catalog", str(catalog), "list"]) != 0
    err = capsys.readouterr().err
    assert "aliases expand" in err
    assert len(err) < 1000  # the 58 MB error of old


def test_a_configuration_file_with_a_repeated_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("base_image: a:1\nbase_image: b:2\n")
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    assert main(["render", "-m", "resnet50"]) == 19
    assert "key 'base_image' at line 2 repeats the one at line 1" in capsys.readouterr().err


def test_a_document_past_the_size_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlfile, "MAX_CHARS", 100)
    with pytest.raises(yamlfile.YamlProblem, match="101 characters is more than mlbox reads"):
        yamlfile.load("a: " + "x" * 98)
