"""`mlbox list`, and selection errors of render/build (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlbox.cli import main
from tests.support.fake_engine import FakeEngine, use_fake_engine


def test_list_json_has_every_row_and_says_built_is_unknown_without_an_engine(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    (tmp_path / "published.jsonl").write_text(
        json.dumps({"image": "mlbox:resnet50-cpu", "references": ["r.example/ml/resnet50@sha256:" + "a" * 64]}) + "\n"
    )
    from mlbox.errors import EngineError

    use_fake_engine(monkeypatch, FakeEngine(fail={"image_exists": EngineError("cannot reach the Docker engine")}))
    assert main(["list", "--json"]) == 0
    assert "built? is unknown" in caplog.text
    rows = json.loads(capsys.readouterr().out)
    # resnet50's 16 variants and retinanet's 2, on cpu and cuda; but pytorch's int8 ones and
    # the TFLite ones (LiteRT runs on the CPU) on cpu only, the fp16 ones (made by mlbox) on
    # cuda only
    assert len(rows) == (16 + 2) * 2 - 7 - 2
    by_key = {(r["model"], r["variant"], r["device"]): r for r in rows}
    default = by_key[("resnet50", "onnx-opset11-fp32", "cpu")]
    assert default["tag"] == "mlbox:resnet50-cpu"
    assert default["buildable"] is True
    assert default["built"] is None
    assert default["pushed"] == ["r.example/ml/resnet50@sha256:" + "a" * 64]
    assert by_key[("resnet50", "synthetic", "cpu")]["weights"] == "synthetic"
    assert (default["task"], by_key[("retinanet", "synthetic", "cpu")]["task"]) == ("classification", "detection")
    resnet50 = [r for r in rows if r["model"] == "resnet50"]
    assert [(r["variant"], r["device"]) for r in resnet50 if not r["buildable"]] == []  # every variant, every device
    assert by_key[("resnet50", "tflite-fp32", "cpu")]["tag"] == "mlbox:resnet50-cpu-tflite-fp32"
    assert by_key[("resnet50", "tensorflow-fp32", "cuda")]["tag"] == "mlbox:resnet50-cuda-tensorflow-fp32"


def test_list_says_what_an_unbuildable_row_needs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import yaml

    from tests.conftest import REPO

    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["backends"]["tflite"]["missing"] = "a TFLite backend in mlbox-bench"
    catalog = tmp_path / "images.yaml"
    catalog.write_text(yaml.safe_dump(data))
    use_fake_engine(monkeypatch, FakeEngine())
    assert main(["--catalog", str(catalog), "list", "--json", "--backend", "tflite"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["buildable"], r["missing"]) for r in rows} == {(False, "a TFLite backend in mlbox-bench")}
    assert main(["--catalog", str(catalog), "build", "--model", "resnet50", "--variant", "tflite-fp32"]) == 10
    assert "needs a TFLite backend in mlbox-bench" in capsys.readouterr().err
    out = str(tmp_path / "rendered")
    assert main(["--catalog", str(catalog), "render", "--all", "--backend", "tflite", "--out", out]) == 10
    assert "no buildable image matches these filters" in capsys.readouterr().err


def test_list_table_filters(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    assert main(["list", "--model", "retinanet", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:5] == ["MODEL", "VARIANT", "DEVICE", "BACKEND", "TAG"]
    assert len(lines) == 3
    assert lines[1].split()[:8] == [
        "retinanet",
        "onnx-fp32",
        "cpu",
        "onnxruntime",
        "mlbox:retinanet-cpu",
        "no",
        "no",
        "detection",
    ]
    assert lines[2].split()[:2] == ["retinanet", "synthetic"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["render"], 10, "pick an image with --model"),
        (["render", "--all", "-m", "retinanet", "--backend", "tflite", "--out", "x"], 10, "no buildable image matches"),
        (["render", "-m", "resnet50", "--variant", "pytorch-int8", "-d", "cuda"], 10, "exists for cpu only, not cuda"),
        (["render", "--all", "--device", "gpu", "--out", "x"], 10, "unknown device 'gpu'"),
        (["render", "-m", "resnet50", "--variant", "tflite-fp32", "-d", "cuda"], 10, "exists for cpu only, not cuda"),
        (
            ["build", "-m", "resnet50", "--variant", "tensorflow-fp32", "-d", "cuda", "--cuda-from", "nvidia"],
            10,
            "tensorflow cuda images come one way only, --cuda-from pip",
        ),
        (["build", "--model", "resnet50", "--mirror", "ftp://x"], 10, "--mirror: 'ftp://x' is not an http"),
    ],
)
def test_selection_errors(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_the_table_aligns_whole_values_and_shows_no_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    from mlbox.ui import table

    long = "x" * 300  # wider than any terminal: printed whole, never cut
    table(["A", "BB"], [["1", long], ["22\x1b[31m", "y"]])
    assert capsys.readouterr().out.splitlines() == ["A        BB", f"1        {long}", "22?[31m  y"]
