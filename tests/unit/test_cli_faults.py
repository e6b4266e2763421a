"""`mlbox` never prints a traceback: whatever it is given, it says what is wrong in a
sentence and exits with its fixed code, and leaves nothing half-written."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlbox.cli import main
from tests.support.fake_engine import FakeEngine, use_fake_engine

SYNTHETIC = ["-m", "resnet50", "--variant", "synthetic"]
REGISTRY = "registry.example.com/ml"
# A published record of mlbox:resnet50-cpu-synthetic (what `mlbox k8s` pins), written as
# published.jsonl holds it.
RECORD: dict[str, Any] = {
    "image": "mlbox:resnet50-cpu-synthetic",
    "registry": REGISTRY,
    "tags": [f"{REGISTRY}/mlbox:resnet50-cpu-synthetic"],
    "digest": "sha256:" + "1" * 64,
    "references": [f"{REGISTRY}/mlbox@sha256:" + "1" * 64],
    "labels": {},
}
OUT_COMMANDS = {
    "render": ["render", "--all", "-m", "resnet50"],
    "bake": ["bake", *SYNTHETIC],
    "k8s": ["k8s", *SYNTHETIC, "--registry", REGISTRY],
}


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configuration, publish records and cache in the test's directory, not the user's."""
    monkeypatch.setenv("MLBOX_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLBOX_CACHE_DIR", str(tmp_path / "cache"))


