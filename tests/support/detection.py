"""A tiny object detector and a generated OpenImages-MLPerf-layout dataset whose COCO mAP
is known before anything runs.

The dataset (MLCommons' layout: annotations/openimages-mlperf.json in COCO format, images
in validation/data/) holds noisy dark PNGs with solid rectangles, one primary colour per
category: red is category 3, green 7, blue 11. The ids are neither 0..n-1 nor contiguous,
so a harness that maps labels (or adds MLPerf's background offset) scores wrongly; image
ids are not QSL indices either, so one that confuses the two does too. At most one
rectangle of a category per image, none overlapping: the model finds a category's
rectangle as the bounding box of its colour.

The model has retinanet's ONNX I/O (python/main.py's retinanet-onnxruntime): input
``images`` [1,3,S,S] in [0,1], outputs ``boxes`` [N,4] (xmin, ymin, xmax, ymax in input
pixels), ``labels`` int64 [N] and ``scores`` [N], descending. It always answers one
detection per category; an absent category scores 0, below the reference's threshold of
0.05, so only a harness that stops there writes the same log. The present categories score
0.9 (3), 0.8 (11) and 0.6 (7), so sorting puts 11 before 7 and no harness can rely on
category order.

Images are S x S (the resize is the identity, so boxes survive exactly), except one 2S x S
(wide) image: its rectangles start and end on even columns, so halving its width keeps
each rectangle's edge on a pixel boundary (cv2's INTER_LINEAR averages column pairs;
Pillow's antialiased bilinear blurs the edge pixel to 1/8 or 7/8 of the colour, on the
same side of the threshold). It checks that the decoding scales x by the image's width
and y by its height.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CATEGORIES = {3: "Red box", 7: "Green box", 11: "Blue box"}
CHANNEL = {3: 0, 7: 1, 11: 2}  # category -> its high RGB channel
SCORE = {3: 0.9, 7: 0.6, 11: 0.8}
# The off model moves each box right by this fraction of its width: IoU (1-f)/(1+f), so
# category 3 stays exact (IoU 1), 7 matches at IoU 0.5-0.65 only (0.667, AP 0.4) and
# 11 never matches (IoU 0.25, AP 0): mAP (1 + 0.4 + 0) / 3.
OFF_SHIFT = {3: 0.0, 7: 0.2, 11: 0.6}
OFF_MAP = (1.0 + 0.4 + 0.0) / 3
SCORE_THRESHOLD = 0.05  # PostProcessOpenImagesRetinanet's, set in python/main.py

# (width factor, objects as (category, (x0, y0, x1, y1) as fractions of S)); x1, y1 exclusive.
LAYOUTS: list[tuple[int, list[tuple[int, tuple[float, float, float, float]]]]] = [
    (1, [(3, (0.10, 0.10, 0.40, 0.35)), (7, (0.50, 0.15, 0.90, 0.45)), (11, (0.20, 0.55, 0.60, 0.90))]),
    (1, [(11, (0.05, 0.60, 0.45, 0.95)), (7, (0.55, 0.05, 0.80, 0.50))]),
    (1, []),  # no objects: the log's entry for it is empty
    (1, [(3, (0.30, 0.40, 0.50, 0.55))]),
    (2, [(3, (0.10, 0.20, 0.70, 0.60)), (11, (1.20, 0.10, 1.80, 0.85))]),  # the 2S x S image
    (1, [(7, (0.00, 0.00, 0.30, 0.25)), (3, (0.60, 0.70, 1.00, 1.00))]),  # touching the borders
]


@dataclass(frozen=True)
class DetectionData:
    root: Path  # the --dataset / --openimages-dir directory
    size: int  # the model's S
    images: list[dict[str, Any]]  # annotations' "images", in QSL order
    # Per QSL index: (category, (x, y, w, h) in the image's own pixels), as annotated.
    truth: list[list[tuple[int, tuple[int, int, int, int]]]]

    @property
    def annotations(self) -> Path:
        return self.root / "annotations" / "openimages-mlperf.json"

    def image_path(self, index: int) -> Path:
        return self.root / "validation" / "data" / str(self.images[index]["file_name"])


def detection_dataset(root: Path, size: int = 64, seed: int = 0) -> DetectionData:
    """Write the images and annotations under ``root``; S (``size``) at least 20."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    data = root / "validation" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    truth: list[list[tuple[int, tuple[int, int, int, int]]]] = []
    for index, (wide, objects) in enumerate(LAYOUTS):
        width, height = wide * size, size
        pixels = rng.integers(0, 70, (height, width, 3))
        boxes = []
        for category, (fx0, fy0, fx1, fy1) in objects:
            # Even columns in a wide image: each survives the halving as a whole column.
            x0, x1 = (wide * round(fx * size / wide) for fx in (fx0, fx1))
            y0, y1 = round(fy0 * size), round(fy1 * size)
            colour = rng.integers(0, 60, (y1 - y0, x1 - x0, 3))
            colour[..., CHANNEL[category]] = rng.integers(200, 256, (y1 - y0, x1 - x0))
            pixels[y0:y1, x0:x1] = colour
            boxes.append((category, (x0, y0, x1 - x0, y1 - y0)))
        name = f"{0xA0 + 17 * index:08x}.png"  # hex names, as OpenImages'
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(data / name)
        image_id = 500 + 7 * index  # not the QSL index
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        truth.append(boxes)
        for category, (x, y, w, h) in boxes:
            annotations.append(
                {"image_id": image_id, "category_id": category, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            )
    # Annotation order unrelated to image order, ids from 1 (pycocotools treats id 0 as absent).
    annotations.reverse()
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    categories = [{"id": c, "name": name} for c, name in CATEGORIES.items()]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "openimages-mlperf.json").write_text(json.dumps(document, indent=1))
    return DetectionData(root, size, images, truth)


