"""The command line's promises: help that tells the truth, one way out, a configuration file."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from mlbox.cli import cli, main
from mlbox.errors import EngineError, exit_codes
from tests.conftest import REPO
from tests.support.fake_engine import FakeEngine, use_fake_engine


def commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    return [("mlbox", cli)] + [(name, cli.commands[name]) for name in cli.list_commands(ctx)]


@pytest.mark.parametrize(("name", "command"), commands(), ids=[name for name, _ in commands()])
def test_every_command_has_help_and_every_option_shows_its_variable(
    name: str, command: click.Command, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [] if name == "mlbox" else [name]
    assert main([*args, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrap click's columns
    assert command.help, f"{name} has no help text"
    options = [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]
    for opt in options:
        assert isinstance(opt.envvar, str), f"{name} {opt.opts[0]} has no environment variable"
        assert opt.envvar.startswith("MLBOX_")
        assert opt.help, f"{name} {opt.opts[0]} has no help"
        assert f"env var: {opt.envvar}" in text, f"{name} --help does not show {opt.envvar}"


def test_help_and_readme_list_the_same_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    shown = re.findall(r"^\s+(\d+)\s+(\S.*)$", capsys.readouterr().out.split("Exit codes:")[1], re.M)
    assert [(int(code), text) for code, text in shown] == exit_codes()
    readme = REPO.joinpath("README.md").read_text()
    table = re.findall(r"^\| (\d+) \| ", readme.split("## Exit codes")[1], re.M)
    assert [int(code) for code in table] == [code for code, _ in exit_codes()]
    assert {16, 18} <= {code for code, _ in exit_codes()}


def test_mirror_help_names_the_layout_the_code_uses(capsys: pytest.CaptureFixture[str]) -> None:
    from mlbox.catalog import load_catalog
    from mlbox.fetch import model_cache_path
    from mlbox.paths import packaged_catalog

    assert main(["build", "--help"]) == 0
    assert "MIRROR/<checksum>/<file>" in " ".join(capsys.readouterr().out.split())
    variant = load_catalog(packaged_catalog()).models["resnet50"].variants["onnx-opset11-fp32"]
    cached = model_cache_path(Path("/cache"), variant)  # the mirror is a copy of the cache's models/
    assert cached.relative_to("/cache/models").as_posix() == f"{variant.md5}/{variant.file}"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--image", "mlbox:x"],
        ["list"],
        ["build", "-m", "resnet50", "--variant", "synthetic"],
        ["push", "-m", "resnet50", "--registry", "r.example/ml"],
        ["base"],
    ],
    ids=lambda argv: argv[0],
)
def test_an_unreachable_engine_is_exit_14_everywhere(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    down = EngineError("cannot reach the Docker engine: connection refused", hint="start it")
    failing: dict[str, BaseException] = dict.fromkeys(("api_version", "inspect_image", "image_exists", "info"), down)
    use_fake_engine(monkeypatch, FakeEngine(fail=failing))
    code = main(argv)
    err = capsys.readouterr().err
    if argv[0] == "list":  # list still lists, saying built? is unknown
        assert code == 0
        return
    assert code == 14, err
    assert "error: cannot reach the Docker engine" in err
    assert "hint: start it" in err


@dataclass
class TerminatedMidCall(FakeEngine):
    """An engine call during which the process gets SIGTERM, inside a temporary directory
    as `mlbox build` stages its context in one."""

    staged: list[Path] = field(default_factory=list)

    def image_exists(self, ref: str) -> bool:
        with tempfile.TemporaryDirectory(prefix="mlbox-test-context-") as tmp:
            self.staged.append(Path(tmp))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises in this thread long before
        return False


def test_sigterm_cleans_up_as_ctrl_c_does_and_exits_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    engine = TerminatedMidCall()
    use_fake_engine(monkeypatch, engine)
    started = time.monotonic()
    assert main(["list"]) == 143
    assert time.monotonic() - started < 5
    assert "terminated" in capsys.readouterr().err
    assert engine.staged, "the engine call did not run"
    assert not engine.staged[0].exists()  # the `with` block's cleanup ran
    assert signal.getsignal(signal.SIGTERM) is before  # main() gives the signal back to its owner


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["render", "--model", "resnet5"]
    assert main(argv) == 10
    assert "Traceback" not in capsys.readouterr().err
    if how == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("MLBOX_DEBUG", "1")
    assert main(argv) == 10
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "CatalogError: unknown model 'resnet5'" in err
    assert "error: unknown model 'resnet5'" in err


def test_no_assert_is_used_as_a_runtime_check() -> None:
    """Asserts vanish under `python -O`: the packages raise their own errors instead."""
    import ast

    for package in ("toolkit/mlbox", "entrypoints/mlbox_bench"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
            assert not asserts, f"{path.relative_to(REPO)}:{asserts[0]} uses assert"


def test_the_configuration_file_sets_option_defaults_below_flags_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("base_image: mlbox-base:bookworm\n")
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    assert main(["render", "-m", "resnet50", "--variant", "synthetic"]) == 0
    assert "FROM mlbox-base:bookworm AS runtime" in capsys.readouterr().out
    monkeypatch.setenv("MLBOX_BASE_IMAGE", "other:1")
    assert main(["render", "-m", "resnet50", "--variant", "synthetic"]) == 0
    assert "FROM other:1 AS runtime" in capsys.readouterr().out
    assert main(["render", "-m", "resnet50", "--variant", "synthetic", "--base-image", "third:2"]) == 0
    assert "FROM third:2 AS runtime" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base_imag: x\n", "unknown option 'base_imag'; did you mean 'base_image'?"),
        ("- a list\n", "must be a mapping"),
        ("base_image: [a, b]\n", "base_image must be a single value"),
        ("base_image: 'unterminated\n", "not valid YAML"),
    ],
)
def test_a_bad_configuration_file_is_refused_by_name(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    assert main(["render", "-m", "resnet50"]) == 19
    assert message in capsys.readouterr().err


def test_base_set_default_makes_doctor_judge_that_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `make demo` (which runs `mlbox base --set-default`) doctor checks the base
    image builds will really use, not the catalog's pullable default."""
    config = tmp_path / "config" / "config.yaml"
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    monkeypatch.setenv("MLBOX_CACHE_DIR", str(tmp_path / "cache"))
    engine = FakeEngine(images={"mlbox-base:bookworm": {"Id": "sha256:1"}})
    use_fake_engine(monkeypatch, engine)
    assert main(["doctor"]) == 1
    before = capsys.readouterr().out
    assert re.search(r"base image python:3\.11-slim-bookworm\s+FAIL", before), before

    assert main(["base", "--set-default"]) == 0  # exists already: only recorded
    assert capsys.readouterr().out.strip() == "mlbox-base:bookworm"
    assert "base_image: mlbox-base:bookworm" in config.read_text()
    assert "import_rootfs" not in engine.names()

    assert main(["doctor"]) == 0
    after = capsys.readouterr().out
    assert re.search(r"base image mlbox-base:bookworm\s+ok", after), after
    assert "python:3.11-slim" not in after


