"""The build pipeline end to end: labels, list, resumed downloads, LoadGen from source."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlbox.fetch import digests
from tests.conftest import FileServer, md5_of
from tests.integration.conftest import Served, catalog_with
from tests.support.engine import Mlbox, run_container
from tests.support.gpu import no_gpu

pytestmark = pytest.mark.docker


def test_built_image_carries_oci_and_mlbox_labels_last(served: Served, docker_client: Any) -> None:
    tag, model = served.tag, served.model
    image = docker_client.images.get(tag)
    labels = image.labels
    created = datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 3600
    for key in ("version", "title", "description", "base.name"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert "org.opencontainers.image.source" not in labels  # the catalog names no source: none invented
    expected = {
        "mlbox.model": "tiny",
        "mlbox.variant": "served",
        "mlbox.weights": "published",
        "mlbox.model.sha256": digests(model)[1],
        "mlbox.device": "cpu",
        "mlbox.backend": "onnxruntime",
        "mlbox.backend.version": "1.32.0",
        "mlbox.loadgen.version": "6.0.17",
        "mlbox.loadgen.from": "wheel",
    }
    assert {k: labels.get(k) for k in expected} == expected
    assert labels["mlbox.weights.source"].startswith("http://127.0.0.1:")
    assert len(labels["mlbox.template.sha256"]) == 64
    newest = docker_client.api.history(tag)[0]["CreatedBy"]
    assert "LABEL" in newest  # labels are the last layer: a new build date rebuilds only that


def test_list_json_shows_what_is_built(served: Served, mlbox: Mlbox) -> None:
    result = mlbox("list", "--json", env={"MLBOX_CATALOG": str(served.catalog)})
    assert result.returncode == 0, result.stderr
    rows = {(r["model"], r["variant"], r["device"]): r for r in json.loads(result.stdout)}
    assert rows[("tiny", "served", "cpu")]["built"] is True
    assert rows[("resnet50", "pytorch-fp32", "cpu")]["buildable"] is True
    assert rows[("resnet50", "pytorch-fp32", "cpu")]["built"] is False


def test_interrupted_download_resumes_and_the_build_succeeds(
    tmp_path: Path,
    tiny_model: Path,
    base_image: str,
    shared_cache: Path,
    file_server: FileServer,
    mlbox: Mlbox,
    namespace: str,
) -> None:
    """The server drops the connection after one 64 KiB read; mlbox resumes with a Range request."""
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache / "wheels", cache / "wheels")  # the wheelhouse is not under test here
    (file_server.root / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    size = tiny_model.stat().st_size
    file_server.drop_after = size - 1000  # past the first 64 KiB chunk, short of the end
    # A model name of its own: the session's NAMESPACE:tiny-cpu stays the image other tests expect.
    catalog = catalog_with(tmp_path, namespace, "tinyresume", file_server.url("tiny.onnx"), md5_of(tiny_model))
    env = {"MLBOX_CATALOG": str(catalog), "MLBOX_CACHE_DIR": str(cache)}
    result = mlbox("build", "--model", "tinyresume", "--base-image", base_image, "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "download interrupted" in result.stderr
    assert [rng for _, rng in file_server.requests] == [None, "bytes=65536-"]
    built = json.loads(result.stdout)
    assert built[0]["model_sha256"] == digests(tiny_model)[1]
    assert (cache / "models" / md5_of(tiny_model) / "tiny.onnx").read_bytes() == tiny_model.read_bytes()


class TestLoadGenFromSource:
    """Its own class: pytest-xdist (--dist loadscope) runs it beside the module's other tests."""

    @pytest.mark.timeout(900)
    def test_loadgen_compiled_from_source_runs(
        self, tmp_path: Path, served: Served, base_image: str, docker_client: Any, mlbox: Mlbox, namespace: str
    ) -> None:
        """--loadgen-from source: PyPI's sdist compiled in a builder stage (apt for g++ over
        http); the runtime stage gets only the installed wheel, and LoadGen works."""
        # The model file is in the shared cache already (same md5): the URL is never asked.
        catalog = catalog_with(tmp_path, namespace, "tinysrc", "http://127.0.0.1:9/unused", md5_of(served.model))
        args = ["build", "--model", "tinysrc", "--base-image", base_image, "--loadgen-from", "source", "--json"]
        result = mlbox(*args, env={"MLBOX_CATALOG": str(catalog)}, timeout=840)
        assert result.returncode == 0, result.stderr[-4000:]
        assert " : FROM " + base_image + " AS loadgen-build" in result.stderr
        assert "pip wheel --no-index" in result.stderr
        tag = json.loads(result.stdout)[0]["tag"]
        assert tag == f"{namespace}:tinysrc-cpu-loadgen-source"  # not the wheel build's tag
        assert docker_client.images.get(tag).labels["mlbox.loadgen.from"] == "source"
        results = tmp_path / "results"
        code, logs = run_container(
            # LoadGen works if it runs to the end and writes its result; a 0.2 s run's
            # VALID verdict is the machine's speed, not that (--allow-invalid).
            docker_client,
            tag,
            ["--scenario", "SingleStream", "--duration", "0.2", "--samples", "16", "--allow-invalid"],
            results=results,
        )
        assert code == 0, logs
        bench = json.loads((results / "result.json").read_text())  # `result` is mlbox build's
        assert bench["effective_settings"]["scenario"] == "SingleStream"
        assert bench["metric"]["value"] > 0  # the compiled LoadGen timed real queries
        probe = docker_client.containers.run(
            tag,
            ["-c", "command -v g++ cc gcc || echo no-compiler; cat /opt/mlbox/loadgen/requirements.lock"],
            entrypoint="sh",
            remove=True,
            network_mode="none",
        ).decode()
        assert probe.startswith("no-compiler")
        assert "mlcommons_loadgen==6.0.17 --hash=sha256:" in probe