def detection_model(path: Path, size: int = 64, *, off: bool = False) -> Path:
    """The colour detector for S = ``size`` (also the tiny twin of retinanet's 800 x 800
    file for performance runs: the same I/O, a few cheap operations per pixel)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    categories = list(CATEGORIES)
    count = len(categories)
    # 1x1 convolution over the thresholded channels: exactly 1 where a category's channel
    # is high and the other two low.
    weights = -np.ones((count, 3, 1, 1), np.float32)
    for row, category in enumerate(categories):
        weights[row, CHANNEL[category], 0, 0] = 1.0
    constants: dict[str, np.ndarray] = {
        "half": np.array(0.5, np.float32),
        "w": weights,
        "one": np.array(1, np.int64),
        "shift": np.array([OFF_SHIFT[c] if off else 0.0 for c in categories], np.float32),
        "category_scores": np.array([SCORE[c] for c in categories], np.float32),
        "category_ids": np.array(categories, np.int64),
        "k": np.array([count], np.int64),
        "zero": np.array([0], np.int64),
    }
    node = helper.make_node
    nodes = [
        node("Greater", ["images", "half"], ["high"]),
        node("Cast", ["high"], ["highf"], to=TensorProto.FLOAT),
        node("Conv", ["highf", "w"], ["votes"]),
        node("Greater", ["votes", "half"], ["hit"]),
        node("Cast", ["hit"], ["mask"], to=TensorProto.FLOAT),  # [1, C, S, S]
        node("ReduceMax", ["mask"], ["rows"], axes=[3], keepdims=0),  # [1, C, S]: any hit in the row
        node("ReduceMax", ["mask"], ["cols"], axes=[2], keepdims=0),
        node("ReduceMax", ["rows"], ["present"], axes=[2], keepdims=0),  # [1, C]
    ]
    for axis_name, source in (("y", "rows"), ("x", "cols")):
        nodes += [
            node("ArgMax", [source], [f"{axis_name}first"], axis=2, keepdims=0),
            node("ArgMax", [source], [f"{axis_name}last"], axis=2, keepdims=0, select_last_index=1),
            node("Add", [f"{axis_name}last", "one"], [f"{axis_name}end"]),  # exclusive, as COCO's x + w
            node("Cast", [f"{axis_name}first"], [f"{axis_name}0"], to=TensorProto.FLOAT),
            node("Cast", [f"{axis_name}end"], [f"{axis_name}1"], to=TensorProto.FLOAT),
        ]
    nodes += [
        node("Sub", ["x1", "x0"], ["width"]),
        node("Mul", ["width", "shift"], ["dx"]),
        node("Add", ["x0", "dx"], ["xmin"]),
        node("Add", ["x1", "dx"], ["xmax"]),
        node("Concat", ["xmin", "y0", "xmax", "y1"], ["stacked"], axis=0),  # [4, C]
        node("Transpose", ["stacked"], ["unsorted_boxes"], perm=[1, 0]),  # [C, 4]
        node("Squeeze", ["present", "zero"], ["present_c"]),
        node("Mul", ["present_c", "category_scores"], ["unsorted_scores"]),
        node("TopK", ["unsorted_scores", "k"], ["scores", "order"], axis=0, largest=1, sorted=1),
        node("Gather", ["unsorted_boxes", "order"], ["boxes"], axis=0),
        node("Gather", ["category_ids", "order"], ["labels"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_detector_off" if off else "colour_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"]),
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path


def reference_input(image: Path, size: int) -> np.ndarray:
    """pre_process_openimages_retinanet's NCHW batch of one, for this dataset's images:
    cv2's INTER_LINEAR at the exact factors used here (1, or 2 across) is a mean of
    column pairs, so numpy reproduces it without cv2."""
    from PIL import Image

    with Image.open(image) as opened:
        rgb = np.asarray(opened.convert("RGB"), np.float32)
    height, width, _ = rgb.shape
    if height != size or width % size:
        msg = f"{image}: only S x kS images are reproduced here, not {width} x {height}"
        raise ValueError(msg)
    factor = width // size
    rgb = rgb.reshape(size, size, factor, 3).mean(axis=2, dtype=np.float32)
    batch: np.ndarray = (rgb / np.float32(255.0)).transpose(2, 0, 1)[np.newaxis]
    return batch


def reference_records(model: Path, data: DetectionData) -> list[bytes]:
    """Each QSL index's accuracy-log data as the reference app writes it: the model run
    with onnxruntime on the reference's preprocessing, then PostProcessOpenImagesRetinanet
    (stop at the first score under 0.05; [idx, ymin/S, xmin/S, ymax/S, xmax/S, score,
    label] as float32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    records = []
    for index in range(len(data.images)):
        batch = reference_input(data.image_path(index), data.size)
        boxes, labels, scores = session.run(["boxes", "labels", "scores"], {"images": batch})
        rows = []
        for box, label, score in zip(boxes, labels, scores, strict=True):
            if score < SCORE_THRESHOLD:
                break
            s = np.float32(data.size)
            rows.append([np.float32(index), box[1] / s, box[0] / s, box[3] / s, box[2] / s, score, np.float32(label)])
        records.append(np.asarray(rows, np.float32).tobytes())
    return records


def truth_records(data: DetectionData, *, off: bool = False) -> list[bytes]:
    """The records a perfect detector (or, with ``off``, the off model) yields, made from
    the annotations alone: what the models must reproduce."""
    records = []
    for index, objects in enumerate(data.truth):
        scale = data.images[index]["width"] // data.size  # the wide image's x factor
        rows = []
        for category, (x, y, w, h) in sorted(objects, key=lambda item: -SCORE[item[0]]):
            x0, x1 = x / scale, (x + w) / scale
            dx = (x1 - x0) * (OFF_SHIFT[category] if off else 0.0)
            box = [y / data.size, (x0 + dx) / data.size, (y + h) / data.size, (x1 + dx) / data.size]
            rows.append([index, *box, SCORE[category], category])
        records.append(np.asarray(rows, np.float32).tobytes())
    return records


def accuracy_log(path: Path, records: list[bytes]) -> Path:
    """mlperf_log_accuracy.json as LoadGen writes it: one entry per QSL index."""
    entries = [{"seq_id": i, "qsl_idx": i, "data": data.hex().upper()} for i, data in enumerate(records)]
    path.write_text(json.dumps(entries))
    return path


def unpack(record: bytes) -> list[tuple[float, ...]]:
    """A record's rows of seven float32 values."""
    return [struct.unpack("<7f", record[i : i + 28]) for i in range(0, len(record), 28)]