def test_version_names_the_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    """`mlbox` on PyPI is another project: the distribution is mlbox-mlperf, the command mlbox."""
    from mlbox import DISTRIBUTION, __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mlbox, version {__version__}"
    assert DISTRIBUTION == "mlbox-mlperf"
    from importlib.metadata import version

    assert version(DISTRIBUTION) == __version__


def test_the_configured_base_is_the_plain_base_and_never_replaces_nvidias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `make demo` (base_image in the configuration), `--cuda-from nvidia` used to build
    on the Debian base and still tag the image -nvidiabase."""
    from mlbox.catalog import load_catalog

    nvidia = load_catalog(REPO / "images.yaml").devices["cuda"].base_image
    config = tmp_path / "config.yaml"
    config.write_text("base_image: mlbox-base:bookworm\n")
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    render = ["render", "-m", "resnet50", "--variant", "synthetic"]
    assert main([*render, "-d", "cuda", "--cuda-from", "nvidia"]) == 0
    out = capsys.readouterr().out
    assert f"FROM {nvidia} AS " in out
    assert "mlbox-base:bookworm" not in out
    assert main([*render, "-d", "cuda"]) == 0  # the pip route builds on the plain base
    assert "FROM mlbox-base:bookworm AS runtime" in capsys.readouterr().out
    assert main([*render, "-d", "cpu"]) == 0
    assert "FROM mlbox-base:bookworm AS runtime" in capsys.readouterr().out
    # Asked for on the command line, a base is used as given (a mirror of NVIDIA's image).
    assert main([*render, "-d", "cuda", "--cuda-from", "nvidia", "--base-image", "mirror.example.com/cuda:12"]) == 0
    assert "FROM mirror.example.com/cuda:12 AS " in capsys.readouterr().out
