"""The PyTorch synthetic twins mlbox makes on the host: torchvision's ResNet-50 v1.5 with
seeded random weights, fp32 TorchScript and int8 (post-training quantization), labelled
synthetic in the file itself."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mlbox.synthetic import torch_model_bytes

    d = tmp_path_factory.mktemp("twins")
    out = {}
    for generator in ("resnet50-torch", "resnet50-torch-int8"):
        path = d / f"{generator}.pt"
        path.write_bytes(torch_model_bytes(generator, 7, image_size=64))  # small calibration images: fast
        out[generator] = path
    return out


def load(path: Path) -> tuple[object, dict[str, object]]:
    extra = {"mlbox.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in PyTorch 2.13 (still supported)
        module = torch.jit.load(str(path), _extra_files=extra)
    return module, json.loads(extra["mlbox.json"])


def test_fp32_twin_is_torchvisions_resnet50_with_the_seeded_weights(twins: dict[str, Path]) -> None:
    from mlbox_bench.resnet_torch import ResNet50

    module, facts = load(twins["resnet50-torch"])
    assert facts == {
        "weights": "synthetic",
        "generator": "resnet50-torch",
        "seed": 7,
        "classes": 1000,
        "input_shape": [3, 64, 64],
    }
    state = module.state_dict()  # type: ignore[attr-defined]
    torch.manual_seed(7)
    reference = ResNet50().state_dict()
    assert list(state) == list(reference)  # torchvision's keys, in its order
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 25_557_032
    assert torch.equal(state["conv1.weight"], reference["conv1.weight"])  # seeded: the same weights every time
    with torch.inference_mode():
        assert tuple(module(torch.zeros(2, 3, 224, 224)).shape) == (2, 1000)  # type: ignore[operator]


def test_int8_twin_is_quantized_and_runs_in_the_harness(twins: dict[str, Path], tmp_path: Path) -> None:
    from mlbox_bench.cli import main

    module, facts = load(twins["resnet50-torch-int8"])
    assert facts["weights"] == "synthetic"
    assert "quantized" in str(module.graph)  # type: ignore[attr-defined]
    assert twins["resnet50-torch-int8"].stat().st_size < twins["resnet50-torch"].stat().st_size / 3
    out = tmp_path / "out"
    rc = main(
        [
            "--modelpath",
            str(twins["resnet50-torch-int8"]),
            "--input-shape",
            "3,64,64",
            "--scenario",
            "Offline",
            "--duration",
            "0.3",
            "--samples",
            "16",
            "--allow-invalid",
            "--weights",
            "synthetic",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["backend"]["session"]["file"]["generator"] == "resnet50-torch-int8"
    assert result["model"]["weights"] == "synthetic"
    assert result["harness"]["observed"]["samples_run"] > 0


def test_without_pytorch_the_twins_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlbox.errors import FetchError
    from mlbox.synthetic import torch_model_bytes

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(FetchError, match="made with PyTorch on this host") as err:
        torch_model_bytes("resnet50-torch", 0)
    assert "mlbox-mlperf[pytorch]" in (err.value.hint or "")
