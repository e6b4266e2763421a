"""Publishing logic without an engine: registry names, credentials, push streams, records,
the registry's digest of a tag (from a Distribution API served on 127.0.0.1 here), and the
results table/plot."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlbox.engine import follow_push
from mlbox.errors import MlboxError, PushError, RecordError
from mlbox.publish import Credentials, append_record, credentials, parse_registry, registry_digest

DIGEST = "sha256:" + "a" * 64
TOKEN = "token-" + "7" * 16


class FakeRegistry:
    """The part of the Distribution API mlbox asks: HEAD /v2/NAME/manifests/TAG answers the
    digest in ``manifests`` ("NAME:TAG" -> digest), else 404, or ``status`` when set. With
    a ``login``, it wants a Bearer token from its token service (GET /token with Basic
    auth), as Docker Hub, GHCR or Harbor do. Plain http on 127.0.0.1, as Docker allows."""

    def __init__(self) -> None:
        self.manifests: dict[str, str] = {}
        self.status: int | None = None
        self.login: tuple[str, str] | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                registry.requests.append(("HEAD", self.path, dict(self.headers)))
                match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", self.path)
                if registry.login and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    scope = f"repository:{match[1] if match else ''}:pull"
                    realm = f"http://{registry.address}/token"
                    self._answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="{scope}"'})
                    return
                digest = registry.manifests.get(f"{match[1]}:{match[2]}") if match else None
                status = registry.status or (200 if digest else 404)
                self._answer(status, {"Docker-Content-Digest": digest} if status == 200 and digest else {})

            def do_GET(self) -> None:  # the token service
                registry.requests.append(("GET", self.path, dict(self.headers)))
                user, password = registry.login or ("", "")
                basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                if not self.path.startswith("/token?") or self.headers.get("Authorization") != basic:
                    self._answer(401, {})
                    return
                body = json.dumps({"token": TOKEN}).encode()
                self._answer(200, {"Content-Type": "application/json"}, body)

            def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"


@contextlib.contextmanager
def serve_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    thread = threading.Thread(target=registry.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        registry.httpd.shutdown()
        registry.httpd.server_close()
        thread.join()


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    with serve_registry() as registry:
        yield registry


def closed_port() -> str:
    """127.0.0.1:PORT where nothing listens: a registry that cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


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


def test_the_registry_digest_of_a_tag_is_the_one_it_answers_a_manifest_HEAD_with(
    fake_registry: FakeRegistry,
) -> None:
    fake_registry.manifests["ml/mlbox:t"] = DIGEST
    registry = parse_registry(f"{fake_registry.address}/ml")
    assert registry_digest(registry, "mlbox:t", None) == DIGEST
    [(method, path, headers)] = fake_registry.requests
    assert (method, path) == ("HEAD", "/v2/ml/mlbox/manifests/t")
    assert {t.strip() for t in headers["Accept"].split(",")} == {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
    # Unreachable is not a refusal: the caller records the metadata's digest, marked.
    assert registry_digest(parse_registry(f"{closed_port()}/ml"), "mlbox:t", None) is None


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, r"127\.0\.0\.1:\d+/ml/mlbox:t is not in the registry, so it was not pushed there"),
        (403, "refused access to 127.0.0.1"),
        (500, "answered HTTP 500"),
    ],
)
def test_a_registry_that_does_not_confirm_the_tag_is_a_refusal(
    status: int, message: str, fake_registry: FakeRegistry
) -> None:
    fake_registry.manifests["ml/mlbox:t"] = DIGEST
    fake_registry.status = status
    with pytest.raises(RecordError, match=message):
        registry_digest(parse_registry(f"{fake_registry.address}/ml"), "mlbox:t", None)


def test_a_registry_login_goes_through_its_token_service_and_stays_out_of_messages(
    fake_registry: FakeRegistry,
) -> None:
    fake_registry.manifests["ml/mlbox:t"] = DIGEST
    fake_registry.login = ("me", "s3cret-pw")
    registry = parse_registry(f"{fake_registry.address}/ml")
    with pytest.raises(RecordError, match="needs a login") as anonymous:
        registry_digest(registry, "mlbox:t", None)
    assert "--password-stdin" in (anonymous.value.hint or "")
    with pytest.raises(RecordError, match="refused the login") as wrong:
        registry_digest(registry, "mlbox:t", Credentials("me", "wrong-pw"))
    assert "wrong-pw" not in f"{wrong.value} {wrong.value.hint}"
    assert registry_digest(registry, "mlbox:t", Credentials("me", "s3cret-pw")) == DIGEST
    token_requests = [path for method, path, _ in fake_registry.requests if method == "GET"]
    assert token_requests[-1] == "/token?service=fake&scope=repository%3Aml%2Fmlbox%3Apull"
    assert all("s3cret" not in path for _, path, _ in fake_registry.requests)  # never in a URL


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