# The CUDA-pip route's plumbing (NVIDIA's wheels into the packages, LD_LIBRARY_PATH to their
# libraries, onnxruntime's GPU build, the refusal to run on the CPU) on one NVIDIA wheel, the
# CUDA runtime: the full set (1.6 GB: cuBLAS, cuDNN, ...) is the images tier's.
CUDA_RUNTIME_ONLY = {"packages": ["nvidia-cuda-runtime==13.5.37"], "library_dirs": ["nvidia/cu13/lib"]}


class TestCudaFromPip:
    """Its own class: pytest-xdist (--dist loadscope) runs it beside the module's other tests."""

    @no_gpu
    @pytest.mark.timeout(900)
    def test_cuda_image_from_nvidia_wheels_builds_and_refuses_to_run_without_a_gpu(
        self, tmp_path: Path, served: Served, base_image: str, docker_client: Any, mlbox: Mlbox
    ) -> None:
        """The default CUDA route: no NVIDIA base image, NVIDIA's CUDA wheels. The image's
        onnxruntime offers CUDAExecutionProvider; on this GPU-less host the benchmark refuses
        to fall back to CPU, and `mlbox run` asks the engine for GPUs."""
        import yaml

        data = yaml.safe_load(served.catalog.read_text())
        full = data["devices"]["cuda"]["cuda_pip"]
        assert set(CUDA_RUNTIME_ONLY["packages"]) < set(full["packages"])  # a real part of the real route
        data["devices"]["cuda"]["cuda_pip"] = CUDA_RUNTIME_ONLY
        catalog = tmp_path / "images.yaml"
        catalog.write_text(yaml.safe_dump(data))
        env = {"MLBOX_CATALOG": str(catalog)}
        result = mlbox(
            "build", "--model", "tiny", "--device", "cuda", "--base-image", base_image, "--json", env=env, timeout=840
        )
        assert result.returncode == 0, result.stderr[-4000:]
        tag = json.loads(result.stdout)[0]["tag"]
        assert tag == served.tag.replace("tiny-cpu", "tiny-cuda")
        image = docker_client.images.get(tag)
        assert image.labels["mlbox.cuda.from"] == "pip"
        assert "nvidia-cuda-runtime==13.5.37" in image.labels["mlbox.backend.packages"]
        assert "nvidia/cuda" not in image.labels["org.opencontainers.image.base.name"]
        probe = docker_client.containers.run(
            tag,
            ["-c", "import onnxruntime as o, os; print(o.get_available_providers(), os.environ['LD_LIBRARY_PATH'])"],
            entrypoint="python3",
            remove=True,
            network_mode="none",
        ).decode()
        assert "CUDAExecutionProvider" in probe
        assert "/opt/mlbox/deps/nvidia/cu13/lib" in probe
        code, logs = run_container(docker_client, tag, ["--duration", "0.2"], results=tmp_path / "results")
        assert code == 3, logs
        assert "no NVIDIA GPU visible" in logs
        run = mlbox("run", "--image", tag, "--results", str(tmp_path / "run"), "--", "--duration", "0.2", env=env)
        assert run.returncode == 18, run.stderr
        assert "cannot give GPUs" in run.stderr
        assert not docker_client.containers.list(all=True, filters={"ancestor": tag})  # nothing left behind
