"""The PyTorch backend through the real harness: LoadGen and PyTorch (CPU build) in process,
on small models the tests make. Checks what PyTorch and the runner report, not verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.backend_runs import SHORT, bench
from tests.support.gpu import no_gpu

torch = pytest.importorskip("torch")  # the dev extras install PyTorch's CPU build


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support.colors import colour_classifier_torch, tiny_torch_model

    d = tmp_path_factory.mktemp("torch-models")
    return {
        "torchscript": tiny_torch_model(d / "tiny.pt"),
        "int8": tiny_torch_model(d / "tiny-int8.pt", quantized=True),
        "torch-export": tiny_torch_model(d / "tiny.pt2", "torch-export"),
        "state": tiny_torch_model(d / "tiny-state.pth", "state-dict"),
        "colour": colour_classifier_torch(d / "colour.pt"),
        "colour-export": colour_classifier_torch(d / "colour.pt2", "torch-export"),
    }


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_every_scenario_runs_on_torchscript(scenario: str, models: dict[str, Path], tmp_path: Path) -> None:
    extra = ["--target-latency", "100"] if scenario == "Server" else []
    rc, result = bench(
        "--modelpath", str(models["torchscript"]), "--scenario", scenario, *SHORT, *extra, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["effective_settings"]["scenario"] == scenario
    assert result["harness"]["observed"]["samples_run"] > 0
    backend = result["backend"]
    assert (backend["name"], backend["model_format"]) == ("pytorch", "torchscript")
    assert backend["preprocessing"] == "torchvision"
    assert backend["version"] == torch.__version__
    assert backend["session"]["inference_mode"] is True
    assert backend["session"]["device_of_weights"] == "cpu"
    assert result["model"]["label_offset"] == 0  # 1000 classes
    assert result["sources"]["backend"] == "model format torchscript"


@pytest.mark.parametrize("fmt", ["torch-export", "int8", "state"])
def test_other_formats_load(fmt: str, models: dict[str, Path], tmp_path: Path) -> None:
    args = ["--modelpath", str(models[fmt]), "--scenario", "Offline", *SHORT, "--output-dir", str(tmp_path)]
    if fmt == "state":  # a state dict holds weights only: the seed app's route gives the network
        from tests.support.colors import tiny_torch_code

        code = tiny_torch_code(tmp_path / "code")
        args += ["--model_code", str(code), "--model_cfg", str(code / "cfg.json"), "--input-shape", "3,32,32"]
    rc, result = bench(*args)
    assert rc == 0
    assert result is not None
    assert result["harness"]["observed"]["samples_run"] > 0
    session = result["backend"]["session"]
    expected = {"torch-export": "torch-export", "int8": "torchscript", "state": "state-dict"}[fmt]
    assert session["format"] == expected
    if fmt == "torch-export":
        assert session["input_shape"] == [3, 32, 32]  # read from the program's signature
    if fmt == "state":
        assert session["route"] == "model code (seed app)"


@pytest.mark.subprocess
@pytest.mark.parametrize("model", ["colour", "colour-export"])
def test_accuracy_through_pytorch_decodes_as_the_official_scorer(
    model: str, models: dict[str, Path], colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    """torchvision's preprocessing, 1000 classes (no offset), and the log read the way
    accuracy-imagenet.py reads it (float32, no offset) gives accuracy.txt's value."""
    dataset, expected = colour_data
    out = tmp_path / "out"
    rc, result = bench(
        "--modelpath",
        str(models[model]),
        "--mode",
        "accuracy",
        "--dataset",
        str(dataset),
        "--preprocessed-dir",
        str(tmp_path / "prep"),
        "--output-dir",
        str(out),
    )
    assert rc == 0
    assert result is not None
    assert result["accuracy"]["top1"] == pytest.approx(expected)
    labels = [int(line.split()[1]) for line in (dataset / "val_map.txt").read_text().splitlines()]
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    good = sum(
        int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) == labels[e["qsl_idx"]] for e in entries
    )  # the official decoding: float32, no offset
    line = (out / "accuracy.txt").read_text().splitlines()[0]
    assert line.startswith(f"accuracy={100.0 * good / len(entries):.3f}%")
    assert list((tmp_path / "prep").rglob("imagenet-torchvision-NCHW-224-*"))  # its own preprocessing cache


