"""A tiny image classifier and a generated ImageNet-layout dataset whose top-1 accuracy
is known before anything runs.

The model averages each RGB channel of the preprocessed input and puts that mean in
logits 1, 2, 3 (0 is MLPerf's background class; the other 997 stay 0), so it predicts
the dominant colour: ArgMax 1 = red, 2 = green, 3 = blue, which are ImageNet labels
0, 1, 2 after MLPerf's offset of -1. The dataset's images are noisy solid colours of
different sizes; val_map.txt gives some of them a wrong label on purpose. The model
only gets a colour right if preprocessing keeps RGB order and subtracts the means.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

COLOURS = {0: (230, 20, 30), 1: (25, 220, 35), 2: (30, 40, 225)}  # label -> RGB
SIZES = [(300, 260), (260, 300), (500, 375), (224, 224), (640, 480), (257, 511)]


def colour_classifier(path: Path, classes: int = 1001, layout: str = "NCHW", conv_width: int = 0) -> Path:
    """With 1001 classes (MLPerf's ResNet50 files) the colours are logits 1-3 and the
    harness subtracts 1; with 1000 classes they are logits 0-2 and it subtracts nothing.
    An NHWC model transposes its input first. With ``conv_width``, two convolutions whose
    composition keeps each channel's mean come first: the same answers with real compute
    per sample (a submission tree's runs then take the time a real model's do)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    first = classes - 1000  # 1 with a background class, else 0
    w = np.zeros((3, classes), dtype=np.float32)
    for channel in range(3):
        w[channel, channel + first] = 1.0
    source = "input_tensor:0"
    nodes = []
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [source], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    shape: list[str | int] = ["N", 3, 224, 224] if layout == "NCHW" else ["N", 224, 224, 3]
    weights = [numpy_helper.from_array(w, "w")]
    if conv_width:
        w1 = np.zeros((conv_width, 3, 3, 3), np.float32)
        w2 = np.zeros((3, conv_width, 1, 1), np.float32)
        for j in range(conv_width):
            w1[j, j % 3, 1, 1] = 1.0
            w2[j % 3, j, 0, 0] = 3.0 / conv_width
        nodes += [
            helper.make_node("Conv", [source, "w1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["c1", "w2"], ["c2"]),
        ]
        weights += [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
        source = "c2"
    nodes += [
        helper.make_node("GlobalAveragePool", [source], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["ArgMax:0"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_classifier",
        [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, ["N", classes]),
        ],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def colour_dataset(root: Path, count: int = 12, wrong: int = 3, seed: int = 0) -> tuple[Path, float]:
    """Write ``count`` JPEGs and val_map.txt (the last ``wrong`` labels are wrong on
    purpose); return (root, expected top-1 accuracy)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        label = i % 3
        width, height = SIZES[i % len(SIZES)]
        pixels = np.clip(np.array(COLOURS[label]) + rng.integers(-20, 21, (height, width, 3)), 0, 255)
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / name, quality=95)
        written = (label + 1) % 3 if i >= count - wrong else label
        lines.append(f"{name} {written}\n")
    (root / "val_map.txt").write_text("".join(lines))
    return root, (count - wrong) / count


def colour_classifier_torch(path: Path, fmt: str = "torchscript", classes: int = 1000) -> Path:
    """The colour classifier as a PyTorch file: TorchScript (with the input shape in its
    mlbox.json extra file, as mlbox's synthetic models carry it) or a torch.export program."""
    import json
    import warnings

    import torch

    class Colour(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = torch.zeros(3, classes)
            first = classes - 1000
            for channel in range(3):
                w[channel, channel + first] = 1.0
            self.w = torch.nn.Parameter(w, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) @ self.w

    model = Colour().eval()
    example = torch.zeros(2, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in PyTorch 2.13 (still supported)
        if fmt == "torchscript":
            extra = {"mlbox.json": json.dumps({"input_shape": [3, 224, 224]})}
            torch.jit.save(torch.jit.trace(model, example), str(path), _extra_files=extra)
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(path))
    return path


def tiny_torch_model(path: Path, fmt: str = "torchscript", *, quantized: bool = False, size: int = 32) -> Path:
    """A small convolutional net (1000 classes, 3 x size x size input) with seeded weights,
    as TorchScript (fp32 or int8 by eager post-training quantization), a torch.export
    program, or a state dict of the seed app's route (its code: ``tiny_torch_code``)."""
    import json
    import warnings

    import torch

    torch.manual_seed(0)
    model = _tiny_net(quantized)
    example = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript and eager quantization are deprecated in 2.13 (still supported)
        if quantized:
            model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
            torch.ao.quantization.prepare(model, inplace=True)
            model(example)
            torch.ao.quantization.convert(model, inplace=True)
        if fmt == "torchscript":
            extra = {"mlbox.json": json.dumps({"input_shape": [3, size, size]})}
            torch.jit.save(torch.jit.trace(model, example), str(path), _extra_files=extra)
        elif fmt == "torch-export":
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(path))
        else:
            torch.save(model.state_dict(), path)
    return path


def _tiny_net(quantized: bool) -> torch.nn.Module:
    import torch as t

    class Tiny(t.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.dequant = t.ao.quantization.QuantStub(), t.ao.quantization.DeQuantStub()
            self.conv = t.nn.Conv2d(3, 16, 3, padding=1)
            self.relu = t.nn.ReLU()
            self.pool = t.nn.AdaptiveAvgPool2d(1)
            self.fc = t.nn.Linear(16, 1000)
            self.quantized = quantized

        def forward(self, x: t.Tensor) -> t.Tensor:
            if self.quantized:
                x = self.quant(x)
            x = self.fc(t.flatten(self.pool(self.relu(self.conv(x))), 1))
            return self.dequant(x) if self.quantized else x

    return Tiny().eval()


TINY_TORCH_CODE = '''
"""The seed app's model connector: model_init(checkpoint, cfg) -> {'return': 0, 'model': ...}."""
import torch


class Tiny(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(width, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def model_init(checkpoint, cfg):
    model = Tiny(cfg.get("width", 16))
    model.load_state_dict(checkpoint)
    return {"return": 0, "model": model}
'''


def tiny_torch_code(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cmc.py").write_text(TINY_TORCH_CODE)
    (directory / "cfg.json").write_text('{"width": 16}')
    return directory


def colour_classifier_tf(path: Path, fmt: str = "frozen-graph", classes: int = 1001) -> Path:
    """The colour classifier for TensorFlow and LiteRT, NHWC (MLCommons' TF and TFLite
    layout): a frozen graph with the MLPerf tensor names (``input_tensor:0``,
    ``softmax_tensor:0``, ``ArgMax:0``); a SavedModel made the TF2 way (a tf.Module, its
    weights a variable, signature outputs ``probabilities`` and ``classes``); or TFLite
    converted from the frozen graph: ``tflite`` (with ArgMax), ``tflite-noargmax``, and
    ``tflite-int8`` (fully quantized, calibrated on the dataset's colours)."""
    from mlbox.synthetic_tf import ARGMAX, CHANNEL_MEANS, SOFTMAX, import_tensorflow, to_tflite

    tf = import_tensorflow("test")
    first = classes - 1000  # 1 with a background class, else 0
    w = np.zeros((3, classes), dtype=np.float32)
    for channel in range(3):
        w[channel, channel + first] = 1.0
    if fmt == "saved-model":

        class Colour(tf.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.w = tf.Variable(w)

            # tf is untyped (import_tensorflow gives Any), so its decorator is too
            @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="images")])  # type: ignore[untyped-decorator]
            def __call__(self, x: object) -> dict[str, object]:
                logits = tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.w)
                return {"probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, axis=1)}

        module = Colour()
        tf.saved_model.save(module, str(path), signatures=module.__call__)
        return path
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name="input_tensor")
        logits = tf.matmul(tf.reduce_mean(x, axis=[1, 2]), tf.constant(w))
        tf.nn.softmax(logits, name=SOFTMAX)
        tf.argmax(logits, axis=1, name=ARGMAX)
    frozen = graph.as_graph_def().SerializeToString()
    if fmt == "frozen-graph":
        path.write_bytes(frozen)
        return path
    outputs = [ARGMAX, SOFTMAX] if fmt == "tflite" else [SOFTMAX]
    calibration = None
    if fmt == "tflite-int8":  # each colour as preprocessing leaves it, and noisy versions of it
        rng = np.random.default_rng(0)
        calibration = [
            (np.clip(np.array(rgb) + rng.integers(-20, 21, (1, 224, 224, 3)), 0, 255) - CHANNEL_MEANS).astype(
                np.float32
            )
            for rgb in list(COLOURS.values()) * 3
        ]
    path.write_bytes(to_tflite(tf, frozen, outputs, (1, 224, 224, 3), calibration))
    return path


def tiny_tf_model(path: Path, fmt: str = "frozen-graph", *, size: int = 32) -> Path:
    """MLPerf's tensor names on a small network (two strided convolutions, 1001 classes,
    N x size x size x 3) with seeded weights: a frozen graph, or TFLite converted from it
    (``tflite`` with ArgMax, ``tflite-noargmax``, ``tflite-int8``)."""
    from mlbox.synthetic_tf import ARGMAX, SOFTMAX, calibration_images, graph_def, import_tensorflow, to_tflite

    tf = import_tensorflow("test")
    frozen = graph_def(tf, "tiny", 0, image_size=size, facts={"weights": "synthetic", "generator": "tiny"})
    if fmt == "frozen-graph":
        path.write_bytes(frozen.SerializeToString())
        return path
    outputs = [ARGMAX, SOFTMAX] if fmt == "tflite" else [SOFTMAX]
    calibration = calibration_images(0, size, 4) if fmt == "tflite-int8" else None
    path.write_bytes(to_tflite(tf, frozen.SerializeToString(), outputs, (1, size, size, 3), calibration))
    return path
