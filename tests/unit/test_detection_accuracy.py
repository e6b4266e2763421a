"""Detection accuracy (retinanet on OpenImages) scores as MLCommons' accuracy-openimages.py
scores it.

The first tests need no harness: they check tests/support/detection.py's dataset and
models, and the mAP each model must get, against an independent re-implementation of the
official script's decoding (pycocotools, as the script uses it). The last runs mlbox-bench
and then the official script itself, from a checkout of github.com/mlcommons/inference.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.detection import (
    OFF_MAP,
    DetectionData,
    accuracy_log,
    detection_dataset,
    detection_model,
    reference_input,
    reference_records,
    truth_records,
    unpack,
)

SCRIPT = "vision/classification_and_detection/tools/accuracy-openimages.py"
# Where this project's development machines keep a fetched copy (a git directory); anywhere
# else, MLBOX_INFERENCE_SRC names a checkout, and without either the official-script test skips.
MIRROR = Path("/work/.mirror/mlcommons+inference/repo")
# Read at import: the unit tier's guard removes every MLBOX_* variable before each test.
INFERENCE_SRC = os.environ.get("MLBOX_INFERENCE_SRC")


def official_map(log: Path, openimages_dir: Path) -> tuple[float, str]:
    """accuracy-openimages.py with its default flags: (stats[0], its printed line)."""
    # Untyped; the unused-ignore code keeps this quiet once pyproject lists pycocotools too.
    from pycocotools.coco import COCO  # type: ignore[import-untyped,unused-ignore]
    from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped,unused-ignore]

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its progress on stdout
        truth = COCO(str(openimages_dir / "annotations" / "openimages-mlperf.json"))
        images = truth.dataset["images"]
        detections = []
        image_ids = set()
        seen: set[int] = set()
        for entry in json.loads(log.read_text()):
            idx = entry["qsl_idx"]
            if idx in seen:
                continue
            seen.add(idx)
            image = images[idx]
            # An image without detections still counts: its objects are misses.
            image_ids.add(image["id"])
            data = np.frombuffer(bytes.fromhex(entry["data"]), np.float32)
            for _, ymin, xmin, ymax, xmax, score, label in data.reshape(-1, 7) if len(data) >= 7 else ():
                height, width = image["height"], image["width"]
                x0, y0, x1, y1 = xmin * width, ymin * height, xmax * width, ymax * height
                box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
                detections.append(
                    {"image_id": image["id"], "category_id": int(label), "bbox": box, "score": float(score)}
                )
        evaluation = COCOeval(truth, truth.loadRes(detections), iouType="bbox")
        evaluation.params.imgIds = list(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    value = float(evaluation.stats[0])
    return value, f"mAP={100.0 * value:.3f}%"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DetectionData:
    return detection_dataset(tmp_path_factory.mktemp("openimages"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data: DetectionData) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "exact": detection_model(folder / "exact.onnx", data.size),
        "off": detection_model(folder / "off.onnx", data.size, off=True),
    }


def test_perfect_detections_score_full_marks(data: DetectionData, tmp_path: Path) -> None:
    log = accuracy_log(tmp_path / "log.json", truth_records(data))
    assert official_map(log, data.root) == (1.0, "mAP=100.000%")


def test_off_detections_score_between_nothing_and_full_marks(data: DetectionData, tmp_path: Path) -> None:
    value, line = official_map(accuracy_log(tmp_path / "log.json", truth_records(data, off=True)), data.root)
    assert 0.0 < value < 1.0
    assert value == pytest.approx(OFF_MAP, abs=1e-9)
    assert line == "mAP=46.667%"


def test_a_wrong_label_or_image_scores_nothing(data: DetectionData, tmp_path: Path) -> None:
    """The dataset catches the classic mistakes: labels as 0..n-1 indices, and records
    filed under the next image."""
    records = truth_records(data)
    shifted = [records[-1], *records[:-1]]
    indexed = []
    for index, record in enumerate(shifted):
        rows = np.frombuffer(record, np.float32).reshape(-1, 7).copy()
        rows[:, 0] = index
        indexed.append(rows.tobytes())
    assert official_map(accuracy_log(tmp_path / "shifted.json", indexed), data.root)[0] == 0.0
    relabelled = []
    for record in records:
        rows = np.frombuffer(record, np.float32).reshape(-1, 7).copy()
        rows[:, 6] = [{3: 0, 7: 1, 11: 2}[int(label)] for label in rows[:, 6]]
        relabelled.append(rows.tobytes())
    assert official_map(accuracy_log(tmp_path / "relabelled.json", relabelled), data.root)[0] == 0.0


def test_models_find_the_annotated_boxes(data: DetectionData, models: dict[str, Path]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(models["exact"]), providers=["CPUExecutionProvider"])
    for index, objects in enumerate(data.truth):
        if data.images[index]["width"] != data.size:
            continue  # the wide image's boxes are in resized pixels: the records below check it
        boxes, labels, scores = session.run(None, {"images": reference_input(data.image_path(index), data.size)})
        assert boxes.dtype == np.float32
        assert labels.dtype == np.int64
        assert list(scores) == sorted(scores, reverse=True)
        found = {int(label): box.tolist() for label, box, score in zip(labels, boxes, scores, strict=True) if score}
        assert found == {category: [x, y, x + w, y + h] for category, (x, y, w, h) in objects}
    assert reference_records(models["exact"], data) == truth_records(data)
    off = reference_records(models["off"], data)
    for got, expected in zip(off, truth_records(data, off=True), strict=True):
        np.testing.assert_allclose(unpack(got), unpack(expected), rtol=1e-6)
    assert unpack(off[2]) == []


def test_twin_has_retinanets_interface(tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(detection_model(tmp_path / "twin.onnx", 800)), providers=["CPUExecutionProvider"]
    )
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [("images", [1, 3, 800, 800], "tensor(float)")]
    assert [o.name for o in session.get_outputs()] == ["boxes", "labels", "scores"]
    boxes, labels, scores = session.run(None, {"images": np.zeros((1, 3, 800, 800), np.float32)})
    assert boxes.shape == (3, 4)
    assert labels.shape == scores.shape == (3,)
    assert not scores.any()


def official_script(folder: Path) -> Path:
    """accuracy-openimages.py from MLBOX_INFERENCE_SRC (a checkout, or a git directory)
    or the local mirror of github.com/mlcommons/inference."""
    source = Path(INFERENCE_SRC) if INFERENCE_SRC else MIRROR if MIRROR.is_dir() else None
    if source is None:
        pytest.skip("no checkout of github.com/mlcommons/inference: set MLBOX_INFERENCE_SRC to one")
    if (source / SCRIPT).is_file():
        return source / SCRIPT
    shown = subprocess.run(
        ["git", "--git-dir", str(source), "show", f"HEAD:{SCRIPT}"], capture_output=True, text=True, check=False
    )
    if shown.returncode:
        msg = f"{source} (MLBOX_INFERENCE_SRC or the mirror) holds no {SCRIPT}: {shown.stderr.strip()}"
        raise AssertionError(msg)
    script = folder / "accuracy-openimages.py"
    script.write_text(shown.stdout)
    return script


def run_official(script: Path, log: Path, openimages_dir: Path, work: Path) -> str:
    """The official script's mAP line; it writes openimages-results.json to its working directory."""
    work.mkdir()
    official = subprocess.run(
        [sys.executable, str(script), "--mlperf-accuracy-file", str(log), "--openimages-dir", str(openimages_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
    )
    assert official.returncode == 0, official.stderr[-3000:]
    lines = re.findall(r"^mAP=\S+%$", official.stdout, re.MULTILINE)
    assert len(lines) == 1, official.stdout
    return str(lines[0])


@pytest.mark.subprocess
@pytest.mark.parametrize("variant", ["exact", "off"])
def test_the_official_script_agrees_on_the_models_logs(
    variant: str, data: DetectionData, models: dict[str, Path], tmp_path: Path
) -> None:
    """Without the harness: the reference app's records for each model, scored by the
    official script, read as the re-implementation above reads them."""
    log = accuracy_log(tmp_path / "log.json", reference_records(models[variant], data))
    line = run_official(official_script(tmp_path), log, data.root, tmp_path / "work")
    assert line == official_map(log, data.root)[1]
    assert line == ("mAP=100.000%" if variant == "exact" else "mAP=46.667%")


@pytest.mark.subprocess
@pytest.mark.parametrize("variant", ["exact", "off"])
def test_harness_scores_as_the_official_script(
    variant: str, data: DetectionData, models: dict[str, Path], tmp_path: Path
) -> None:
    script = official_script(tmp_path)
    out = tmp_path / "out"
    bench = subprocess.run(
        [
            *(sys.executable, "-m", "mlbox_bench", "--modelpath", str(models[variant]), "--model-name", "retinanet"),
            *("--mode", "accuracy", "--dataset", str(data.root), "--output-dir", str(out), "--scenario", "Offline"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    log = out / "mlperf_log_accuracy.json"
    # The log holds what the reference app would write, sample for sample.
    written: dict[int, bytes] = {}
    for entry in json.loads(log.read_text()):
        written.setdefault(entry["qsl_idx"], bytes.fromhex(entry["data"]))
    expected = reference_records(models[variant], data)
    assert sorted(written) == list(range(len(expected)))
    for index, record in enumerate(expected):
        assert len(written[index]) == len(record), f"sample {index}"
        np.testing.assert_allclose(unpack(written[index]), unpack(record), rtol=1e-6, err_msg=f"sample {index}")
    line = run_official(script, log, data.root, tmp_path / "work")
    assert (out / "accuracy.txt").read_text().strip() == line
    # mlbox-bench's stand-in for the script, with the script's flags, prints the same line.
    ours = [sys.executable, "-m", "mlbox_bench.accuracy_openimages", "--mlperf-accuracy-file", str(log)]
    scored = subprocess.run([*ours, "--openimages-dir", str(data.root)], capture_output=True, text=True, check=True)
    assert scored.stdout.strip() == line
    assert line == official_map(log, data.root)[1]
    if variant == "exact":
        assert line == "mAP=100.000%"
    else:
        assert 0.0 < float(line[4:-1]) < 100.0