def failure(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main's exit code and stderr, which has no traceback and no errno in brackets."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert "[Errno" not in err, err
    return code, err


def loop(directory: Path) -> Path:
    """a -> b, b -> a: every use of the path fails with ELOOP, root's too."""
    (directory / "a").symlink_to("b")
    (directory / "b").symlink_to("a")
    return directory / "a"


def test_a_catalog_that_is_not_utf8_is_a_catalog_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "images.yaml"
    catalog.write_bytes(b"defaults:\n  python: '3.11\xff'\n")
    code, err = failure(["--catalog", str(catalog), "render", *SYNTHETIC], capsys)
    assert code == 10
    assert f"error: {catalog} is not UTF-8 text (byte 0xff at offset 25)" in err


def test_a_configuration_file_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_bytes(b"base_image: \xe9t\xe9\n")
    code, err = failure(["render", *SYNTHETIC], capsys)
    assert code == 19
    assert f"error: {tmp_path / 'config.yaml'} is not UTF-8 text (byte 0xe9 at offset 12)" in err


@pytest.mark.parametrize("command", ["list", "k8s"])
def test_publish_records_that_are_not_utf8_are_a_record_error(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    records = tmp_path / "state" / "published.jsonl"
    records.parent.mkdir()
    records.write_bytes(json.dumps(RECORD).encode() + b"\n" + b'{"image": "\xff"}\n')
    argv = ["list"] if command == "list" else [*OUT_COMMANDS["k8s"], "--out", str(tmp_path / "out")]
    code, err = failure(argv, capsys)
    assert code == 20
    assert re.search(rf"error: {re.escape(str(records))} is not UTF-8 text \(byte 0xff at offset \d+\)", err), err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def published(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "published.jsonl").write_text(json.dumps(RECORD) + "\n")


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("a-file/out", "Not a directory"),
        ("a-file/deeper/out", "Not a directory"),
        ("a/out", "Too many levels of symbolic links"),  # a -> b -> a
        ("a", "it is not a directory"),
        ("read-only/out", "Permission denied"),
    ],
)
@pytest.mark.usefixtures("published")
def test_an_out_directory_the_system_refuses_is_a_sentence(
    command: str, where: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if where.startswith("read-only") and os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory")
    space = tmp_path / "space"
    space.mkdir()
    (space / "a-file").write_text("mine\n")
    (space / "read-only").mkdir(mode=0o500)
    loop(space)
    before = sorted(space.rglob("*"))
    code, err = failure([*OUT_COMMANDS[command], "--out", str(space / where)], capsys)
    assert code == 25
    refused = re.search(r"^error: cannot write (.+): (.+)$", err, re.M)
    assert refused, err
    assert str(space / where).startswith(refused[1])  # OUT, or the parent on its way that failed
    assert refused[2] == reason
    assert "hint: choose another --out" in err
    assert sorted(space.rglob("*")) == before  # nothing half-written


def write_result(directory: Path, content: object) -> None:
    directory.mkdir(parents=True)
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    (directory / "result.json").write_bytes(data)


GOOD_RESULT = {
    "scenario": "Offline",
    "validity": "VALID",
    "metric": {"value": 20.5, "unit": "samples/s"},
    "latency_ns": {"percentiles": {"50.00_percentile": 1_000_000, "99.00_percentile": 2_000_000}},
}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "is not a JSON object: [1, 2]"),
        (7, "is not a JSON object: 7"),
        ({"metric": "x"}, "metric is 'x', not an object"),
        ({"metric": {"value": "x"}}, "metric.value is 'x', not a finite number"),
        ({"latency_ns": {"percentiles": [1]}}, "latency_ns.percentiles is [1], not an object"),
        ({"latency_ns": {"percentiles": {"99.00_percentile": -1}}}, "99.00_percentile is -1, not a finite number >= 0"),
        ({"scenario": {"a": 1}}, "scenario is {'a': 1}, not text"),
        (b'{"metric": {"value": NaN}}', "metric.value is nan, not a finite number"),
        (b'{"metric": {"value": 1e999}}', "metric.value is inf, not a finite number"),
        (b'{"metric": {"value": 1' + b"0" * 400 + b"}}", "metric.value is 1000000000000"),
        (b'{"latency_ns": {"percentiles": {"99.00_percentile": 1e999}}}', "99.00_percentile is inf"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b'{"scenario": "\xff"}', "is not UTF-8 text (byte 0xff at offset 14)"),
        (b"{", "is not JSON (Expecting property name"),
    ],
    ids=lambda value: None if isinstance(value, str) else repr(value)[:30],
)
def test_results_skips_a_result_json_it_cannot_use_and_says_which(
    content: object,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_result(tmp_path / "results" / "good", GOOD_RESULT)
    write_result(tmp_path / "results" / "odd", content)
    plot = tmp_path / "plot.html"
    assert failure(["results", str(tmp_path / "results"), "--plot", str(plot)], capsys)[0] == 0
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(str(tmp_path / "results" / "odd" / "result.json")), warning
    assert message in warning
    assert warning.endswith("; skipped")
    assert len(warning) < 300  # a long value is cut
    assert plot.is_file()
    assert main(["results", "--json", str(tmp_path / "results")]) == 0
    assert [row["RUN"] for row in json.loads(capsys.readouterr().out)] == [str(tmp_path / "results" / "good")]


def test_results_leaves_out_a_run_mlbox_bench_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A failed or stopped run's folder (incomplete/) has a result.json that says so."""
    write_result(tmp_path / "results" / "good", GOOD_RESULT)
    aside = tmp_path / "results" / "good" / "incomplete" / "20261207T000000Z-performance"
    write_result(aside, {"complete": False, "reason": "stopped by SIGTERM", "kind": "performance"})
    assert main(["results", "--json", str(tmp_path / "results")]) == 0
    assert [row["RUN"] for row in json.loads(capsys.readouterr().out)] == [str(tmp_path / "results" / "good")]
    assert "a run that did not finish ('stopped by SIGTERM'); skipped" in caplog.text


def test_results_with_no_usable_result_json_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_result(tmp_path / "results" / "odd", {"metric": "x"})
    write_result(tmp_path / "results" / "nulls", {"metric": None, "model": None, "latency_ns": None})
    (tmp_path / "results" / "nulls" / "mlbox-run.json").write_text('"not a record"')
    code, err = failure(["results", str(tmp_path / "results"), "--plot", str(tmp_path / "plot.html")], capsys)
    assert code == 3  # nulls is usable (null is absent) but has no percentiles to plot
    assert "mlbox-run.json is not a JSON object: 'not a record'; ignored" in caplog.text
    assert "error: no latency percentiles in these results to plot" in err
    (tmp_path / "results" / "nulls" / "result.json").unlink()
    code, err = failure(["results", str(tmp_path / "results")], capsys)
    assert code == 3
    assert f"error: no usable result.json under {tmp_path / 'results'}" in err


def test_results_skips_a_result_json_that_is_no_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO named result.json would block the read forever."""
    write_result(tmp_path / "results" / "good", GOOD_RESULT)
    (tmp_path / "results" / "fifo").mkdir()
    os.mkfifo(tmp_path / "results" / "fifo" / "result.json")
    (tmp_path / "results" / "dir" / "result.json").mkdir(parents=True)
    assert failure(["results", str(tmp_path / "results")], capsys)[0] == 0
    assert f"{tmp_path / 'results' / 'fifo' / 'result.json'} is not a regular file; skipped" in caplog.text
    assert f"{tmp_path / 'results' / 'dir' / 'result.json'} is not a regular file; skipped" in caplog.text


@pytest.mark.parametrize(("where", "reason"), [("a-file/plot.html", "it is not a directory"), ("a/plot.html", "it")])
def test_a_plot_path_the_system_refuses_is_a_sentence(
    where: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_result(tmp_path / "results" / "good", GOOD_RESULT)
    (tmp_path / "a-file").write_text("mine\n")
    loop(tmp_path)
    code, err = failure(["results", str(tmp_path / "results"), "--plot", str(tmp_path / where)], capsys)
    assert code == 25
    assert re.search(rf"^error: cannot write {re.escape(str(tmp_path))}/a(-file)?: {reason}", err, re.M), err
    assert "hint: choose another --plot" in err
    assert (tmp_path / "a-file").read_text() == "mine\n"


def test_a_plot_onto_a_fifo_is_refused_and_leaves_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plot is written beside its path and renamed onto it: onto /dev/full (as root)
    that replaced the device with an HTML file."""
    import stat

    write_result(tmp_path / "results" / "good", GOOD_RESULT)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "fifo")
    for target in (tmp_path / "fifo", tmp_path / "link"):
        code, err = failure(["results", str(tmp_path / "results"), "--plot", str(target)], capsys)
        assert code == 25
        assert f"error: {target} exists and is not a regular file" in err
    assert stat.S_ISFIFO((tmp_path / "fifo").stat().st_mode)
    assert (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link", "results"]


def test_a_results_directory_in_a_symlink_loop_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = failure(["results", str(loop(tmp_path))], capsys)
    assert code == 3
    assert f"error: cannot read {tmp_path / 'a'}: Too many levels of symbolic links" in err


BUILD = ["build", "-m", "resnet50", "--variant", "onnx-opset11-fp32"]


def fifo(directory: Path) -> Path:
    os.mkfifo(directory / "fifo")
    return directory / "fifo"


def text_as_model(directory: Path) -> Path:
    (directory / "m.onnx").write_text("not a model\n")
    return directory / "m.onnx"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (loop, "cannot read the model file {path}: Too many levels of symbolic links"),
        (fifo, "the model file {path} is not a regular file"),  # reading it would wait forever
        # a guard: text renamed .onnx is refused by its checksum before anything loads it
        (text_as_model, "model file {path} failed verification: md5"),
    ],
    ids=["loop", "fifo", "text"],
)
def test_a_model_file_mlbox_cannot_use_is_a_fetch_error(
    make: Callable[[Path], Path],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    path = make(tmp_path)
    code, err = failure([*BUILD, "--model-file", str(path)], capsys)
    assert code == 12
    assert f"error: {message.format(path=path)}" in err


def test_a_model_url_requests_cannot_parse_is_a_fetch_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """urllib3 refuses a host label over 63 characters with its own exception, past requests'."""
    use_fake_engine(monkeypatch, FakeEngine())
    url = "http://" + "a" * 100_000 + "/resnet50.onnx"
    code, err = failure([*BUILD, "--model-url", url], capsys)
    assert code == 12
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: download of 'http://aaaa")
    assert len(line) < 300


def raise_in_results(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def broken(dirs: list[Path]) -> None:
        raise error

    monkeypatch.setattr("mlbox.results.collect", broken)


def test_an_unexpected_exception_is_an_internal_error_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raise_in_results(monkeypatch, RuntimeError("boom\nsecond line " + "x" * 1000))
    code, err = failure(["results"], capsys)
    assert code == 1
    [line] = err.splitlines()
    assert line.startswith("error: internal error: RuntimeError: boom\\nsecond line xxx")
    assert line.endswith("... — this is a bug; run with --debug for the traceback and report it")
    assert len(line) < 200
    assert main(["--debug", "results"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "error: internal error: RuntimeError: boom" in err


def test_an_os_error_no_layer_turned_into_a_sentence_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raise_in_results(monkeypatch, PermissionError(13, "Permission denied", "/srv/results/a\nb"))
    code, err = failure(["results"], capsys)
    assert code == 3
    assert err == "error: Permission denied: /srv/results/a\\nb\n"
    raise_in_results(monkeypatch, OSError(28, "No space left on device"))
    assert failure(["results"], capsys) == (3, "error: No space left on device\n")


@pytest.mark.parametrize("command", ["list", "k8s"])
def test_odd_publish_records_another_tool_appended_are_passed_over(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    odd = [{"image": RECORD["image"], "references": 7}, {**RECORD, "tags": 5, "image_id": ["x"]}]
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "published.jsonl").write_text("".join(json.dumps(r) + "\n" for r in odd))
    argv = ["list", "--json"] if command == "list" else [*OUT_COMMANDS["k8s"], "--out", str(tmp_path / "out")]
    code, _ = failure(argv, capsys)
    assert code == 0
    if command == "k8s":  # no tag to show: the digest reference names the image
        assert f"image: {RECORD['references'][0]}" in next((tmp_path / "out").glob("*[0-9].yaml")).read_text()


def test_a_publish_record_nested_too_deeply_is_a_record_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    records = tmp_path / "state" / "published.jsonl"
    records.parent.mkdir()
    records.write_text(json.dumps(RECORD) + "\n" + "[" * 100_000 + "\n")
    code, err = failure(["list"], capsys)
    assert code == 20
    assert f"error: {records} has a line nested too deeply to read" in err


def test_doctor_reports_a_registry_host_requests_cannot_parse_as_a_failed_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host label over 63 characters: urllib3 refuses it before any lookup, past requests."""
    use_fake_engine(monkeypatch, FakeEngine())
    host = "a" * 64
    assert main(["doctor", "--registry", f"{host}/ml"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert re.search(rf"^registry {host}\s+FAIL\s+unreachable \(https: LocationParseError", out, re.M), out


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["list", "-m", "x" * 100_000], "error: unknown model 'xxxx"),
        (["bake", *SYNTHETIC, "--out", "/nonexistent", "--mirror", "\x1b" * 100_000], "error: --mirror: '\\x1b"),
    ],
    ids=["model", "mirror"],
)
def test_a_long_bad_value_is_quoted_on_one_short_line(
    argv: list[str], start: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    code, err = failure(argv, capsys)
    assert code in (2, 10)
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(start)
    assert len(line) < 200


def test_a_bad_value_is_blamed_on_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """click named the option's MLBOX_* variable for any bad value, even one from the
    configuration file with no variable set."""
    config = tmp_path / "config.yaml"
    config.write_text("parallelism: 0\n")
    args = ["k8s", "-m", "resnet50", "--registry", "r.example/ml", "--out", str(tmp_path / "out")]
    monkeypatch.setenv("MLBOX_CONFIG", str(config))
    code, err = failure(args, capsys)
    assert code == 2
    assert f"Invalid value for '--parallelism' (from the configuration file {config}): 0 is not in the range" in err
    assert "MLBOX_PARALLELISM" not in err
    monkeypatch.setenv("MLBOX_PARALLELISM", "x")
    assert "Invalid value for '--parallelism' (from MLBOX_PARALLELISM): 'x'" in failure(args, capsys)[1]
    err = failure([*args, "--parallelism", "y"], capsys)[1]
    assert "Invalid value for '--parallelism': 'y'" in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_variant_names_its_model_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = failure(["render", "-m", "resnet50", "--variant", "synthtic"], capsys)
    assert code == 10
    assert "error: unknown variant of resnet50 'synthtic'; did you mean 'synthetic'?" in err
    assert "hint: valid variants of resnet50: onnx-opset11-fp32," in err  # was "valid variant of resnet50s"
