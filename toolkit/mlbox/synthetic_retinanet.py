"""The synthetic RetinaNet twin: MLCommons' ``resnext50_32x4d_fpn.onnx`` with random weights.

The published file is torchvision's RetinaNet (the MLCommons copy in
``vision/classification_and_detection/python/models/resnext50``) exported at opset 13 with a
fixed ``[1, 3, 800, 800]`` input named ``images`` (pixels in [0, 1]); its outputs have no batch
dimension: ``boxes`` float32 ``[N, 4]`` (xmin, ymin, xmax, ymax in input pixels), ``scores``
float32 ``[N]`` (descending) and ``labels`` int64 ``[N]`` (0..263), in that order. This graph
keeps that contract and the work behind it: the transform's normalisation, a ResNeXt50-32x4d
backbone (batch norm folded into the convolutions, as frozen batch norm exports), an FPN
with P3-P7 at 256 channels, the shared classification and regression heads (4 conv 3x3 + ReLU
each, 9 anchors, 264 classes) and torchvision's post-processing in the graph: per level the
sigmoid scores above 0.05, their top 1000, box decoding against the anchors, clipping, then
class-wise NMS at IoU 0.5 over all levels and the best 300.

The random weights are scaled as frozen batch norm leaves a trained network's: while the
graph is made, the network runs in float64 on two seeded calibration images (a smooth scene
and pixel noise) and every convolution is scaled and shifted so that each of its channels has
mean 0 and variance 1 there (the classification logits: the published head's prior, a score
of 0.01, with a spread of 0.5). Without it, activations grow layer by layer until every
channel is a constant, whatever the image; with it, an 800x800 image brings hundreds to
hundreds of thousands of anchor-class pairs above the 0.05 threshold (a scene, pixel noise),
so the top-k and NMS do a real run's work, and its 300 detections differ from image to image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlbox.onnx_graph import GraphBuilder

# Bump when the generated graph changes: it is part of the cache key.
GENERATOR_VERSION = 1
INPUT_NAME = "images"
OUTPUT_BOXES = "boxes"
OUTPUT_SCORES = "scores"
OUTPUT_LABELS = "labels"
IMAGE_SIZE = 800
NUM_CLASSES = 264
# torchvision's RetinaNet defaults, which MLCommons' model keeps.
SCORE_THRESH = 0.05
TOPK_CANDIDATES = 1000
NMS_THRESH = 0.5
DETECTIONS_PER_IMG = 300
ANCHOR_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (32, 64, 128, 256, 512))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
NUM_ANCHORS = len(ANCHOR_SIZES[0]) * len(ASPECT_RATIOS)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
# The classification head's spread around the prior: sigmoid(-4.6 + 0.5 z) passes 0.05 for
# z > 3.3, about 5 in 10,000 anchor-class pairs (11,000 of P3's 23.8 million at 800x800).
CLS_LOGIT_STD = 0.5
CLS_PRIOR = 0.01
BOX_DELTA_STD = 0.1  # boxes stay near their anchors, as a trained regressor's mostly do
GROUPS, GROUP_WIDTH = 32, 4
BLOCKS = (3, 4, 6, 3)
FPN_CHANNELS = 256
# Batch norm's statistics come from running the network on two images of this size (or the
# graph's, if smaller): a few seconds in float64, and P7 still has a few positions.
CALIBRATION_SIZE = 256
SHRINK_POSITIONS = 256  # a channel's statistics count as its layer's until it has this many values


def build(seed: int, *, image_size: int = IMAGE_SIZE, width_divisor: int = 1) -> Any:
    """Return an ``onnx.ModelProto``. ``image_size`` and ``width_divisor`` (every channel
    count over it: 8 makes a twin of a few MB that runs in milliseconds) are for tests;
    the names, dtypes and ranks stay the published file's."""
    if width_divisor < 1 or GROUPS % width_divisor:
        msg = f"width_divisor must divide {GROUPS} (got {width_divisor})"
        raise ValueError(msg)
    if image_size < 32:
        msg = f"image_size must be at least 32 (got {image_size})"
        raise ValueError(msg)
    return _RetinaNetBuilder(seed, image_size, width_divisor).model()


def _down(size: int) -> int:
    """A 3x3 (or 7x7) convolution or pooling of stride 2 with the usual padding."""
    return (size + 1) // 2


