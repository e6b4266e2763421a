"""Query sample libraries: what LoadGen's QSL loads into memory.

Loaded samples live in one contiguous array (``data``) with a map from QSL index to
row (``slot``), so a batch is a single gather. ``generation`` changes on every load,
which tells process workers to re-open the published copy.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from mlbox_bench.backend import ModelIO
from mlbox_bench.errors import BenchError
from mlbox_bench.preprocess import PREPROCESSING_VERSION, image_layout, preprocess_imagenet

log = logging.getLogger("mlbox-bench")


class SampleLibrary:
    """The part every QSL shares; subclasses fill rows in ``_rows``."""

    kind = "samples"

    def __init__(self, io: ModelIO, count: int) -> None:
        self.io = io
        self.count = count
        self.data = np.empty((0, *io.input_shape), dtype=io.input_dtype)
        self.slot = np.full(count, -1, dtype=np.int64)  # QSL index -> row in self.data
        self.generation = 0
        self.labels: np.ndarray | None = None  # ground truth for accuracy, when known

    def load(self, indices: list[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.data = np.ascontiguousarray(self._rows(idx))
        self.slot[:] = -1
        self.slot[idx] = np.arange(len(idx))
        self.generation += 1

    def unload(self, indices: list[int]) -> None:
        self.slot[np.asarray(indices, dtype=np.int64)] = -1

    def rows(self, indices: np.ndarray) -> np.ndarray:
        rows: np.ndarray = self.slot[indices]
        if (rows[0] if len(rows) == 1 else rows.min(initial=0)) < 0:
            msg = "LoadGen asked for a sample that is not loaded (a harness bug)"
            raise BenchError(msg)
        return rows

    def batch(self, indices: np.ndarray | list[int]) -> np.ndarray:
        if isinstance(indices, list) and len(indices) == 1:  # one sample (Server, SingleStream): a view
            row = int(self.slot[indices[0]])
            if row < 0:
                msg = "LoadGen asked for a sample that is not loaded (a harness bug)"
                raise BenchError(msg)
            return self.data[row : row + 1]
        return take_rows(self.data, self.rows(np.asarray(indices)))

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SyntheticData(SampleLibrary):
    """Deterministic random inputs shaped like the model's input (no dataset needed).

    Image-like models get 8-bit pixel values minus the ImageNet channel means, which is
    what preprocessed images look like; generating bytes is ~10x faster than normals,
    which matters when mlperf.conf asks for 1024 ResNet50 samples (616 MB).
    """

    kind = "synthetic"

    def __init__(self, io: ModelIO, count: int, seed: int = 0) -> None:
        super().__init__(io, count)
        self.seed = seed

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        shape = (len(indices), *self.io.input_shape)
        if np.issubdtype(self.io.input_dtype, np.floating):
            rows = rng.integers(0, 256, size=shape, dtype=np.uint8).astype(self.io.input_dtype)
            rows -= self.io.input_dtype(118.0)  # near the mean of ImageNet's channel means
            return rows
        info = np.iinfo(self.io.input_dtype)
        return rng.integers(max(info.min, 0), min(info.max, 255), size=shape, dtype=self.io.input_dtype)


class ImagenetData(SampleLibrary):
    """ImageNet layout: ``DIR/val_map.txt`` lists ``<file> <label>`` per line; images are
    preprocessed as MLPerf's reference does and cached as .npy beside nothing of the user's:
    the cache lives in ``preprocessed_dir`` (the dataset may be mounted read-only)."""

    kind = "imagenet"

    def __init__(self, io: ModelIO, root: Path, limit: int | None, preprocessed_dir: Path | None) -> None:
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
        if io.input_dtype != np.float32:
            msg = f"--dataset needs a float32 image input; the model's input {io.input_name} is {io.input_dtype}"
            raise BenchError(msg)
        self.layout, self.size = image_layout(io.input_shape)
        super().__init__(io, len(files))
        self.root = root
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.cache = (
            _cache_root(preprocessed_dir, root) / f"imagenet-{self.layout}-{self.size}-v{PREPROCESSING_VERSION}"
        )

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.io.input_shape), dtype=np.float32)
        made = 0
        for row, index in enumerate(indices):
            out[row], fresh = self._sample(self.files[index])
            made += fresh
        if made:
            log.info("preprocessed %d image(s) into %s", made, self.cache)
        return out

    def _sample(self, name: str) -> tuple[np.ndarray, bool]:
        source = self.root / name
        cached = self.cache / (name + ".npy")
        try:
            if cached.stat().st_mtime >= source.stat().st_mtime:
                return np.load(cached), False
        except (OSError, ValueError):
            pass  # not cached yet, or unreadable: make it again
        sample = preprocess_imagenet(source, self.size, self.layout)
        _save_atomic(cached, sample)
        return sample, True


def take_rows(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The batch of these rows: a view when they are consecutive (no copy; batches are
    planned that way, see harness.contiguous_batches), else a gather."""
    first = int(rows[0])
    if len(rows) == 1:
        return data[first : first + 1]
    if rows[-1] - first == len(rows) - 1 and (len(rows) < 3 or bool(np.all(np.diff(rows) == 1))):
        return data[first : first + len(rows)]
    batch: np.ndarray = data[rows]
    return batch


def _read_val_map(path: Path) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
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


def _cache_root(preprocessed_dir: Path | None, dataset: Path) -> Path:
    """Where preprocessed samples go: the given dir, else ~/.cache/mlbox-bench if it is
    writable (a container run as --user has no home), else a temp dir."""
    import hashlib

    key = hashlib.sha256(str(dataset.resolve()).encode()).hexdigest()[:12]
    if preprocessed_dir is not None:
        return preprocessed_dir / key
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlbox-bench"
    for candidate in (home, Path(tempfile.gettempdir()) / "mlbox-bench"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate / key
        except OSError:
            continue
    msg = "no writable place for preprocessed samples: pass --preprocessed-dir DIR"
    raise BenchError(msg)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    from mlbox_bench.results import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda out: np.save(out, array), mode=0o600)  # a private cache
    except OSError as err:
        msg = f"cannot write preprocessed samples to {path.parent}: {err.strerror} (see --preprocessed-dir)"
        raise BenchError(msg) from None
