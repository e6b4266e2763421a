"""The synthetic RetinaNet twin: MLCommons' resnext50_32x4d_fpn.onnx contract (names, dtypes,
ranks, post-processing in the graph), seeded weights, labelled synthetic in the file itself.
The tests use the small twin the generator's knobs make (64x64, an eighth of the channels);
one builds the full-width network, at 64x64, to count its parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlbox import synthetic_retinanet as rn

SIZE, DIVISOR = 64, 8


@pytest.fixture(scope="module")
def tiny() -> Any:
    return rn.build(7, image_size=SIZE, width_divisor=DIVISOR)


@pytest.fixture(scope="module")
def session(tiny: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(tiny.SerializeToString(), providers=["CPUExecutionProvider"])


def pixels(seed: int, size: int = SIZE) -> np.ndarray:
    """mlbox-bench's synthetic samples: 8-bit pixels, divided by 255 as the reference does."""
    return (np.random.default_rng(seed).integers(0, 256, (1, 3, size, size)) / 255).astype(np.float32)


def test_the_io_is_mlcommons_retinanet_files(session: Any) -> None:
    import onnxruntime as ort

    [image] = session.get_inputs()
    assert (image.name, image.type, image.shape) == ("images", "tensor(float)", [1, 3, SIZE, SIZE])
    outputs = [(o.name, o.type, len(o.shape)) for o in session.get_outputs()]
    # The exporter's order (output_names=["boxes", "scores", "labels"]); no batch dimension.
    assert outputs == [("boxes", "tensor(float)", 2), ("scores", "tensor(float)", 1), ("labels", "tensor(int64)", 1)]
    full = ort.InferenceSession(
        rn.build(0, image_size=32, width_divisor=32).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    assert full.get_inputs()[0].shape == [1, 3, 32, 32]  # the size is a knob; 800 by default
    assert rn.IMAGE_SIZE == 800


def test_it_runs_and_detects_as_torchvisions_retinanet_does(session: Any) -> None:
    boxes, scores, labels = session.run(None, {"images": pixels(1)})
    assert (boxes.dtype, scores.dtype, labels.dtype) == (np.float32, np.float32, np.int64)
    n = len(scores)
    assert 0 < n <= 300  # some pass the 0.05 threshold: NMS and the top-k have work to do
    assert (boxes.shape, labels.shape) == ((n, 4), (n,))
    assert np.all(scores > 0.05)
    assert np.all(np.diff(scores) <= 0)  # descending
    assert np.all((labels >= 0) & (labels < 264))
    assert np.all((boxes >= 0) & (boxes <= SIZE))  # clipped to the image, in its pixels
    assert np.all(boxes[:, 2:] >= boxes[:, :2])  # xmin, ymin, xmax, ymax
    other = session.run(None, {"images": pixels(2)})
    assert not np.array_equal(other[1], scores)  # the image decides, not the weights alone


def test_the_post_processing_is_torchvisions(tiny: Any) -> None:
    """The graph's detections equal torchvision's postprocess_detections (score > 0.05, top
    1000 per level, BoxCoder decode, clip, batched_nms 0.5, best 300) computed in numpy from
    the graph's own head outputs."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(tiny)
    shapes = {i.name: numpy_helper.to_array(i).tolist() for i in model.graph.initializer if i.name.startswith("ints")}
    heads = [
        n.output[0]
        for n in model.graph.node
        if n.op_type == "Reshape" and shapes.get(n.input[1]) in ([-1, 264], [-1, 4])
    ]
    logits, deltas = heads[:5], heads[5:]
    for name in heads:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, scores, labels, *raw = session.run(["boxes", "scores", "labels", *logits, *deltas], {"images": pixels(3)})
    grids = [8, 4, 2, 1, 1]  # 64 / 8, / 16, / 32, then P6 and P7 (ceil of halves)
    anchors = [rn.anchors(SIZE, g, sizes) for g, sizes in zip(grids, rn.ANCHOR_SIZES, strict=True)]
    want = reference_detections(raw[:5], raw[5:], anchors, SIZE)
    assert len(want[1]) > 20
    np.testing.assert_array_equal(labels, want[2])
    np.testing.assert_allclose(scores, want[1], rtol=1e-6)
    np.testing.assert_allclose(boxes, want[0], rtol=1e-5, atol=1e-4)


def reference_detections(
    logits: list[np.ndarray], deltas: list[np.ndarray], anchors: list[np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    all_boxes, all_scores, all_labels = [], [], []
    for lg, dl, an in zip(logits, deltas, anchors, strict=True):
        s = (1 / (1 + np.exp(-lg.astype(np.float64)))).ravel()
        idx = np.nonzero(s > 0.05)[0]
        idx = idx[np.argsort(-s[idx], kind="stable")][:1000]
        a, label = idx // 264, idx % 264
        w, h = an[a, 2] - an[a, 0], an[a, 3] - an[a, 1]
        cx, cy = an[a, 0] + 0.5 * w, an[a, 1] + 0.5 * h
        d = dl[a].astype(np.float64)
        dw, dh = np.minimum(d[:, 2], np.log(1000 / 16)), np.minimum(d[:, 3], np.log(1000 / 16))
        px, py, pw, ph = d[:, 0] * w + cx, d[:, 1] * h + cy, np.exp(dw) * w, np.exp(dh) * h
        box = np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=1).clip(0, size)
        all_boxes.append(box)
        all_scores.append(s[idx])
        all_labels.append(label)
    boxes, scores, labels = np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_labels)
    shifted = boxes + (labels * (size + 1))[:, None]
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(_iou(shifted[i], shifted[j]) <= 0.5 for j in keep):
            keep.append(int(i))
    keep = keep[:300]
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def test_anchors_are_torchvisions() -> None:
    p3 = rn.anchors(800, 100, rn.ANCHOR_SIZES[0])
    assert p3.shape == (100 * 100 * 9, 4)
    # Size 32 at aspect 0.5 (height / width), rounded as AnchorGenerator rounds; the next
    # position is one stride (8) to the right.
    np.testing.assert_array_equal(p3[0], [-23, -11, 23, 11])
    np.testing.assert_array_equal(p3[9] - p3[0], [8, 0, 8, 0])
    assert rn.ANCHOR_SIZES[0] == (32, 40, 50)
    # Strides are the image size over the grid, in integers: 61 and 114 for P6 (13) and P7 (7).
    p6, p7 = rn.anchors(800, 13, rn.ANCHOR_SIZES[3]), rn.anchors(800, 7, rn.ANCHOR_SIZES[4])
    np.testing.assert_array_equal(p6[9] - p6[0], [61, 0, 61, 0])
    np.testing.assert_array_equal(p7[7 * 9] - p7[0], [0, 114, 0, 114])


def test_same_seed_same_bytes_and_the_file_says_synthetic(tiny: Any) -> None:
    assert rn.build(7, image_size=SIZE, width_divisor=DIVISOR).SerializeToString() == tiny.SerializeToString()
    assert rn.build(8, image_size=SIZE, width_divisor=DIVISOR).SerializeToString() != tiny.SerializeToString()
    meta = {p.key: p.value for p in tiny.metadata_props}
    assert meta["mlbox.weights"] == "synthetic"
    assert (meta["mlbox.generator"], meta["mlbox.seed"]) == ("retinanet", "7")
    assert (meta["mlbox.image_size"], meta["mlbox.width_divisor"]) == (str(SIZE), str(DIVISOR))
    assert tiny.doc_string.startswith("SYNTHETIC WEIGHTS")
    assert tiny.opset_import[0].version == 13  # the published file's opset


def test_the_full_width_network_is_resnext50_32x4d_fpn_retinanet() -> None:
    """Parameter counts against torchvision's: resnext50_32x4d has 25,028,904 (its fc and
    batch norms' affine pairs included; here each batch norm is one bias)."""
    model = rn.build(0, image_size=64)
    from onnx import numpy_helper

    sizes = {i.name: numpy_helper.to_array(i).size for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    backbone, fpn = convs[:53], convs[53:61]  # 1 stem + 16 blocks of 3 + 4 projections; 3 + 3 + P6, P7
    weights = sum(sizes[n.input[1]] for n in backbone)
    bn_channels = sum(sizes[n.input[2]] for n in backbone)
    assert weights + 2 * bn_channels + 2048 * 1000 + 1000 == 25_028_904
    groups = [{a.name: a.i for a in n.attribute}["group"] for n in backbone]
    assert groups.count(32) == 16  # the 3x3 of every block: 32 groups of 4 channels (x its stage's width)
    assert sum(sizes[n.input[1]] + sizes[n.input[2]] for n in fpn) == 3_868_672
    head = {(n.input[1], n.input[2]) for n in convs[61:]}  # shared by the five levels: 2 x (4 + 1)
    assert len(head) == 10
    assert sum(sizes[w] + sizes[b] for w, b in head) == 10_280_300
    assert max(sizes[w] for w, _ in head) == 256 * 9 * 9 * 264  # cls_logits: 9 anchors x 264 classes


def test_the_catalog_variant_is_made_once_and_cached_under_the_generators_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlbox.catalog import Synthetic
    from mlbox.synthetic import synthetic_model

    made = []
    build = rn.build

    def small(seed: int) -> Any:
        made.append(seed)
        return build(seed, image_size=SIZE, width_divisor=DIVISOR)

    monkeypatch.setattr(rn, "build", small)
    spec = Synthetic(generator="retinanet", seed=0)
    path = synthetic_model(spec, "resnext50_32x4d_fpn_synthetic.onnx", tmp_path)
    assert path == tmp_path / "models/synthetic/retinanet-seed0-v1/resnext50_32x4d_fpn_synthetic.onnx"
    assert rn.GENERATOR_VERSION == 1
    assert synthetic_model(spec, path.name, tmp_path) == path
    assert made == [0]  # the second call found the file
    assert path.read_bytes() == small(0).SerializeToString()
