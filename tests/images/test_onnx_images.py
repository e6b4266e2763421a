"""onnxruntime images on real parts: the synthetic ResNet-50 v1.5 ONNX image (what `make
demo` builds) through every scenario, read-only as its own user, scoring a generated dataset;
and the CUDA image of the default route with NVIDIA's full set of CUDA and cuDNN wheels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.images.conftest import SCENARIOS, build, offline_headroom, run_valid
from tests.support.engine import Mlbox, result_of, run_container
from tests.support.gpu import no_gpu

# pytest-xdist (--dist loadscope) runs a module's tests in one worker (a class's apart), which
# builds the images once.
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def synthetic(base_image: str, mlbox: Mlbox) -> str:
    return build(mlbox, base_image, "synthetic")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_synthetic_image_runs_every_scenario_valid_with_no_network(
    scenario: str, synthetic: str, tmp_path: Path, mlbox: Mlbox
) -> None:
    result = run_valid(mlbox, synthetic, scenario, tmp_path)
    assert (result["backend"]["name"], result["backend"]["provider"]) == ("onnxruntime", "CPUExecutionProvider")
    assert result["model"]["weights"] == "synthetic"


def test_the_synthetic_image_runs_read_only_as_its_own_user(
    synthetic: str, docker_client: Any, tmp_path: Path, mlbox: Mlbox
) -> None:
    out = tmp_path / "results"
    out.mkdir()
    out.chmod(0o777)  # the image's own non-root user writes here
    args = ["--scenario", "Offline", *offline_headroom(mlbox, synthetic, tmp_path / "probe", 4)]
    code, logs = run_container(
        docker_client, synthetic, args, results=out, user="10001:10001", read_only=True, tmpfs={"/tmp": ""}
    )
    assert code == 0, logs
    assert result_of(out)["validity"] == "VALID"
    assert {p.stat().st_uid for p in out.iterdir()} == {10001}


def test_accuracy_in_the_synthetic_image(
    synthetic: str, docker_client: Any, colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    dataset, expected = colour_data
    colour_model.chmod(0o644)
    code, logs = run_container(
        docker_client,
        synthetic,
        ["--modelpath", "/models/colour.onnx", "--mode", "accuracy", "--dataset", "/data"],
        results=tmp_path / "results",
        read_only_mounts={dataset: "/data", colour_model: "/models/colour.onnx"},
    )
    assert code == 0, logs
    assert result_of(tmp_path / "results")["accuracy"]["top1"] == pytest.approx(expected)


class TestCudaFullWheels:
    """Its own class: pytest-xdist runs it beside the CPU image's tests."""

    @no_gpu
    def test_the_cuda_image_carries_nvidias_full_wheels_and_refuses_to_run_without_a_gpu(
        self, base_image: str, docker_client: Any, tmp_path: Path, mlbox: Mlbox
    ) -> None:
        tag = build(mlbox, base_image, "synthetic", device="cuda")
        labels = docker_client.images.get(tag).labels
        for package in ("nvidia-cublas", "nvidia-cudnn-cu13", "onnxruntime-gpu"):
            assert package + "==" in labels["mlbox.backend.packages"]
        probe = docker_client.containers.run(
            tag,
            ["-c", "import onnxruntime as o; print(o.get_available_providers())"],
            entrypoint="python3",
            remove=True,
            network_mode="none",
        ).decode()
        assert "CUDAExecutionProvider" in probe
        code, logs = run_container(docker_client, tag, ["--duration", "0.2"], results=tmp_path / "results")
        assert code == 3, logs
        assert "no NVIDIA GPU visible" in logs