def test_the_preprocessing_profile_reaches_the_samples(
    models: dict[str, Path], colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    """The format names torchvision's profile; --preprocessing overrides it, and each
    profile's samples are what its formula makes (torchvision's: /255, mean/std)."""
    dataset, _ = colour_data
    prep = tmp_path / "prep"
    for profile in ("mlperf", "torchvision"):
        _, result = bench(
            "--modelpath",
            str(models["colour"]),
            "--mode",
            "accuracy",
            "--dataset",
            str(dataset),
            "--preprocessing",
            profile,
            "--preprocessed-dir",
            str(prep),
            "--output-dir",
            str(tmp_path / profile),
        )
        assert result is not None
        assert result["backend"]["preprocessing"] == profile
        assert result["sources"]["preprocessing"] == "flag --preprocessing"
    mlperf = np.load(next(prep.rglob("imagenet-mlperf-NCHW-224-*/*.npy")))
    torchvision = np.load(next(prep.rglob("imagenet-torchvision-NCHW-224-*/*.npy")))
    assert mlperf.shape == torchvision.shape == (3, 224, 224)
    assert mlperf.max() > 50  # pixel values minus the channel means
    assert torchvision.max() < 3  # scaled, then normalised


def test_torchvision_preprocessing_matches_its_formula(tmp_path: Path) -> None:
    from PIL import Image

    from mlbox_bench.preprocess import preprocess_imagenet, torchvision_size

    assert torchvision_size(100, 80, 224) == (320, 256)  # the short side becomes 256
    assert torchvision_size(80, 100, 224) == (256, 320)
    Image.new("RGB", (100, 80), (230, 20, 30)).save(tmp_path / "solid.png")
    sample = preprocess_imagenet(tmp_path / "solid.png", 224, "NCHW", "torchvision")
    expected = (np.array([230, 20, 30]) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert sample.shape == (3, 224, 224)
    assert np.allclose(sample.reshape(3, -1).mean(axis=1), expected, atol=1e-5)
    assert np.allclose(sample.reshape(3, -1).std(axis=1), 0, atol=1e-5)


def test_threads_take_effect(models: dict[str, Path], tmp_path: Path) -> None:
    rc, result = bench(
        "--modelpath", str(models["torchscript"]), "--torch-threads", "1", *SHORT, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["backend"]["session"]["intra_op_threads"] == 1


def test_processpool_workers_open_their_own_torch_sessions(models: dict[str, Path], tmp_path: Path) -> None:
    rc, result = bench(
        "--modelpath",
        str(models["torchscript"]),
        "--runner",
        "processpool",
        "--concurrency",
        "2",
        "--max-batchsize",
        "1",
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert rc == 0
    assert result is not None
    observed = result["harness"]["observed"]
    assert (observed["runner"], observed["workers_used"]) == ("processpool", 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--execmode", "parallel"], "execmode is a onnxruntime option; this run uses pytorch"),
        (["--half", "--channels-last"], "--half, --channels-last: for CUDA only (--device cuda)"),
        (["--ep", "DnnlExecutionProvider"], "PyTorch runs on CPUExecutionProvider or CUDAExecutionProvider"),
        (["--backend", "onnxruntime"], "backend onnxruntime cannot load torchscript models (pytorch does)"),
    ],
)
def test_options_of_another_backend_or_device_are_refused(
    args: list[str], message: str, models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = bench("--modelpath", str(models["torchscript"]), *args, *SHORT, "--output-dir", str(tmp_path))
    assert (rc, result) == (2, None)  # a usage error: nothing ran
    assert message in capsys.readouterr().err


@no_gpu
@pytest.mark.parametrize("how", [["--device", "cuda"], ["--ep", "CUDAExecutionProvider"]], ids=["device", "seed-ep"])
def test_cuda_without_a_gpu_fails_loudly(
    how: list[str], models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = bench("--modelpath", str(models["torchscript"]), *how, *SHORT, "--output-dir", str(tmp_path))
    assert (rc, result) == (3, None)
    assert "--device cuda was requested but torch.cuda.is_available() is false on this host" in capsys.readouterr().err
