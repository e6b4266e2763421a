"""The TensorFlow and TFLite synthetic twins mlbox makes on the host: a frozen ResNet-50
v1.5 graph with the MLPerf tensor names and seeded random weights, and TFLite fp32 (with
and without ArgMax) and full-int8 files converted from it, each labelled synthetic in the
file itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")

SIZE = 64  # small images: the same weights (25 M), faster int8 calibration


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mlbox.synthetic_tf import GENERATORS, tf_model_bytes

    d = tmp_path_factory.mktemp("tf-twins")
    out = {}
    for generator in GENERATORS:
        path = d / (generator + (".pb" if generator == "resnet50-tf" else ".tflite"))
        path.write_bytes(tf_model_bytes(generator, 7, image_size=SIZE))
        out[generator] = path
    return out


def graph_def(path: Path) -> object:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(path.read_bytes())
    return graph


def test_the_graph_is_resnet50_v15_with_the_mlperf_names(twins: dict[str, Path]) -> None:
    graph = graph_def(twins["resnet50-tf"])
    nodes = {n.name: n for n in graph.node}  # type: ignore[attr-defined]
    assert nodes["input_tensor"].op == "Placeholder"
    assert [d.size for d in nodes["input_tensor"].attr["shape"].shape.dim] == [-1, SIZE, SIZE, 3]  # NHWC
    assert nodes["ArgMax"].op == "ArgMax"
    assert nodes["softmax_tensor"].op == "Softmax"
    convs = [n for n in nodes.values() if n.op == "Conv2D"]
    assert len(convs) == 53  # the stem, 16 bottlenecks of 3, 4 projections

    def kernel(conv: object) -> int:
        weights = nodes[conv.input[1]]  # type: ignore[attr-defined]
        return int(weights.attr["value"].tensor.tensor_shape.dim[0].size)

    strided = sorted(kernel(c) for c in convs if list(c.attr["strides"].list.i) == [1, 2, 2, 1])
    # v1.5: stages 2-4 stride on the 3x3 convolution (v1 strides on the first 1x1); the
    # 1x1s are the projections, the 7x7 the stem.
    assert strided == [1, 1, 1, 3, 3, 3, 7]
    weights = sum(
        int(np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]))
        for n in nodes.values()
        if n.op == "Const" and n.attr["value"].tensor.dtype == tf.float32.as_datatype_enum
    )
    # ResNet-50's convolutions (23,454,912) and their folded biases (26,560), fc 2048 x 1001 + 1001
    assert weights == 23_454_912 + 26_560 + 2048 * 1001 + 1001


def test_the_graph_says_it_is_synthetic_and_is_seeded(twins: dict[str, Path]) -> None:
    from mlbox.synthetic_tf import tf_model_bytes
    from mlbox_bench.backends.tensorflow import file_metadata

    facts = file_metadata(graph_def(twins["resnet50-tf"]))
    assert facts == {
        "weights": "synthetic",
        "generator": "resnet50-tf",
        "seed": 7,
        "classes": 1001,
        "input_shape": [SIZE, SIZE, 3],
        "network": "ResNet-50 v1.5",
    }
    assert tf_model_bytes("resnet50-tf", 7, image_size=SIZE) == twins["resnet50-tf"].read_bytes()  # deterministic
    assert tf_model_bytes("resnet50-tf", 8, image_size=SIZE) != twins["resnet50-tf"].read_bytes()


def details(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter.get_input_details(), interpreter.get_output_details(), interpreter.get_tensor_details()


def test_the_tflite_twins_are_converted_from_the_graph(twins: dict[str, Path]) -> None:
    from mlbox_bench.backends.tflite import file_metadata

    fp32_in, fp32_out, _ = details(twins["resnet50-tflite"])
    assert [(d["name"], list(d["shape"]), d["dtype"]) for d in fp32_in] == [
        ("input_tensor", [1, SIZE, SIZE, 3], np.float32)
    ]
    assert sorted(d["name"] for d in fp32_out) == ["ArgMax", "softmax_tensor"]
    _, noargmax_out, _ = details(twins["resnet50-tflite-noargmax"])
    assert [(d["name"], list(d["shape"])) for d in noargmax_out] == [("softmax_tensor", [1, 1001])]
    int8_in, int8_out, tensors = details(twins["resnet50-tflite-int8"])
    assert (int8_in[0]["dtype"], int8_out[0]["dtype"]) == (np.uint8, np.uint8)  # full integer, uint8 ends
    scale, zero = int8_in[0]["quantization"]
    assert 1.0 < scale < 1.2  # calibrated on pixels minus the channel means: about [-124, 152] over 256 steps
    assert 100 < zero < 130
    assert sum(1 for t in tensors if t["dtype"] == np.int8) > 50  # int8 kernels
    assert twins["resnet50-tflite-int8"].stat().st_size < twins["resnet50-tflite"].stat().st_size / 3
    for generator in ("resnet50-tflite", "resnet50-tflite-noargmax", "resnet50-tflite-int8"):
        facts = file_metadata(str(twins[generator]))
        assert (facts["weights"], facts["generator"], facts["seed"]) == ("synthetic", generator, 7)


@pytest.mark.parametrize("generator", ["resnet50-tf", "resnet50-tflite", "resnet50-tflite-int8"])
def test_the_twins_run_in_the_harness_and_say_so(generator: str, twins: dict[str, Path], tmp_path: Path) -> None:
    from mlbox_bench.cli import main

    out = tmp_path / "out"
    rc = main(
        [
            "--modelpath",
            str(twins[generator]),
            "--scenario",
            "Offline",
            "--duration",
            "0.3",
            "--samples",
            "8",
            "--allow-invalid",
            "--weights",
            "synthetic",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["backend"]["session"]["file"]["generator"] == generator
    assert result["model"]["weights"] == "synthetic"
    assert result["model"]["label_offset"] == -1
    assert result["harness"]["observed"]["samples_run"] > 0


def test_without_tensorflow_the_twins_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlbox.errors import FetchError
    from mlbox.synthetic_tf import tf_model_bytes

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now fails
    with pytest.raises(FetchError, match="made with TensorFlow on this host") as err:
        tf_model_bytes("resnet50-tflite", 0)
    assert "mlbox-mlperf[tensorflow]" in (err.value.hint or "")


def test_the_catalog_generates_the_tf_twins_through_the_cache(tmp_path: Path) -> None:
    """synthetic_model dispatches the TensorFlow generators and caches the file."""
    from mlbox.catalog import Synthetic
    from mlbox.synthetic import synthetic_model

    spec = Synthetic(generator="resnet50-tflite-noargmax", seed=3)
    path = synthetic_model(spec, "twin.tflite", tmp_path)
    assert path.is_relative_to(tmp_path / "models" / "synthetic")
    _, outputs, _ = details(path)
    assert [d["name"] for d in outputs] == ["softmax_tensor"]
    mtime = path.stat().st_mtime_ns
    assert synthetic_model(spec, "twin.tflite", tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # made once
