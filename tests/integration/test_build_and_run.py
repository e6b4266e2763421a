"""The walking skeleton on real parts: a model served over HTTP on 127.0.0.1, a real
wheelhouse, a real image built through the Docker SDK, LoadGen run in a container
with no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlbox.fetch import digests
from tests.conftest import FileServer
from tests.integration.conftest import Served, catalog_with
from tests.support.engine import Mlbox, run_container

pytestmark = pytest.mark.docker


def test_built_image_runs_loadgen_without_network(served: Served, docker_client: Any, tmp_path: Path) -> None:
    tag, model = served.tag, served.model
    results = tmp_path / "results"
    code, logs = run_container(
        # An expected rate above what the tiny model reaches anywhere (9-19k samples/s here):
        # its Offline runs outpaced even the fastest calibration round and ended early.
        docker_client,
        tag,
        ["--scenario", "Offline", "--duration", "2", "--samples", "64", "--target-qps", "60000"],
        results=results,
    )
    assert code == 0, logs
    assert (results / "mlperf_log_summary.txt").is_file()
    assert (results / "mlperf_log_detail.txt").is_file()
    result = json.loads((results / "result.json").read_text())
    assert result["validity"] == "VALID"
    assert result["model"]["sha256"] == digests(model)[1]
    # Owned by the calling user, not the image's.
    import os

    assert (results / "result.json").stat().st_uid == os.getuid()


def test_accuracy_in_the_container_on_a_read_only_dataset(
    served: Served,
    docker_client: Any,
    tmp_path: Path,
    colour_model: Path,
    colour_data: tuple[Path, float],
) -> None:
    """The image decodes and preprocesses a mounted ImageNet-layout dataset (read-only:
    the .npy cache goes elsewhere) and scores it; a CM variable and a flag override the
    image's own defaults."""
    tag = served.tag
    dataset, expected = colour_data
    results = tmp_path / "results"
    code, logs = run_container(
        docker_client,
        tag,
        ["--modelpath", "/models/colour.onnx", "--mode", "accuracy", "--dataset", "/data"],
        results=results,
        read_only_mounts={dataset: "/data", colour_model: "/models/colour.onnx"},
        environment={"CM_MLPERF_LOADGEN_SCENARIO": "SingleStream"},
    )
    assert code == 0, logs
    result = json.loads((results / "result.json").read_text())
    assert result["accuracy"]["top1"] == pytest.approx(expected)
    assert (results / "accuracy.txt").read_text().startswith("accuracy=75.000%")
    assert result["scenario"] == "SingleStream"
    assert result["sources"]["scenario"] == "CM_MLPERF_LOADGEN_SCENARIO"
    assert result["sources"]["modelpath"] == "flag --modelpath"  # over MLBOX_DEFAULT_MODELPATH
    assert result["sources"]["output_dir"] == "MLBOX_DEFAULT_OUTPUT_DIR (image)"


def test_image_carries_model_sha_and_runs_as_non_root(served: Served, docker_client: Any) -> None:
    tag, model = served.tag, served.model
    image = docker_client.images.get(tag)
    labels = image.labels
    assert labels["mlbox.model.sha256"] == digests(model)[1]
    assert labels["mlbox.model"] == "tiny"
    assert labels["mlbox.loadgen.version"] == "6.0.17"
    config = image.attrs["Config"]
    assert config["Entrypoint"] == ["mlbox-bench"]
    assert config["User"] == "10001:10001"


def test_model_and_harness_are_separate_layers_in_order(served: Served, docker_client: Any) -> None:
    tag, model = served.tag, served.model
    history = docker_client.api.history(tag)  # newest first
    created = [h["CreatedBy"] for h in history]

    def layer(marker: str) -> int:
        matches = [i for i, c in enumerate(created) if "COPY" in c and marker in c]
        assert len(matches) == 1, (marker, created)
        return matches[0]

    model_layer, app_layer, deps_layer = (
        layer("in /opt/mlbox/model/"),
        layer("in /opt/mlbox/app/"),
        layer("in /opt/mlbox/deps"),
    )
    assert app_layer < model_layer < deps_layer  # harness above model above dependencies
    assert history[model_layer]["Size"] >= model.stat().st_size
    # The harness code alone: its source files, a launcher and directory entries, no model
    # or packages (a fixed byte bound broke as soon as the harness grew a backend).
    assert harness_bytes() <= history[app_layer]["Size"] < harness_bytes() + 64_000


def harness_bytes() -> int:
    import mlbox_bench

    package = Path(mlbox_bench.__file__).parent
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_wrong_checksum_is_refused_and_leaves_nothing_cached(
    tmp_path: Path,
    tiny_model: Path,
    base_image: str,
    shared_cache: Path,
    file_server: FileServer,
    docker_client: Any,
    mlbox: Mlbox,
    namespace: str,
) -> None:
    (file_server.root / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    wrong = "0123456789abcdef0123456789abcdef"
    catalog = catalog_with(tmp_path, namespace, "tampered", file_server.url("tiny.onnx"), wrong)
    result = mlbox("build", "--model", "tampered", "--base-image", base_image, env={"MLBOX_CATALOG": str(catalog)})
    assert result.returncode == 12, result.stderr
    assert f"expected {wrong}" in result.stderr
    assert result.stdout == ""
    assert file_server.requests, "the model was never requested"
    models = shared_cache / "models"
    assert not (models / wrong).exists()
    assert not [p for p in models.rglob("*") if p.name.endswith(".part")]
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker_client.images.get(f"{namespace}:tampered-cpu")


@pytest.mark.registry
def test_built_image_pushes_to_a_real_registry_through_mlbox(
    served: Served, docker_client: Any, registry: str, tmp_path: Path, mlbox: Mlbox, namespace: str
) -> None:
    import requests

    env = {"MLBOX_CATALOG": str(served.catalog), "MLBOX_STATE_DIR": str(tmp_path)}
    result = mlbox("push", "--model", "tiny", "--registry", f"{registry}/pushed", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = result.stdout.strip().splitlines()[-1]
    assert reference.startswith(f"{registry}/pushed/{namespace}@sha256:")
    tags = requests.get(f"http://{registry}/v2/pushed/{namespace}/tags/list", timeout=10).json()
    assert tags["tags"] == ["tiny-cpu"]
    # The registry serves the image the engine built: same config digest.
    manifest = requests.get(
        f"http://{registry}/v2/pushed/{namespace}/manifests/tiny-cpu",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    ).json()
    assert manifest["config"]["digest"] == docker_client.images.get(served.tag).id
