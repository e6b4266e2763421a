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

import numpy as np

COLOURS = {0: (230, 20, 30), 1: (25, 220, 35), 2: (30, 40, 225)}  # label -> RGB
SIZES = [(300, 260), (260, 300), (500, 375), (224, 224), (640, 480), (257, 511)]


def colour_classifier(path: Path, classes: int = 1001, layout: str = "NCHW") -> Path:
    """With 1001 classes (MLPerf's ResNet50 files) the colours are logits 1-3 and the
    harness subtracts 1; with 1000 classes they are logits 0-2 and it subtracts nothing.
    An NHWC model transposes its input first."""
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
    shape = ["N", 3, 224, 224] if layout == "NCHW" else ["N", 224, 224, 3]
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
        [numpy_helper.from_array(w, "w")],
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