def anchors(image_size: int, grid: int, sizes: tuple[int, ...]) -> np.ndarray:
    """torchvision's AnchorGenerator for one level, [grid * grid * 9, 4] as (x1, y1, x2, y2):
    positions row by row, at each the aspect ratios (height / width) by the sizes."""
    scales = np.asarray(sizes, dtype=np.float32)
    h_ratios = np.sqrt(np.asarray(ASPECT_RATIOS, dtype=np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)
    stride = image_size // grid  # integer division, as torchvision's (61 and 114 for P6, P7 at 800)
    shifts = np.arange(grid, dtype=np.float32) * np.float32(stride)
    shift_y, shift_x = np.meshgrid(shifts, shifts, indexing="ij")
    shift = np.stack([shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel()], axis=1)
    return (shift[:, None, :] + base[None, :, :]).reshape(-1, 4).astype(np.float32)


def calibration_images(seed: int, size: int) -> np.ndarray:
    """What the weights are calibrated on, pixels in [0, 1]: a smooth random scene (blobs at
    several scales, like a photograph's regions) and uniform noise (mlbox-bench's inputs
    without a dataset), so that either kind meets the statistics batch norm expects."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the weights' stays as it was
    scene = np.zeros((3, size, size))
    for cells in (2, 4, 8, 16, 32):
        index = np.arange(size) * cells // size
        scene += rng.random((3, cells, cells))[:, index][:, :, index] / math.sqrt(cells)
    scene = (scene - scene.min()) / (scene.max() - scene.min())
    return np.stack([scene, rng.random((3, size, size))])


def _conv(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """ONNX Conv (pads k // 2, no bias) in float64, for calibration."""
    n, _, _, _ = x.shape
    cout, cg, k, _ = w.shape
    pad = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = windows.shape[2:4]
    cols = windows.reshape(n, groups, cg, ho, wo, k, k).transpose(1, 0, 3, 4, 2, 5, 6).reshape(groups, -1, cg * k * k)
    out: np.ndarray = np.matmul(cols, w.reshape(groups, cout // groups, cg * k * k).transpose(0, 2, 1))
    return out.reshape(groups, n, ho, wo, cout // groups).transpose(1, 0, 4, 2, 3).reshape(n, cout, ho, wo)


def _batch_norm(raw: list[np.ndarray], std: float, bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the scale and shift that give ``raw`` (one or more [N, C, H, W] arrays)
    mean ``bias`` and standard deviation ``std``: frozen batch norm's running statistics.
    Rounded (8 significant bits, 1/4096), so that the last bits of the host's BLAS never
    change the file's bytes."""
    flat = np.concatenate([r.transpose(1, 0, 2, 3).reshape(r.shape[1], -1) for r in raw], axis=1)
    n = flat.shape[1]
    mean, var = flat.mean(axis=1), flat.var(axis=1)
    # Few positions (C5 and P6-P7 of a small image) give each channel's statistics by
    # chance: they would fit the calibration images and blow up on any other. Lean them on
    # the whole layer's, as much as they lack positions.
    pooled_mean = float(mean.mean())
    pooled_var = float((var + (mean - pooled_mean) ** 2).mean())
    mean = (n * mean + SHRINK_POSITIONS * pooled_mean) / (n + SHRINK_POSITIONS)
    var = (n * var + SHRINK_POSITIONS * pooled_var) / (n + SHRINK_POSITIONS)
    # A channel that hardly varies (a dead ReLU's input) must not be blown up to full scale.
    sd = np.sqrt(np.maximum(var, 0.01 * pooled_var) if pooled_var > 0 else np.ones_like(var))
    mantissa, exponent = np.frexp(std / sd)
    scale = np.ldexp(np.round(mantissa * 256) / 256, exponent)
    return scale, np.round((bias - scale * mean) * 4096) / 4096


class _RetinaNetBuilder(GraphBuilder):
    """Emits the ONNX graph and, beside it, runs the network in float64 on the calibration
    images (``acts``: each tensor's values) to scale every convolution as it is made."""

    def __init__(self, seed: int, image_size: int, width_divisor: int) -> None:
        super().__init__(seed)
        self.seed, self.image_size, self.div = seed, image_size, width_divisor
        self.acts: dict[str, np.ndarray] = {}
        self.grid_of: dict[str, int] = {}  # a pyramid level's height (and width) in the graph

    # ----------------------------------------------------------------- primitives

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, kind: str, array: np.ndarray) -> str:
        return self._const(self._name(kind), array)

    def ints(self, *values: int) -> str:
        return self.const("ints", np.asarray(values, dtype=np.int64))

    def scalar(self, value: float) -> str:
        return self.const("scalar", np.asarray(value, dtype=np.float32))

    def relu(self, x: str) -> str:
        out = super().relu(x)
        self.acts[out] = np.maximum(self.acts[x], 0.0)
        return out

    def add(self, a: str, b: str) -> str:
        out = super().add(a, b)
        self.acts[out] = self.acts[a] + self.acts[b]
        return out

    def conv2d(self, x: str, cin: int, cout: int, k: int, *, stride: int = 1, groups: int = 1, std: float = 1.0) -> str:
        """A convolution with batch norm folded in: each output channel has mean 0 and
        standard deviation ``std`` on the calibration images."""
        return self.convs([x], cin, cout, k, stride=stride, groups=groups, std=std)[0]

    def convs(
        self,
        xs: list[str],
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        groups: int = 1,
        std: float = 1.0,
        bias: float = 0.0,
    ) -> list[str]:
        """One convolution's weights applied to each of ``xs`` (the heads share theirs across
        the pyramid levels), scaled on all of them together."""
        w = self.rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32)
        raw = [_conv(self.acts[x], w.astype(np.float64), stride, groups) for x in xs]
        scale, shift = _batch_norm(raw, std, bias)
        weights = self.const("w", (w * scale[:, None, None, None]).astype(np.float32))
        biases = self.const("b", shift.astype(np.float32))
        outs = []
        for x, r in zip(xs, raw, strict=True):
            out = self.node(
                "Conv",
                [x, weights, biases],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )
            self.acts[out] = r * scale[None, :, None, None] + shift[None, :, None, None]
            outs.append(out)
        return outs

    # ----------------------------------------------------------------- network

    def bottleneck(self, x: str, cin: int, planes: int, stride: int) -> str:
        """torchvision's ResNeXt bottleneck (the stride on the grouped 3x3)."""
        groups = GROUPS // self.div
        width, cout = groups * GROUP_WIDTH * planes // 64, planes * 4 // self.div
        first = len(self.nodes)
        y = self.relu(self.conv2d(x, cin, width, 1))
        y = self.relu(self.conv2d(y, width, width, 3, stride=stride, groups=groups))
        y = self.conv2d(y, width, cout, 1)
        shortcut = self.conv2d(x, cin, cout, 1, stride=stride) if stride != 1 or cin != cout else x
        out = self.relu(self.add(y, shortcut))
        self.forget(first, keep=out)
        return out

    def forget(self, first: int, *, keep: str) -> None:
        """Drop the calibration values of the nodes made since ``first``, but ``keep``'s."""
        for node in self.nodes[first:]:
            if node.output[0] != keep:
                self.acts.pop(node.output[0], None)

    def backbone(self, x: str) -> list[tuple[str, int]]:
        """C3, C4, C5 (torchvision's returned_layers [2, 3, 4]) and their channels."""
        stem = 64 // self.div
        y = self.relu(self.conv2d(x, 3, stem, 7, stride=2))
        pooled = self.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        padded = np.pad(self.acts[y], ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
        self.acts[pooled] = windows.max(axis=(4, 5))
        y, cin, outs = pooled, stem, []
        for stage, (blocks, planes) in enumerate(zip(BLOCKS, (64, 128, 256, 512), strict=True)):
            for i in range(blocks):
                y = self.bottleneck(y, cin, planes, 2 if i == 0 and stage > 0 else 1)
                cin = planes * 4 // self.div
            if stage > 0:
                outs.append((y, cin))
        return outs

    def fpn(self, features: list[tuple[str, int]], sizes: list[int]) -> list[str]:
        """torchvision's FeaturePyramidNetwork with LastLevelP6P7(256, 256): P3-P7."""
        c = FPN_CHANNELS // self.div
        laterals = [self.conv2d(f, cin, c, 1) for f, cin in features]
        last = laterals[-1]
        outs = [self.conv2d(last, c, c, 3)]
        for lateral, size in zip(reversed(laterals[:-1]), reversed(sizes[:-1]), strict=True):
            # torch's F.interpolate(mode="nearest") to the lateral's size, as exported.
            top_down = self.node(
                "Resize",
                [last, "", "", self.ints(1, c, size, size)],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
            small = self.acts[last]
            index = np.arange(self.acts[lateral].shape[2]) * small.shape[2] // self.acts[lateral].shape[2]
            self.acts[top_down] = small[:, :, index][:, :, :, index]
            last = self.add(lateral, top_down)
            outs.insert(0, self.conv2d(last, c, c, 3))
        p6 = self.conv2d(outs[-1], c, c, 3, stride=2)  # from P5: in_channels == out_channels
        p7 = self.conv2d(self.relu(p6), c, c, 3, stride=2)
        return [*outs, p6, p7]

    def heads(self, levels: list[str]) -> list[tuple[str, str]]:
        """The shared heads on every level: logits [HWA, K] and box deltas [HWA, 4] each."""
        c = FPN_CHANNELS // self.div
        per_head = []
        for channels, std, bias in (
            (NUM_CLASSES, CLS_LOGIT_STD, -math.log((1 - CLS_PRIOR) / CLS_PRIOR)),
            (4, BOX_DELTA_STD, 0.0),
        ):
            ys = levels
            for _ in range(4):
                convs = self.convs(ys, c, c, 3)
                ys = [self.relu(y) for y in convs]
                for name in convs:
                    del self.acts[name]
            ys = self.convs(ys, c, NUM_ANCHORS * channels, 3, std=std, bias=bias)
            flat = []
            for y, grid in zip(ys, (self.grid_of[level] for level in levels), strict=True):
                # (1, A*K, H, W) -> (1, A, K, H, W) -> (1, H, W, A, K) -> (HWA, K), as torchvision.
                y = self.node("Reshape", [y, self.ints(1, NUM_ANCHORS, channels, grid, grid)])
                y = self.node("Transpose", [y], perm=[0, 3, 4, 1, 2])
                flat.append(self.node("Reshape", [y, self.ints(-1, channels)]))
            per_head.append(flat)
        return list(zip(per_head[0], per_head[1], strict=True))

    # ----------------------------------------------------------------- post-processing

    def level_detections(self, logits: str, deltas: str, level_anchors: np.ndarray) -> tuple[str, str, str]:
        """torchvision's postprocess_detections for one level: boxes [n, 4], scores [n],
        labels [n] of the top 1000 anchor-class pairs scoring above 0.05."""
        scores = self.node("Reshape", [self.node("Sigmoid", [logits]), self.ints(-1)])
        keep = self.node(
            "Reshape",
            [self.node("NonZero", [self.node("Greater", [scores, self.scalar(SCORE_THRESH)])]), self.ints(-1)],
        )
        kept = self.node("Gather", [scores, keep])
        k = self.node("Min", [self.node("Shape", [kept]), self.ints(TOPK_CANDIDATES)])
        top = self._name("topk")
        top_scores, top_at = f"{top}_values", f"{top}_indices"
        from onnx import helper

        self.nodes.append(helper.make_node("TopK", [kept, k], [top_scores, top_at], name=top, axis=0))
        index = self.node("Gather", [keep, top_at])
        num_classes = self.ints(NUM_CLASSES)
        anchor_at = self.node("Div", [index, num_classes])
        labels = self.node("Mod", [index, num_classes])
        # BoxCoder((1, 1, 1, 1)).decode_single, from the anchors' centres and sizes.
        widths = level_anchors[:, 2:] - level_anchors[:, :2]
        centres = level_anchors[:, :2] + np.float32(0.5) * widths
        rel = self.node("Gather", [deltas, anchor_at])
        d_xy = self.node("Slice", [rel, self.ints(0), self.ints(2), self.ints(1)])
        d_wh = self.node("Slice", [rel, self.ints(2), self.ints(4), self.ints(1)])
        d_wh = self.node("Clip", [d_wh, "", self.scalar(BBOX_XFORM_CLIP)])
        wh = self.node("Gather", [self.const("anchor_wh", widths), anchor_at])
        xy = self.node("Gather", [self.const("anchor_ctr", centres), anchor_at])
        centre = self.node("Add", [self.node("Mul", [d_xy, wh]), xy])
        half = self.node("Mul", [self.node("Mul", [self.node("Exp", [d_wh]), wh]), self.scalar(0.5)])
        boxes = self.node("Concat", [self.node("Sub", [centre, half]), self.node("Add", [centre, half])], axis=1)
        boxes = self.node("Clip", [boxes, self.scalar(0.0), self.scalar(float(self.image_size))])
        return boxes, top_scores, labels

    def nms(self, boxes: str, scores: str, labels: str) -> tuple[str, str, str]:
        """torchvision's batched_nms (each class apart: boxes offset by class) and the best 300."""
        offsets = self.node("Mul", [self.node("Cast", [labels], to=1), self.scalar(float(self.image_size + 1))])
        shifted = self.node("Add", [boxes, self.node("Unsqueeze", [offsets, self.ints(1)])])
        selected = self.node(
            "NonMaxSuppression",
            [
                self.node("Unsqueeze", [shifted, self.ints(0)]),
                self.node("Unsqueeze", [scores, self.ints(0, 1)]),
                self.ints(2**63 - 1),  # torchvision's export: every box NMS keeps, then the first 300
                self.const("iou", np.asarray([NMS_THRESH], dtype=np.float32)),
            ],
        )
        keep = self.node(
            "Reshape", [self.node("Slice", [selected, self.ints(2), self.ints(3), self.ints(1)]), self.ints(-1)]
        )
        keep = self.node("Slice", [keep, self.ints(0), self.ints(DETECTIONS_PER_IMG), self.ints(0)])
        from onnx import helper

        self.nodes += [
            helper.make_node("Gather", [boxes, keep], [OUTPUT_BOXES], name="gather_boxes"),
            helper.make_node("Gather", [scores, keep], [OUTPUT_SCORES], name="gather_scores"),
            helper.make_node("Gather", [labels, keep], [OUTPUT_LABELS], name="gather_labels"),
        ]
        return OUTPUT_BOXES, OUTPUT_SCORES, OUTPUT_LABELS

    # ----------------------------------------------------------------- the model

    def model(self) -> Any:
        import onnx
        from onnx import TensorProto, helper

        size = self.image_size
        mean = np.asarray(IMAGE_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(IMAGE_STD, dtype=np.float32).reshape(1, 3, 1, 1)
        x = self.node("Div", [self.node("Sub", [INPUT_NAME, self.const("mean", mean)]), self.const("std", std)])
        self.acts[x] = (calibration_images(self.seed, min(size, CALIBRATION_SIZE)) - mean) / std
        grids = [size]
        for _ in range(7):  # stem, max pool, then layers 2-4 and P6, P7 each halve it
            grids.append(_down(grids[-1]))
        c_sizes = grids[3:6]  # C3, C4, C5
        levels = self.fpn(self.backbone(x), c_sizes)
        self.grid_of = dict(zip(levels, grids[3:8], strict=True))
        per_level = [
            self.level_detections(logits, deltas, anchors(size, grid, sizes))
            for (logits, deltas), grid, sizes in zip(self.heads(levels), grids[3:8], ANCHOR_SIZES, strict=True)
        ]
        self.acts.clear()
        boxes, scores, labels = (self.node("Concat", list(parts), axis=0) for parts in zip(*per_level, strict=True))
        self.nms(boxes, scores, labels)
        graph = helper.make_graph(
            self.nodes,
            "mlbox_synthetic_retinanet",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, size, size])],
            [
                helper.make_tensor_value_info(OUTPUT_BOXES, TensorProto.FLOAT, ["detections", 4]),
                helper.make_tensor_value_info(OUTPUT_SCORES, TensorProto.FLOAT, ["detections"]),
                helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.INT64, ["detections"]),
            ],
            self.inits,
        )
        model = helper.make_model(
            graph,
            producer_name="mlbox",
            doc_string=f"SYNTHETIC WEIGHTS: RetinaNet ResNeXt50-32x4d FPN graph with random weights "
            f"(seed {self.seed}); not a trained model, its detections and mAP are meaningless.",
            opset_imports=[helper.make_opsetid("", 13)],
        )
        model.ir_version = 8  # readable by every onnxruntime mlbox supports
        facts = {
            "mlbox.weights": "synthetic",
            "mlbox.generator": "retinanet",
            "mlbox.seed": str(self.seed),
            "mlbox.image_size": str(size),
            "mlbox.width_divisor": str(self.div),
        }
        for key, value in facts.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        return model
