"""Image classification (ResNet-50 on ImageNet), as MLCommons' reference app runs it.

A response is the sample's label as one float32, after the model's offset (MLPerf's
ResNet-50 files have 1001 classes, 0 the background: ArgMax - 1 is the ImageNet label),
which is what accuracy-imagenet.py reads with its defaults. Accuracy is top-1 over
val_map.txt's labels (accuracy.py is the official script's twin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlbox_bench.data import ImageFiles, SampleLibrary, SyntheticData
from mlbox_bench.errors import BenchError
from mlbox_bench.preprocess import preprocess_imagenet
from mlbox_bench.responses import Ids, Responses
from mlbox_bench.tasks import Score, refuse

if TYPE_CHECKING:
    from mlbox_bench.backends import ModelIO, Output
    from mlbox_bench.settings import Settings


# Pixel values (0-255) -> what each preprocessing profile leaves of an average image, for
# synthetic samples: ``pixels * scale + shift``.
PROFILES = {
    "mlperf": (1.0, -118.0),  # the channel means subtracted (near their mean)
    "torchvision": (1.0 / (255.0 * 0.226), -0.449 / 0.226),  # /255, then ImageNet's mean and std
}


def offset_for(classes: int | None) -> int:
    """MLPerf's ResNet50 files have 1001 classes (0 = background): ArgMax - 1 is the
    ImageNet label. torchvision's have 1000."""
    return -1 if classes == 1001 else 0


def to_labels(raw: np.ndarray, count: int, offset: int) -> np.ndarray:
    """The response for each of ``count`` samples as MLCommons' reference app writes it:
    the label after the model's offset, as float32, so accuracy-imagenet.py with its
    defaults reads the accuracy log. An output with one score per class is reduced to its
    ArgMax first (an integer output's first column is its label)."""
    out = raw.reshape(count, -1)
    if out.shape[1] > 1 and np.issubdtype(out.dtype, np.floating):
        out = out.argmax(axis=1).reshape(count, 1)
    labels = np.ascontiguousarray(out[:, :1], dtype=np.float32)
    if offset:
        labels += np.float32(offset)
    return labels


@dataclass(frozen=True)
class Labels:
    """The classification task bound to a model: which output is the answer, and its offset."""

    output: str
    offset: int

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,)

    def respond(self, raw: tuple[np.ndarray, ...], indices: Ids) -> Responses:
        return Responses(to_labels(raw[0], len(indices), self.offset))

    def fallback(self, count: int) -> Responses:
        return Responses(np.zeros((count, 1), dtype=np.float32))

    def facts(self) -> dict[str, object]:
        return {"answer_output": self.output, "label_offset": self.offset}


class Classification:
    name = "classification"
    metric = "top1_accuracy"
    profiles = tuple(PROFILES)
    max_batch = None

    def answer(self, io: ModelIO) -> Labels:
        from mlbox_bench.tasks.detection import OUTPUTS as DETECTOR_OUTPUTS

        names = {o.name for o in io.outputs}
        expected = "one output with the class label (an integer, as MLPerf's ArgMax) or one score per class"
        if names >= set(DETECTOR_OUTPUTS):
            hint = "they are a detector's: run it with --task detection (--model-name retinanet does)"
            raise refuse(self.name, io, expected, hint)
        if not io.outputs:
            raise refuse(self.name, io, expected)
        pick = next((o for o in io.outputs if o.name.split("/")[-1].startswith("ArgMax")), None)
        pick = pick or next((o for o in io.outputs if _integer(o)), io.outputs[0])
        if not _answers_labels(pick):
            raise refuse(self.name, io, expected, f"{pick.describe()} is neither")
        classes = {o.index_range for o in io.outputs} | {o.shape[-1] for o in io.outputs if len(o.shape) >= 2}
        return Labels(pick.name, offset_for(1001 if 1001 in classes else None))

    def samples(self, s: Settings, io: ModelIO, count: int) -> SampleLibrary:
        profile = s.preprocessing or "mlperf"
        if s.dataset is not None:
            prep = Path(s.preprocessed_dir) if s.preprocessed_dir else None
            return ImagenetData(io, Path(s.dataset), s.samples, prep, s.data_format, profile)
        return SyntheticData(io, s.samples or count, affine=PROFILES[profile], profile=profile)

    def score(self, log_path: Path, data: SampleLibrary) -> Score | None:
        from mlbox_bench.accuracy import score

        if data.labels is None:
            return None
        acc = score(log_path, [int(x) for x in data.labels])
        return Score(acc.line(), acc.top1, {"top1": acc.top1, "good": acc.good, "total": acc.total})


def _integer(output: Output) -> bool:
    return output.kind in ("i", "u")


def _answers_labels(output: Output) -> bool:
    """A label per sample ([N] or [N,1] integers) or one score per class ([N,C] floats);
    an output of unknown rank (the library does not say) is taken at its word."""
    shape = output.shape
    if output.kind not in ("f", "i", "u"):
        return False
    if not shape:
        return True
    if _integer(output):
        return len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None))
    return len(shape) == 2 and shape[1] != 1


class ImagenetData(ImageFiles):
    """ImageNet layout: ``DIR/val_map.txt`` lists ``<file> <label>`` per line; images are
    preprocessed as MLPerf's reference does (the model format's profile)."""

    kind = "imagenet"

    def __init__(
        self,
        io: ModelIO,
        root: Path,
        limit: int | None,
        preprocessed_dir: Path | None,
        layout: str | None = None,
        profile: str | None = "mlperf",
    ) -> None:
        val_map = root / "val_map.txt"
        if not val_map.is_file():
            msg = f"--dataset {root}: no val_map.txt there (ImageNet layout: images plus val_map.txt)"
            raise BenchError(msg)
        files, labels = _read_val_map(val_map)
        if limit is not None:
            files, labels = files[:limit], labels[:limit]
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            msg = f"--dataset {root}: {len(missing)} image(s) in val_map.txt are missing, first {missing[0]}"
            raise BenchError(msg)
        if io.input_dtype != np.float32 and io.input_quantization is None:
            msg = f"--dataset needs a float32 image input; the model's input {io.input_name} is {io.input_dtype}"
            raise BenchError(msg + " without quantization parameters")
        self.profile_name = profile or "mlperf"
        super().__init__(io, root, files, f"imagenet-{self.profile_name}", (preprocessed_dir, root), layout)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.profile = self.profile_name

    def preprocess(self, source: Path) -> np.ndarray:
        return preprocess_imagenet(source, self.size, self.layout, self.profile_name)


def _read_val_map(path: Path) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    from mlbox_bench.files import read_user_text

    for number, line in enumerate(read_user_text(path, "--dataset").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or ".." in Path(parts[0]).parts:
            msg = f"{path} line {number}: expected '<image file> <label>', got {line.strip()!r}"
            raise BenchError(msg)
        files.append(parts[0])
        labels.append(int(parts[1]))
    if not files:
        msg = f"{path} lists no images"
        raise BenchError(msg)
    return files, labels


TASK = Classification()
