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
    # resnet50's 12 variants and retinanet's 1, on cpu and cuda; the int8 ones on cpu only,
    # the fp16 ones (made by mlbox) on cuda only
    assert len(rows) == (12 + 1) * 2 - 2 - 2
    by_key = {(r["model"], r["variant"], r["device"]): r for r in rows}
    default = by_key[("resnet50", "onnx-opset11-fp32", "cpu")]
    assert default["tag"] == "mlbox:resnet50-cpu"
    assert default["buildable"] is True
    assert default["built"] is None
    assert default["pushed"] == ["r.example/ml/resnet50@sha256:" + "a" * 64]
    assert by_key[("resnet50", "synthetic", "cpu")]["weights"] == "synthetic"
    tflite = by_key[("resnet50", "tflite-argmax", "cpu")]
    assert (tflite["buildable"], tflite["missing"]) == (False, "a TFLite backend in mlbox-bench")


def test_list_table_filters(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_engine(monkeypatch, FakeEngine())
    assert main(["list", "--model", "retinanet", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:5] == ["MODEL", "VARIANT", "DEVICE", "BACKEND", "TAG"]
    assert len(lines) == 2
    assert lines[1].split()[:7] == ["retinanet", "onnx-fp32", "cpu", "onnxruntime", "mlbox:retinanet-cpu", "no", "no"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["render"], 10, "pick an image with --model"),
        (["render", "--all", "--backend", "tflite", "--out", "x"], 10, "no buildable image matches these filters"),
        (["render", "-m", "resnet50", "--variant", "pytorch-int8", "-d", "cuda"], 10, "exists for cpu only, not cuda"),
        (["render", "--all", "--device", "gpu", "--out", "x"], 10, "unknown device 'gpu'"),
        (["build", "--model", "resnet50", "--variant", "tensorflow-fp32"], 10, "needs a TensorFlow backend"),
        (["build", "--model", "resnet50", "--mirror", "ftp://x"], 10, "--mirror: 'ftp://x' is not an http"),
    ],
)
def test_selection_errors(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    assert message in capsys.readouterr().err
