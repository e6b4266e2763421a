"""Object detection (RetinaNet on OpenImages-MLPerf), as MLCommons' reference app runs it
(vision/classification_and_detection, profile ``retinanet-onnxruntime``).

The model (MLCommons' resnext50_32x4d_fpn.onnx) answers one image per run: outputs
``boxes`` ([N,4]: xmin, ymin, xmax, ymax in input pixels), ``labels`` ([N], the dataset's
category ids) and ``scores`` ([N], best first). A sample's response, as
``PostProcessOpenImagesRetinanet`` writes it, is seven float32s per detection until the
first score under 0.05: ``[sample index, ymin, xmin, ymax, xmax, score, label]`` with the
box divided by the input's height and width; no detection, no bytes. Accuracy is COCO mAP
(pycocotools' COCOeval) over the dataset's COCO-format annotations, computed exactly as
tools/accuracy-openimages.py computes it with its default flags.
"""

from __future__ import annotations

import contextlib
import io as text_io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench.data import ImageFiles, SampleLibrary, SyntheticData
from mlbox_bench.errors import BenchError
from mlbox_bench.preprocess import image_layout, preprocess_openimages
from mlbox_bench.responses import Ids, Responses, padded
from mlbox_bench.tasks import Score, refuse

if TYPE_CHECKING:
    from mlbox_bench.backends import ModelIO
    from mlbox_bench.settings import Settings


SCORE_THRESHOLD = 0.05  # the reference's PostProcessOpenImagesRetinanet(False, 0.05, ...)
OUTPUTS = ("boxes", "labels", "scores")  # the MLCommons file's output names
ANNOTATIONS = Path("annotations") / "openimages-mlperf.json"
IMAGES = Path("validation") / "data"
PROFILE = "openimages"  # pre_process_openimages_retinanet: resize, / 255, no mean
EXPECTED = "outputs boxes (float [N,4]), labels (integer [N]) and scores (float [N]), as MLCommons' RetinaNet has"


