"""Publishing logic without an engine: registry names, credentials, push streams, records,
and the results table/plot."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from mlbox.engine import follow_push
from mlbox.errors import MlboxError, PushError
from mlbox.publish import Credentials, append_record, credentials, parse_registry


@pytest.mark.parametrize(
    ("text", "host", "namespace"),
    [("registry.example.com/ml", "registry.example.com", "ml"), ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b")],
)
def test_registry_names(text: str, host: str, namespace: str) -> None:
    r = parse_registry(text)
    assert (r.host, r.namespace, r.repository("mlbox")) == (host, namespace, f"{host}/{namespace}/mlbox")


@pytest.mark.parametrize("text", ["http://r.example/ml", "r.example", "r.example/ML", "r.example/ml:tag", "r/x y"])
def test_bad_registry_names_are_refused(text: str) -> None:
    with pytest.raises(PushError, match="is not HOST"):
        parse_registry(text)


def test_credentials_come_from_stdin_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    creds = credentials("me", True, {})
    assert creds == Credentials("me", "s3cret")
    assert "s3cret" not in repr(creds)
    # The user from --username or MLBOX_REGISTRY_USERNAME (click reads it), the password
    # from MLBOX_REGISTRY_PASSWORD.
    assert credentials("u", False, {"MLBOX_REGISTRY_PASSWORD": "p"}) == Credentials("u", "p")
    assert credentials(None, False, {}) is None  # the engine uses the user's docker config
    with pytest.raises(PushError, match="needs both a user and a password") as no_password:
        credentials("me", False, {})
    assert "--password-stdin" in (no_password.value.hint or "")
    with pytest.raises(PushError, match="needs --username"):
        credentials(None, True, {})
    with pytest.raises(PushError, match="needs both a user and a password"):
        credentials(None, False, {"MLBOX_REGISTRY_PASSWORD": "p"})


def test_push_stream_errors_raise_with_the_registrys_message() -> None:
    stream: list[dict[str, Any]] = [
        {"status": "The push refers to repository [r/x]"},
        {"id": "abc", "status": "Preparing"},
        {"errorDetail": {"message": "unauthorized: authentication required"}, "error": "unauthorized"},
    ]
    lines: list[str] = []
    with pytest.raises(PushError, match="unauthorized: authentication required") as err:
        follow_push(iter(stream), "r/x:t", lines.append)
    assert "log in" in (err.value.hint or "")
    assert lines == ["abc: Preparing"]


def test_push_stream_returns_the_digest_and_reports_each_layer_state_once() -> None:
    digest = "sha256:" + "b" * 64
    stream: list[dict[str, Any]] = [
        {"id": "l1", "status": "Pushing", "progress": "1/2"},
        {"id": "l1", "status": "Pushing", "progress": "2/2"},
        {"id": "l1", "status": "Pushed"},
        {"status": f"t: digest: {digest} size: 1"},
        {"aux": {"Tag": "t", "Digest": digest, "Size": 1}},
    ]
    lines: list[str] = []
    assert follow_push(iter(stream), "r/x:t", lines.append) == digest
    assert lines == ["l1: Pushing", "l1: Pushed"]
    with pytest.raises(PushError, match="without a digest"):
        follow_push(iter([{"status": "done"}]), "r/x:t", lines.append)


def test_records_are_appended_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "state" / "published.jsonl"
    append_record(path, {"image": "a", "references": ["r/a@sha256:1"]})
    append_record(path, {"image": "b", "references": ["r/b@sha256:2"]})
    assert [json.loads(line)["image"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_results_table_and_plot(tmp_path: Path) -> None:
    from mlbox.results import collect, plot_html, table_rows

    for name, validity, p99 in (("a", "VALID", 2_000_000), ("b", "INVALID", 30_000_000)):
        run = tmp_path / name
        run.mkdir()
        result = {
            "scenario": "Server",
            "validity": validity,
            "metric": {"name": "result_completed_samples_per_sec", "value": 20.5, "unit": "samples/s"},
            "latency_ns": {"percentiles": {"50.00_percentile": 1_000_000, "99.00_percentile": p99}},
        }
        (run / "result.json").write_text(json.dumps(result))
    (tmp_path / "a" / "mlbox-run.json").write_text(
        json.dumps({"image": "mlbox:resnet50-cpu", "repo_digests": ["r/mlbox@sha256:" + "c" * 64]})
    )
    runs = collect([tmp_path])
    rows = table_rows(runs)
    assert rows[0][1:] == ["mlbox:resnet50-cpu", "sha256:cccccccccccc", "Server", "20.5 samples/s", "VALID", "2.000"]
    assert rows[1][5:] == ["INVALID", "30.000"]
    html = plot_html(runs)
    assert html.count("<polyline") == 2
    with pytest.raises(MlboxError, match="does not exist"):
        collect([tmp_path / "nope"])
