"""Shared fixtures. Engine tests are marked (docker/registry) and run with --run-docker;
unit tests are guarded so an accidental engine call fails instead of passing by luck."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def gpu_present() -> bool:
    """An NVIDIA GPU is visible here (the check mlbox-bench itself makes)."""
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


# For tests whose point is what happens on a host without a GPU: skipped, not failed, on one.
no_gpu = pytest.mark.skipif(gpu_present(), reason="checks behaviour on a host without an NVIDIA GPU")


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    """Each session gets a private base temporary directory, removed when the session ends.

    pytest's own, with tmp_path_retention_policy "none", is pytest-of-<user>/pytest-N, with
    no lock: every session, as it exits, removes every pytest-N up to its own, including
    those of sessions still running. A `pytest tests/unit` run beside `make test` removed
    the longer run's directories under it (76 errors). No other session touches this one.
    """
    if config.option.basetemp:  # the caller chose one: theirs to keep or remove
        return
    base = Path(tempfile.mkdtemp(prefix="pytest-mlbox-", dir=os.environ.get("PYTEST_DEBUG_TEMPROOT")))
    config.option.basetemp = str(base)
    config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-docker", action="store_true", help="run tests that need a Docker engine and registry")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu_here = pytest.mark.skip(reason="needs an NVIDIA GPU (benchmarks/gpu.py runs these on a GPU machine)")
    no_engine = pytest.mark.skip(reason="needs a Docker engine: run with --run-docker (make test does)")
    for item in items:
        if "gpu" in item.keywords and not gpu_present():
            item.add_marker(no_gpu_here)
        if not config.getoption("--run-docker") and ("docker" in item.keywords or "registry" in item.keywords):
            item.add_marker(no_engine)


@pytest.fixture(autouse=True, scope="session")
def _no_user_configuration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The caller's ~/.config/mlbox/config.yaml (make demo writes one) must not change what
    tests see: point every test, and every mlbox it starts, at an empty config home.

    pip reads its user configuration from the same home, and the wheelhouse's
    `pip download` needs it (a machine's find-links or index, as on this project's
    machines, where PyTorch's CPU wheel is found only through pip.conf): pip's own folder
    is linked into the new home."""
    home = tmp_path_factory.mktemp("config-home")
    before = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    if (Path(before) / "pip").is_dir():
        (home / "pip").symlink_to(Path(before) / "pip")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(home))
        mp.delenv("MLBOX_CONFIG", raising=False)
        yield


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MLBOX_CACHE_DIR", str(path))
    return path


class FileServer:
    """A real HTTP server on 127.0.0.1 serving files from a directory, with Range support
    and a switch that drops the connection part-way once (to test resuming)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.drop_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if server.drop_after is not None:
                    body, server.drop_after = body[: server.drop_after], None
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    server = FileServer(root)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX model with the MLPerf ResNet50 I/O names (synthetic weights)."""
    from mlbox.synthetic import build

    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    path.write_bytes(build("tiny", 1).SerializeToString())
    return path


@pytest.fixture(scope="session")
def bench_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic model on 32x32 inputs: LoadGen runs cost milliseconds, and 1024
    synthetic samples (mlperf.conf's count) take 12 MB instead of 616 MB."""
    from mlbox.synthetic import build

    path = tmp_path_factory.mktemp("models") / "tiny32.onnx"
    path.write_bytes(build("tiny", 1, image_size=32).SerializeToString())
    return path


@pytest.fixture(scope="session")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.colors import colour_classifier

    return colour_classifier(tmp_path_factory.mktemp("models") / "colour.onnx")


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """(dataset dir, expected top-1) of the generated ImageNet-layout dataset."""
    from tests.support.colors import colour_dataset

    return colour_dataset(tmp_path_factory.mktemp("imagenet"))
