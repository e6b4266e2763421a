"""Preprocessing, batching and the accuracy script: pure logic, checked against numbers
computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlbox_bench.accuracy import score
from mlbox_bench.errors import BenchError
from mlbox_bench.preprocess import CHANNEL_MEANS, image_layout, preprocess_imagenet, resized_size
from mlbox_bench.run import contiguous_batches


@pytest.mark.parametrize(
    ("size", "expected"),
    [((500, 375), (341, 256)), ((375, 500), (256, 341)), ((256, 256), (256, 256)), ((640, 427), (383, 256))],
)
def test_resize_keeps_aspect_with_the_references_truncation(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(*size, crop=224) == expected


def test_preprocessing_matches_a_hand_computation(tmp_path: Path) -> None:
    """A 512x512 PNG shrinks by exactly 2: area interpolation is the mean of each 2x2
    block, then a centre crop of 224, the channel means, and NCHW."""
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "x.png")
    expected = rgb.astype(np.float64).reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    expected = np.floor(expected + 0.5)[16:240, 16:240] - CHANNEL_MEANS  # Pillow rounds to uint8
    got = preprocess_imagenet(tmp_path / "x.png", 224, "NCHW")
    assert got.shape == (3, 224, 224)
    assert got.dtype == np.float32
    assert np.abs(got.transpose(1, 2, 0) - expected).max() < 1.001  # a .5 may round either way
    nhwc = preprocess_imagenet(tmp_path / "x.png", 224, "NHWC")
    assert np.array_equal(nhwc, got.transpose(1, 2, 0))


def test_grayscale_images_become_rgb(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((300, 300), 200, dtype=np.uint8), "L").save(tmp_path / "g.jpg")
    got = preprocess_imagenet(tmp_path / "g.jpg")
    assert np.allclose(got[:, 100, 100], 200 - CHANNEL_MEANS, atol=1)


def test_undecodable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(BenchError, match=r"cannot decode image .*bad\.JPEG"):
        preprocess_imagenet(tmp_path / "bad.JPEG")


def test_image_layout() -> None:
    assert image_layout((3, 224, 224)) == ("NCHW", 224)
    assert image_layout((224, 224, 3)) == ("NHWC", 224)
    with pytest.raises(BenchError, match="not a square RGB image"):
        image_layout((800, 3))


@pytest.mark.parametrize("seed", range(5))
def test_offline_batches_cover_every_sample_once_and_stay_full(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 50, int(rng.integers(1, 400)))
    batches = contiguous_batches(rows, 8)
    positions = np.concatenate(batches)
    assert np.array_equal(np.sort(positions), np.arange(len(rows)))
    assert all(len(b) == 8 for b in batches[:-1])
    assert 1 <= len(batches[-1]) <= 8


def test_offline_batches_are_views_when_the_query_repeats_the_loaded_set() -> None:
    """LoadGen's Offline query goes over the loaded samples; each batch is then a run of
    consecutive rows: a view, no copy."""
    rows = np.concatenate([np.random.default_rng(i).permutation(64) for i in range(3)])
    for batch in contiguous_batches(rows, 8):
        assert np.array_equal(np.diff(rows[batch]), np.ones(len(batch) - 1))


def test_accuracy_script_counts_top1_with_the_offset(tmp_path: Path) -> None:
    labels = [5, 7, 9, 11]
    predicted = [6, 8, 3, 12]  # ArgMax indices: label + 1 is right; the third is wrong
    log = [
        {"seq_id": i, "qsl_idx": i, "data": np.array([p], np.int64).tobytes().hex()} for i, p in enumerate(predicted)
    ]
    log.append(dict(log[0]))  # a duplicate counts once
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps(log))
    acc = score(path, labels, "int64", -1)  # an old mlbox-bench log: raw ArgMax, int64
    assert (acc.good, acc.total, acc.duplicates) == (3, 4, 1)
    assert acc.line() == "accuracy=75.000%, good=3, total=4"