@dataclass(frozen=True)
class Detections:
    """The detection task bound to a model: where its three outputs are, and the input's
    size that the boxes are divided by."""

    height: int
    width: int
    outputs: tuple[str, ...] = ("boxes", "labels", "scores")  # what the session returns, in this order

    def respond(self, raw: tuple[np.ndarray, ...], indices: Ids) -> Responses:
        if len(indices) != 1:  # the outputs have no batch dimension (see max_batch)
            msg = f"a detection model answers one image per run, got a batch of {len(indices)}"
            raise BenchError(msg)
        return padded([self.records(raw, int(indices[0]))])

    def records(self, raw: tuple[np.ndarray, ...], index: int) -> np.ndarray:
        """One image's records, flat: 7 float32s per detection kept."""
        boxes = np.asarray(raw[0], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(raw[1]).reshape(-1)
        scores = np.asarray(raw[2], dtype=np.float32).reshape(-1)
        # The reference stops at the first score under the threshold (scores come sorted).
        below = np.flatnonzero(scores < np.float32(SCORE_THRESHOLD))
        kept = int(below[0]) if len(below) else len(scores)
        out = np.empty((kept, 7), dtype=np.float32)
        out[:, 0] = index
        out[:, 1] = boxes[:kept, 1] / np.float32(self.height)
        out[:, 2] = boxes[:kept, 0] / np.float32(self.width)
        out[:, 3] = boxes[:kept, 3] / np.float32(self.height)
        out[:, 4] = boxes[:kept, 2] / np.float32(self.width)
        out[:, 5] = scores[:kept]
        out[:, 6] = labels[:kept].astype(np.int64)  # float(int(label)), as the reference
        return out.reshape(-1)

    def fallback(self, count: int) -> Responses:
        return Responses(np.zeros((count, 0), dtype=np.float32))  # "no detections"

    def facts(self) -> dict[str, object]:
        return {
            "answer_outputs": list(OUTPUTS),
            "box_scale": [self.height, self.width],
            "score_threshold": SCORE_THRESHOLD,
        }


class Detection:
    name = "detection"
    metric = "mAP"
    profiles = (PROFILE,)
    max_batch = 1  # the reference profile's max batch size: the outputs are one image's

    def answer(self, io: ModelIO) -> Detections:
        by_name = {o.name: o for o in io.outputs}
        if not set(OUTPUTS) <= set(by_name):
            raise refuse(self.name, io, EXPECTED, _classifier_hint(io))
        boxes, labels, scores = (by_name[n] for n in OUTPUTS)
        floats = boxes.kind == scores.kind == "f"
        shapes = boxes.shape[-1:] in ((4,), (None,)) and all(len(o.shape) <= 1 for o in (labels, scores))
        if not floats or labels.kind not in ("i", "u") or not shapes:
            raise refuse(self.name, io, EXPECTED)
        try:
            layout, size = image_layout(io.input_shape)
        except BenchError:
            msg = f"the model's input {io.input_name} {io.input_shape} is not a square RGB image (3,S,S or S,S,3)"
            raise BenchError(msg + ": the detection task feeds images") from None
        del layout
        if size == 1:  # a dimension the file leaves open reads as 1 (see the backends)
            msg = f"the model's input {io.input_name} {io.input_shape} has no fixed height and width"
            raise BenchError(msg + ": the boxes are scaled by them (MLCommons' RetinaNet: 800x800)")
        return Detections(size, size, OUTPUTS)

    def samples(self, s: Settings, io: ModelIO, count: int) -> SampleLibrary:
        if s.dataset is not None:
            if s.mode == "accuracy":
                _pycocotools()  # before the run, not after it
            prep = Path(s.preprocessed_dir) if s.preprocessed_dir else None
            return OpenImagesData(io, Path(s.dataset), s.samples, prep, s.data_format)
        return SyntheticData(io, s.samples or count, affine=(1.0 / 255.0, 0.0), profile=PROFILE)

    def score(self, log_path: Path, data: SampleLibrary) -> Score | None:
        if not isinstance(data, OpenImagesData):
            return None
        return mean_average_precision(log_path, data.annotations)


def _classifier_hint(io: ModelIO) -> str:
    """Say it is a classifier only when the classification task would take it."""
    from mlbox_bench.tasks.classification import TASK as CLASSIFICATION

    try:
        CLASSIFICATION.answer(io)
    except BenchError:
        return ""
    return "a classifier's outputs: run it with --task classification"


class OpenImagesData(ImageFiles):
    """The layout MLCommons' OpenImages-MLPerf tools make: ``DIR/annotations/openimages-mlperf.json``
    (COCO format) and the images in ``DIR/validation/data/``. QSL index i is the i-th
    entry of the annotations' ``images``, as the accuracy script reads it."""

    kind = "openimages"

    def __init__(
        self, io: ModelIO, root: Path, limit: int | None, preprocessed_dir: Path | None, layout: str | None = None
    ) -> None:
        self.annotations = root / ANNOTATIONS
        if not self.annotations.is_file():
            msg = (
                f"--dataset {root}: no {ANNOTATIONS} there (the OpenImages-MLPerf layout: {ANNOTATIONS} and {IMAGES}/)"
            )
            raise BenchError(msg)
        files = _image_files(self.annotations)
        if limit is not None:
            files = files[:limit]
        missing = [f for f in files if not (root / IMAGES / f).is_file()]
        if missing:
            msg = f"--dataset {root}: {len(missing)} image(s) of {ANNOTATIONS} are not in {IMAGES}/, first {missing[0]}"
            raise BenchError(msg)
        if io.input_dtype != np.float32:
            msg = f"--dataset needs a float32 image input; the model's input {io.input_name} is {io.input_dtype}"
            raise BenchError(msg)
        super().__init__(io, root / IMAGES, files, PROFILE, (preprocessed_dir, root), layout)
        self.profile = PROFILE

    def preprocess(self, source: Path) -> np.ndarray:
        return preprocess_openimages(source, self.size, self.size, self.layout)


def _image_files(annotations: Path) -> list[str]:
    return [str(image["file_name"]) for image in _annotations(annotations)["images"]]


def _annotations(annotations: Path) -> dict[str, Any]:
    """The COCO-format annotations, their shape checked in words (pycocotools would assert
    or raise KeyError on them, after a whole accuracy run)."""
    from mlbox_bench.files import read_user_text

    expected = "COCO-format annotations: images (id, file_name, height, width), annotations and categories"
    try:
        doc: dict[str, Any] = json.loads(read_user_text(annotations, "--dataset"))
    except ValueError as err:
        msg = f"{annotations}: not JSON ({err}); expected {expected}"
        raise BenchError(msg) from None
    lists = isinstance(doc, dict) and all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories"))
    if not lists:
        msg = f"{annotations}: expected {expected} (lists), as MLCommons' openimages.py writes them"
        raise BenchError(msg)
    try:
        files = [str(image["file_name"]) for image in doc["images"]]
        for image in doc["images"]:
            int(image["id"]), int(image["height"]), int(image["width"])
    except (ValueError, KeyError, TypeError) as err:
        what = f"no {err}" if isinstance(err, KeyError) else str(err)
        msg = f"{annotations}: an image entry is not (id, file_name, height, width): {what}"
        raise BenchError(msg) from None
    unsafe = next((f for f in files if Path(f).is_absolute() or ".." in Path(f).parts), None)
    if unsafe is not None:
        msg = f"{annotations}: image file name {unsafe!r} leaves the dataset directory"
        raise BenchError(msg)
    if not files:
        msg = f"{annotations} lists no images"
        raise BenchError(msg)
    return doc


def _logged(log_path: Path, count: int) -> list[tuple[int, bytes]]:
    """(qsl_idx, response bytes) of each accuracy-log entry, or an error naming the entry."""
    try:
        entries = json.loads(log_path.read_text(encoding="utf-8"))
        logged = [(int(e["qsl_idx"]), bytes.fromhex(e["data"])) for e in entries]
    except (ValueError, KeyError, TypeError) as err:
        msg = f"{log_path}: not a LoadGen accuracy log (entries of qsl_idx and hex data): {err}"
        raise BenchError(msg) from None
    outside = next((i for i, _ in logged if not 0 <= i < count), None)
    if outside is not None:
        msg = f"{log_path}: qsl_idx {outside} is not an image of the annotations (they list {count})"
        raise BenchError(msg)
    if any(len(data) % 4 for _, data in logged):
        msg = f"{log_path}: a response is not float32 records (its size is not a multiple of 4 bytes)"
        raise BenchError(msg)
    return logged


def _pycocotools() -> tuple[Any, Any]:
    """pycocotools' COCO and COCOeval, or an error that says how to get them."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        msg = (
            "scoring detection accuracy needs pycocotools (MLCommons' accuracy script uses it): pip install pycocotools"
        )
        raise BenchError(msg) from None
    return COCO, COCOeval


def mean_average_precision(log_path: Path, annotations: Path, detections_file: Path | None = None) -> Score:
    """tools/accuracy-openimages.py with its default flags: each logged sample (once) is
    image ``images[qsl_idx]``; each record's box is scaled by that image's height and
    width and handed to COCOeval as [x, y, w, h] with the record's label as the category;
    the evaluation covers the logged images only. Its line: ``mAP=<percent>%``. With
    ``detections_file``, the detections are written there as the script's --output-file."""
    coco, cocoeval = _pycocotools()
    truth = coco()  # COCO(path) is json.load, then createIndex: the file is read once, here
    truth.dataset = _annotations(annotations)
    quiet = text_io.StringIO()  # pycocotools prints its progress: keep stdout for the result path
    with contextlib.redirect_stdout(quiet):
        truth.createIndex()
    images = truth.dataset["images"]
    count = len(images)
    seen: set[int] = set()
    image_ids: set[int] = set()
    detections: list[dict[str, Any]] = []
    mismatched = 0
    for index, data in _logged(log_path, count):
        if index in seen:  # LoadGen may log a sample twice: once, like the reference
            continue
        seen.add(index)
        image = images[index]
        image_ids.add(image["id"])
        records = np.frombuffer(data, np.float32)
        if len(records) < 7:
            continue
        rows = records[: len(records) // 7 * 7].reshape(-1, 7)
        mismatched += int(np.count_nonzero(rows[:, 0].astype(np.int64) != index))
        # float32 arithmetic, as the script's (numpy scalars times Python ints).
        height, width = np.float32(image["height"]), np.float32(image["width"])
        ymin, xmin, ymax, xmax = rows[:, 1] * height, rows[:, 2] * width, rows[:, 3] * height, rows[:, 4] * width
        for k in range(len(rows)):
            box = [float(xmin[k]), float(ymin[k]), float(xmax[k] - xmin[k]), float(ymax[k] - ymin[k])]
            detections.append(
                {"image_id": image["id"], "category_id": int(rows[k, 6]), "bbox": box, "score": float(rows[k, 5])}
            )
    if detections_file is not None:
        from mlbox_bench.files import write_text_atomic

        write_text_atomic(detections_file, json.dumps(detections, sort_keys=True, indent=4))
    facts: dict[str, object] = {"images": len(image_ids), "detections": len(detections)}
    if mismatched:
        facts["records_of_another_sample"] = mismatched  # the script prints an ERROR line for each
    if not detections:  # COCO.loadRes cannot take an empty list; nothing found scores 0
        return Score("mAP=0.000%", 0.0, {**facts, "mAP": 0.0})
    with contextlib.redirect_stdout(quiet):
        found = truth.loadRes(detections)
        evaluation = cocoeval(truth, found, iouType="bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    value = float(evaluation.stats[0])
    return Score(f"mAP={100.0 * value:.3f}%", value, {**facts, "mAP": value})


TASK = Detection()
