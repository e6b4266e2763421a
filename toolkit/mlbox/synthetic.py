"""Synthetic models: real graphs with deterministic random weights.

For machines that cannot download the published weights. The ONNX graphs have the
MLPerf ResNet50 I/O contract (input ``input_tensor:0`` float32 NCHW 224x224, outputs
``ArgMax:0`` int64 and ``softmax_tensor:0`` (N, 1001)) so the harness, LoadGen and
onnxruntime do exactly the work they do for the real model. The PyTorch twins are
TorchScript files of torchvision's ResNet-50 v1.5 (1000 classes), fp32 traced, and int8
by eager post-training quantization (fbgemm) calibrated on generated inputs; they are
made with the harness's own ResNet50 (mlbox_bench.resnet_torch) and need PyTorch on the
host. The TensorFlow and TFLite twins (a frozen ResNet-50 v1.5 graph with the MLPerf tensor
names, and TFLite fp32 and int8 files converted from it) are synthetic_tf's and need
TensorFlow on the host. RetinaNet's twin (MLCommons' ONNX detection graph, post-processing
included) is synthetic_retinanet's. The weights are random: the file's metadata, the image
labels and result.json all say ``synthetic``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlbox.catalog import Synthetic
from mlbox.errors import FetchError
from mlbox.files import atomic_file
from mlbox.onnx_graph import GraphBuilder

# Bump when the generated graph changes: it is part of the cache key.
GENERATOR_VERSION = 1
NUM_CLASSES = 1001
INPUT_NAME = "input_tensor:0"
OUTPUT_ARGMAX = "ArgMax:0"
OUTPUT_SOFTMAX = "softmax_tensor:0"


def synthetic_model(spec: Synthetic, file_name: str, cache: Path) -> Path:
    """Generate (once) and return the cached synthetic model file."""
    from mlbox import synthetic_retinanet  # imported when used: ResNet-50's callers never need it

    # RetinaNet's graph has its own version: a change to it leaves the ResNet-50 files cached.
    version = synthetic_retinanet.GENERATOR_VERSION if spec.generator == "retinanet" else GENERATOR_VERSION
    key = f"{spec.generator}-seed{spec.seed}-v{version}"
    target = cache / "models" / "synthetic" / key / file_name
    if target.exists():
        return target
    if spec.generator == "retinanet":
        data = synthetic_retinanet.build(spec.seed).SerializeToString()
    elif spec.generator.endswith(("-torch", "-torch-int8")):
        data = torch_model_bytes(spec.generator, spec.seed)
    elif spec.generator.startswith(("resnet50-tf", "resnet50-tflite")):
        from mlbox.synthetic_tf import tf_model_bytes

        data = tf_model_bytes(spec.generator, spec.seed)
    else:
        data = build(spec.generator, spec.seed).SerializeToString()
    with atomic_file(target) as (out, _):
        out.write(data)
    return target


TORCH_CALIBRATION_BATCHES = 8  # of 4 generated images each: ranges for int8 quantization


def torch_model_bytes(generator: str, seed: int, *, image_size: int = 224) -> bytes:
    """A TorchScript file of ResNet-50 v1.5 with seeded random weights (fp32), or that
    network quantized to int8 (fbgemm) after calibration on seeded random inputs."""
    import io
    import json
    import warnings

    try:
        import torch
    except ImportError:
        msg = f"the synthetic {generator} model is made with PyTorch on this host, and PyTorch is not installed"
        hint = "pip install 'mlbox-mlperf[pytorch]' --extra-index-url https://download.pytorch.org/whl/cpu"
        raise FetchError(msg, hint=hint) from None
    from mlbox_bench.resnet_torch import ResNet50

    quantize = generator.endswith("-int8")
    torch.manual_seed(seed)
    model = ResNet50(quantizable=quantize).eval()
    inputs = torch.Generator().manual_seed(seed)
    example = torch.randn(1, 3, image_size, image_size, generator=inputs)
    # PyTorch 2.13 marks eager quantization and TorchScript as deprecated (both still work,
    # and the published int8 model is TorchScript), and the tracer warns about Python
    # numbers in the quantized graph; none of it says anything about this file.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        if quantize:
            model.fuse()
            model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
            torch.ao.quantization.prepare(model, inplace=True)
            for _ in range(TORCH_CALIBRATION_BATCHES):
                model(torch.randn(4, 3, image_size, image_size, generator=inputs))
            torch.ao.quantization.convert(model, inplace=True)
        traced = torch.jit.trace(model, example)
        out = io.BytesIO()
        facts = {
            "weights": "synthetic",
            "generator": generator,
            "seed": seed,
            "classes": 1000,
            "input_shape": [3, image_size, image_size],
        }
        torch.jit.save(traced, out, _extra_files={"mlbox.json": json.dumps(facts)})
    return out.getvalue()


def build(generator: str, seed: int, *, image_size: int = 224) -> Any:
    """Return an ``onnx.ModelProto``."""
    builder = _ResNetBuilder(seed)
    if generator == "resnet50":
        features = builder.resnet50_trunk(INPUT_NAME)
        channels = 2048
    elif generator == "tiny":
        features = builder.tiny_trunk(INPUT_NAME)
        channels = 16
    else:  # the catalog schema only admits the names above
        msg = f"unknown synthetic generator {generator!r}"
        raise ValueError(msg)
    return builder.finish(features, channels, generator, seed, image_size)


class _ResNetBuilder(GraphBuilder):
    """The graph builder with MLPerf ResNet-50's head and I/O contract."""

    def finish(self, features: str, channels: int, generator: str, seed: int, image_size: int) -> Any:
        import onnx
        from onnx import TensorProto, helper

        pooled = self._name("gap")
        flat = self._name("flatten")
        logits = self._name("logits")
        self.nodes += [
            helper.make_node("GlobalAveragePool", [features], [pooled]),
            helper.make_node("Flatten", [pooled], [flat], axis=1),
        ]
        w = self.rng.standard_normal((channels, NUM_CLASSES), dtype=np.float32)
        w *= np.float32(np.sqrt(1.0 / channels))
        b = np.zeros(NUM_CLASSES, dtype=np.float32)
        self.nodes += [
            helper.make_node("Gemm", [flat, self._const("fc_w", w), self._const("fc_b", b)], [logits]),
            helper.make_node("Softmax", [logits], [OUTPUT_SOFTMAX], axis=1),
            helper.make_node("ArgMax", [logits], [OUTPUT_ARGMAX], axis=1, keepdims=0),
        ]
        graph = helper.make_graph(
            self.nodes,
            f"mlbox_synthetic_{generator}",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, image_size, image_size])],
            [
                helper.make_tensor_value_info(OUTPUT_ARGMAX, TensorProto.INT64, ["N"]),
                helper.make_tensor_value_info(OUTPUT_SOFTMAX, TensorProto.FLOAT, ["N", NUM_CLASSES]),
            ],
            self.inits,
        )
        model = helper.make_model(
            graph,
            producer_name="mlbox",
            doc_string=f"SYNTHETIC WEIGHTS: {generator} graph with random weights (seed {seed}); "
            "not a trained model, its accuracy is meaningless.",
            opset_imports=[helper.make_opsetid("", 13)],
        )
        model.ir_version = 8  # readable by every onnxruntime mlbox supports
        for key, value in {"mlbox.weights": "synthetic", "mlbox.generator": generator, "mlbox.seed": str(seed)}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        return model
