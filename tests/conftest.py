"""What every tier shares: options, tiers and their time limits, temporary directories, the
engine guard, and the small models and data the tests make.

The tiers (the README's "Tests" section gives their promises):

- unit (tests/unit): in process; no engine, no network; every scenario and backend on tiny
  models. `make unit`.
- integration (tests/integration, --run-docker): a real engine, registry, LoadGen and
  backend library; each image family proved on a tiny twin built once per run. With the
  unit tier: `make test`.
- images (tests/images, --run-images): the full ResNet-50-shaped matrix of every image
  family (every scenario, accuracy, read-only, as its own user). `make test-images`.

Every test has a time limit (pytest-timeout): its tier's below, or its own
@pytest.mark.timeout. A test that hangs (an engine call, a LoadGen run) fails with the
stack it was waiting in, and the run goes on.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine_guard import RUN_VARIABLE, EngineGuard, namespace_of_run
from tests.support.gpu import gpu_present

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

# The engine fixtures (registries, images, the `mlbox` runner) for the integration and images tiers.
pytest_plugins = ["tests.support.engine"]

# Seconds a test of each tier may take, fixtures included, on a busy 2-core machine.
TIMEOUTS = {"unit": 120, "integration": 300, "images": 1200}


def tier(item: pytest.Item) -> str:
    """unit, integration or images: the folder under tests/ a test lives in."""
    try:
        return Path(str(item.path)).relative_to(TESTS).parts[0]
    except ValueError:  # a test outside tests/ (pytester's): the strictest limit
        return "unit"


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    """Each run gets a private base temporary directory, removed when the run ends.

    pytest's own, with tmp_path_retention_policy "none", is pytest-of-<user>/pytest-N, with
    no lock: every session, as it exits, removes every pytest-N up to its own, including
    those of sessions still running. A `pytest tests/unit` run beside `make test` removed
    the longer run's directories under it (76 errors). No other run touches this one.
    pytest-xdist's workers are given a folder under the controller's (--basetemp).
    """
    # One token per run, shared with pytest-xdist's workers through the environment: the
    # run's image namespace and the engine guard's check both derive from it.
    os.environ.setdefault(RUN_VARIABLE, secrets.token_hex(4))
    # SIGTERM (a CI job's time limit, `kill`) ends the run as Ctrl-C does, so the engine
    # guard and the temporary directories' cleanup still run; by default it ends pytest at once.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    worker = hasattr(config, "workerinput")
    engine = config.getoption("--run-docker") or config.getoption("--run-images")
    if engine and not worker:
        config.pluginmanager.register(EngineGuard(namespace_of_run()), "mlbox-engine-guard")
    if config.option.basetemp:  # the caller (or xdist's controller) chose one: theirs to remove
        return
    base = Path(tempfile.mkdtemp(prefix="pytest-mlbox-", dir=os.environ.get("PYTEST_DEBUG_TEMPROOT")))
    config.option.basetemp = str(base)
    config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))


def _interrupt(signum: int, frame: object) -> None:
    msg = f"signal {signal.Signals(signum).name}"
    raise KeyboardInterrupt(msg)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-docker", action="store_true", help="run the integration tier (a Docker engine, registry)")
    parser.addoption("--run-images", action="store_true", help="run the images tier (the full ResNet-50 matrix)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu_here = pytest.mark.skip(reason="needs an NVIDIA GPU (benchmarks/gpu.py runs these on a GPU machine)")
    for item in items:
        kind = tier(item)
        if "gpu" in item.keywords and not gpu_present():
            item.add_marker(no_gpu_here)
        engine = "docker" in item.keywords or "registry" in item.keywords
        if kind == "images" and not config.getoption("--run-images"):
            item.add_marker(pytest.mark.skip(reason="the images tier: run with --run-images (make test-images does)"))
        elif engine and not (config.getoption("--run-docker") or config.getoption("--run-images")):
            item.add_marker(pytest.mark.skip(reason="needs a Docker engine: run with --run-docker (make test does)"))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS.get(kind, TIMEOUTS["unit"])))


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
