"""Building ONNX graphs layer by layer with seeded random weights: what the synthetic
ResNet-50 (synthetic.py) and RetinaNet (synthetic_retinanet.py) twins are made of."""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphBuilder:
    """Emits ONNX nodes; batch norm is folded into conv biases, as exported models do."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def _const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        from onnx import helper

        name = self._name("conv")
        # He initialisation keeps activations finite through 50 layers.
        w = self.rng.standard_normal((cout, cin, k, k), dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / (cin * k * k)))
        b = np.zeros(cout, dtype=np.float32)
        out = f"{name}_out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._const(f"{name}_w", w), self._const(f"{name}_b", b)],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                name=name,
            )
        )
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        from onnx import helper

        out = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out], name=out))
        return out

    def add(self, a: str, b: str) -> str:
        from onnx import helper

        out = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> str:
        cout = width * 4
        # v1.5: the stride sits on the 3x3 convolution, not the first 1x1.
        y = self.conv(x, cin, width, 1)
        y = self.conv(y, width, width, 3, stride)
        y = self.conv(y, width, cout, 1, relu=False)
        shortcut = x if (stride == 1 and cin == cout) else self.conv(x, cin, cout, 1, stride, relu=False)
        return self.relu(self.add(y, shortcut))

    def resnet50_trunk(self, x: str) -> str:
        from onnx import helper

        y = self.conv(x, 3, 64, 7, 2)
        pooled = self._name("maxpool")
        self.nodes.append(
            helper.make_node("MaxPool", [y], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        )
        y, cin = pooled, 64
        for blocks, width, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
            for i in range(blocks):
                y = self.bottleneck(y, cin, width, stride if i == 0 else 1)
                cin = width * 4
        return y

    def tiny_trunk(self, x: str) -> str:
        y = self.conv(x, 3, 8, 3, 4)
        return self.conv(y, 8, 16, 3, 4)
