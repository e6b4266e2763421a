"""mlbox-bench on a GPU: every scenario on CUDA through onnxruntime and PyTorch, the
provider and device really used, samples in GPU memory, the runner search, fp16.

Skipped where no NVIDIA GPU is visible (every CI machine); benchmarks/gpu.py runs them
on a GPU machine, with onnxruntime-gpu, before its measurements.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlbox_bench.cli import main

pytestmark = pytest.mark.gpu

SHORT = ["--duration", "0.5", "--samples", "64", "--allow-invalid"]


def bench(*args: str) -> dict[str, Any]:
    out = Path(args[args.index("--output-dir") + 1])
    assert main(list(args)) == 0
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.colors import tiny_torch_model

    return tiny_torch_model(tmp_path_factory.mktemp("gpu") / "tiny.pt")


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_onnxruntime_runs_every_scenario_on_cuda(scenario: str, bench_model: Path, tmp_path: Path) -> None:
    r = bench(
        "--modelpath",
        str(bench_model),
        "--ep",
        "CUDAExecutionProvider",
        "--scenario",
        scenario,
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert (r["backend"]["provider"], r["backend"]["device"]) == ("CUDAExecutionProvider", "cuda")
    assert r["backend"]["session"]["providers"][0] == "CUDAExecutionProvider"
    assert r["effective_settings"]["scenario"] == scenario
    assert r["harness"]["observed"]["samples_run"] > 0
    assert r["host"]["gpus"], "nvidia-smi lists the GPU"


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_pytorch_runs_every_scenario_on_cuda(scenario: str, torch_model: Path, tmp_path: Path) -> None:
    r = bench(
        "--modelpath",
        str(torch_model),
        "--device",
        "cuda",
        "--scenario",
        scenario,
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert r["backend"]["device"] == "cuda"
    assert r["backend"]["session"]["device_of_weights"].startswith("cuda")
    assert r["backend"]["session"]["cuda_device"]
    assert r["backend"]["session"]["pinned_host_buffers"] is True
    assert r["harness"]["observed"]["samples_run"] > 0


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_samples_on_device_answer_as_host_samples_do(
    backend: str, colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    from tests.support.colors import colour_classifier_torch

    dataset, expected = colour_data
    model = colour_model if backend == "onnxruntime" else colour_classifier_torch(tmp_path / "colour.pt")
    device = ["--ep", "CUDAExecutionProvider"] if backend == "onnxruntime" else ["--device", "cuda"]
    base = ["--modelpath", str(model), *device, "--dataset", str(dataset), "--preprocessed-dir", str(tmp_path / "p")]
    host = bench(*base, "--mode", "accuracy", "--output-dir", str(tmp_path / "host"))
    on_device = bench(*base, "--mode", "accuracy", "--samples-on-device", "--output-dir", str(tmp_path / "dev"))
    assert host["accuracy"]["top1"] == on_device["accuracy"]["top1"] == pytest.approx(expected)
    perf = bench(*base, "--scenario", "Offline", "--samples-on-device", *SHORT, "--output-dir", str(tmp_path / "o"))
    assert perf["harness"]["samples_on_device"] is True
    assert perf["harness"]["observed"]["samples_run"] > 0


def test_the_runner_search_runs_on_the_gpu(bench_model: Path, tmp_path: Path) -> None:
    r = bench(
        "--modelpath",
        str(bench_model),
        "--ep",
        "CUDAExecutionProvider",
        "--scenario",
        "Offline",
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    tuning = r["harness"]["tuning"]
    assert len(tuning["tried"]) >= 2
    assert r["harness"]["runner"]["runner"] == tuning["picked"]["runner"]
    assert "--tune" in tuning["flags"]


def test_onnxruntime_provider_options_reach_the_session(bench_model: Path, tmp_path: Path) -> None:
    r = bench(
        "--modelpath",
        str(bench_model),
        "--ep",
        "CUDAExecutionProvider",
        "--ep-options",
        "prefer_nhwc=1",
        "--scenario",
        "SingleStream",
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert r["backend"]["provider_options"]["prefer_nhwc"] == "1"


def test_pytorch_fp16_channels_last_keeps_the_accuracy(colour_data: tuple[Path, float], tmp_path: Path) -> None:
    from tests.support.colors import colour_classifier_torch

    dataset, expected = colour_data
    model = colour_classifier_torch(tmp_path / "colour.pt")
    r = bench(
        "--modelpath",
        str(model),
        "--device",
        "cuda",
        "--half",
        "--channels-last",
        "--mode",
        "accuracy",
        "--dataset",
        str(dataset),
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert r["accuracy"]["top1"] >= 0.99 * expected
    assert (r["backend"]["session"]["dtype"], r["backend"]["session"]["channels_last"]) == ("float16", True)


def test_a_cuda_request_never_runs_on_the_cpu(bench_model: Path, tmp_path: Path) -> None:
    """The GPU is there: the session really runs on it (no silent CPU fallback)."""
    r = bench("--modelpath", str(bench_model), "--ep", "CUDAExecutionProvider", *SHORT, "--output-dir", str(tmp_path))
    assert r["backend"]["provider"] != "CPUExecutionProvider"
