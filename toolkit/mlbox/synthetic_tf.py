"""The TensorFlow and TFLite synthetic twins, made on the host with TensorFlow.

``resnet50-tf``: ResNet-50 v1.5 (the stride on the 3x3 convolution, as MLCommons' graph;
strided convolutions padded explicitly, as TensorFlow's official ResNet) in NHWC, with
seeded He-initialised weights and batch norm folded into the biases, frozen into a
GraphDef with the MLPerf tensor names: input ``input_tensor:0`` (float32, N x 224 x 224 x
3), outputs ``softmax_tensor:0`` (N x 1001) and ``ArgMax:0`` (int64). A string constant
``mlbox.json`` in the graph says it is synthetic.

The TFLite twins are converted from that frozen graph, as MLCommons' files were, with a
batch of 1 (the harness resizes): ``resnet50-tflite`` keeps the ArgMax output,
``resnet50-tflite-noargmax`` ends at the softmax, ``resnet50-tflite-int8`` is fully
quantized (uint8 input and output, int8 kernels) after calibration on generated images
shaped like preprocessed ones (pixels minus the channel means). Their metadata entry
``mlbox.json`` says they are synthetic.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlbox.errors import FetchError

INPUT = "input_tensor"
SOFTMAX = "softmax_tensor"
ARGMAX = "ArgMax"
METADATA = "mlbox.json"  # the graph's string constant, the TFLite file's metadata entry
CLASSES = 1001
CHANNEL_MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)  # MLPerf's, R G B
CALIBRATION_SAMPLES = 16  # generated images the int8 ranges are calibrated on
GENERATORS = ("resnet50-tf", "resnet50-tflite", "resnet50-tflite-noargmax", "resnet50-tflite-int8")
# What TensorFlow's converter writes from C++ about options the TF1 converter passes and
# MLIR ignores, and its quantizer's settings line: nothing a user of mlbox can act on.
CONVERTER_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|\] oneDNN custom operations are on"
    r"|\] Ignored (output_format|drop_control_dependency)\.|^fully_quantize: "
    r"|\] Skipping runtime version metadata in the model"
)


def import_tensorflow(what: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO off; warnings and errors stay
    try:
        from mlbox_bench.backends import native_noise_dropped

        with native_noise_dropped(CONVERTER_NOISE):
            import tensorflow as tf
    except ImportError:
        msg = f"the synthetic {what} model is made with TensorFlow on this host, and TensorFlow is not installed"
        raise FetchError(msg, hint="pip install 'mlbox-mlperf[tensorflow]'") from None
    return tf


def tf_model_bytes(generator: str, seed: int, *, image_size: int = 224) -> bytes:
    """The file of a TensorFlow/TFLite synthetic generator (see the module's docstring)."""
    tf = import_tensorflow(generator)
    facts = {
        "weights": "synthetic",
        "generator": generator,
        "seed": seed,
        "classes": CLASSES,
        "input_shape": [image_size, image_size, 3],
        "network": "ResNet-50 v1.5",
    }
    graph = graph_def(tf, "resnet50", seed, image_size=image_size, facts=facts)
    frozen: bytes = graph.SerializeToString(deterministic=True)  # protobuf maps (node attrs) in a fixed order
    if generator == "resnet50-tf":
        return frozen
    if generator not in GENERATORS:  # the catalog schema only admits the names above
        msg = f"unknown synthetic generator {generator!r}"
        raise ValueError(msg)
    outputs = [SOFTMAX] if generator.endswith(("-noargmax", "-int8")) else [ARGMAX, SOFTMAX]
    calibration = calibration_images(seed, image_size) if generator.endswith("-int8") else None
    converted = to_tflite(tf, frozen, outputs, (1, image_size, image_size, 3), calibration)
    return with_metadata(converted, facts)


def calibration_images(seed: int, image_size: int, count: int = CALIBRATION_SAMPLES) -> list[np.ndarray]:
    """Generated images as MLPerf's preprocessing leaves them: pixels minus the channel means."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (1, image_size, image_size, 3)).astype(np.float32) - CHANNEL_MEANS for _ in range(count)
    ]


def graph_def(
    tf: Any, trunk: str, seed: int, *, image_size: int = 224, classes: int = CLASSES, facts: dict[str, Any]
) -> Any:
    """A frozen GraphDef (weights are constants) with MLPerf's tensor names: the ResNet-50
    v1.5 trunk, or a tiny one (two strided convolutions) for fast tests."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, image_size, image_size, 3], name=INPUT)
        layers = _Layers(tf, rng)
        if trunk == "resnet50":
            features, channels = layers.resnet50(x), 2048
        elif trunk == "tiny":
            features, channels = layers.conv(layers.conv(x, 3, 8, 3, 2), 8, 16, 3, 2), 16
        else:
            msg = f"unknown trunk {trunk!r}"
            raise ValueError(msg)
        pooled = tf.reduce_mean(features, axis=[1, 2])
        w = rng.standard_normal((channels, classes), dtype=np.float32) * np.float32(np.sqrt(1.0 / channels))
        logits = tf.nn.bias_add(tf.matmul(pooled, tf.constant(w)), tf.constant(np.zeros(classes, np.float32)))
        tf.nn.softmax(logits, name=SOFTMAX)
        tf.argmax(logits, axis=1, name=ARGMAX)
        tf.constant(json.dumps(facts), name=METADATA)  # not on any path: the converter drops it
    return graph.as_graph_def()


class _Layers:
    def __init__(self, tf: Any, rng: np.random.Generator) -> None:
        self.tf = tf
        self.rng = rng

    def conv(self, x: Any, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> Any:
        tf = self.tf
        # He initialisation keeps activations finite through 50 layers; batch norm folded (zero bias).
        w = self.rng.standard_normal((k, k, cin, cout), dtype=np.float32) * np.float32(np.sqrt(2.0 / (cin * k * k)))
        if stride > 1:  # TensorFlow's official ResNet: pad explicitly, then a VALID convolution
            pad = k - 1
            x = tf.pad(x, [[0, 0], [pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]])
            y = tf.nn.conv2d(x, tf.constant(w), stride, "VALID")
        else:
            y = tf.nn.conv2d(x, tf.constant(w), 1, "SAME")
        y = tf.nn.bias_add(y, tf.constant(np.zeros(cout, np.float32)))
        return tf.nn.relu(y) if relu else y

    def bottleneck(self, x: Any, cin: int, width: int, stride: int) -> Any:
        cout = width * 4
        shortcut = x if (stride == 1 and cin == cout) else self.conv(x, cin, cout, 1, stride, relu=False)
        y = self.conv(x, cin, width, 1)
        y = self.conv(y, width, width, 3, stride)  # v1.5: the stride sits on the 3x3 convolution
        y = self.conv(y, width, cout, 1, relu=False)
        return self.tf.nn.relu(y + shortcut)

    def resnet50(self, x: Any) -> Any:
        y = self.conv(x, 3, 64, 7, 2)
        y = self.tf.nn.max_pool2d(y, 3, 2, "SAME")
        cin = 64
        for blocks, width, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
            for i in range(blocks):
                y = self.bottleneck(y, cin, width, stride if i == 0 else 1)
                cin = width * 4
        return y


def to_tflite(
    tf: Any,
    frozen: bytes,
    outputs: list[str],
    input_shape: tuple[int, ...],
    calibration: list[np.ndarray] | None = None,
) -> bytes:
    """Convert a frozen graph to TFLite (TensorFlow's TF1 converter, from the graph file);
    with calibration images, fully quantized: int8 kernels, uint8 input and output."""
    from mlbox_bench.backends import native_noise_dropped

    with tempfile.TemporaryDirectory(prefix="mlbox-tflite-") as tmp:
        path = Path(tmp) / "frozen.pb"
        path.write_bytes(frozen)
        converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            str(path), [INPUT], outputs, input_shapes={INPUT: list(input_shape)}
        )
        if calibration is not None:

            def representative() -> Iterator[list[np.ndarray]]:
                for image in calibration:
                    yield [image]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        with native_noise_dropped(CONVERTER_NOISE):
            data: bytes = converter.convert()
    return data


def with_metadata(tflite: bytes, facts: dict[str, Any]) -> bytes:
    """The TFLite file with a metadata entry ``mlbox.json`` holding ``facts`` (the model's
    own metadata list, which LiteRT loads and ignores)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    note = schema.BufferT()
    note.data = np.frombuffer(json.dumps(facts).encode(), dtype=np.uint8)
    model.buffers.append(note)
    entry = schema.MetadataT()
    entry.name = METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
