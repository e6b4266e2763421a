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

from mlbox_bench.backends import ModelIO
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
        """Make these samples the loaded set. Samples are made once: a set that is already
        loaded (calibration loads LoadGen's performance set before LoadGen asks for it)
        costs nothing, and rows already in memory are reused."""
        idx = np.asarray(indices, dtype=np.int64)
        loaded = self.slot >= 0
        if int(loaded.sum()) == len(np.unique(idx)) and bool(loaded[idx].all()):
            return
        have = loaded[idx]
        if have.any():
            rows = np.empty((len(idx), *self.io.input_shape), dtype=self.io.input_dtype)
            rows[have] = self.data[self.slot[idx[have]]]
            if not have.all():
                rows[~have] = self._rows(idx[~have])
        else:
            rows = self._rows(idx)  # no copy: peak memory is the loaded set once
        self.data = rows
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

    Sample i is the same in every run and every load (TEST01 compares a sample's answer
    in accuracy mode with its answer in a performance run): it is row i % 64 of a small
    random block plus i // 64, in 8-bit pixel values. Image-like models get those values
    minus the ImageNet channel means, which is what preprocessed images look like. Made
    this way, mlperf.conf's 1024 ResNet50 samples (616 MB) take a fraction of a second.
    """

    kind = "synthetic"
    BLOCK = 64

    def __init__(self, io: ModelIO, count: int, seed: int = 0, profile: str | None = "mlperf") -> None:
        super().__init__(io, count)
        self.profile = profile
        rng = np.random.default_rng(seed)
        self._block = rng.integers(0, 256, size=(min(count, self.BLOCK), *io.input_shape), dtype=np.uint8)

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.io.input_shape), dtype=self.io.input_dtype)
        block = len(self._block)
        shift = (indices // block).astype(np.uint8).reshape(-1, *([1] * len(self.io.input_shape)))
        quantized = self.io.input_quantization is not None
        for start in range(0, len(indices), block):  # bounded temporaries
            part = slice(start, start + block)
            pixels = self._block[indices[part] % block] + shift[part]  # uint8: wraps, stays a pixel
            # A quantized input gets the float samples, quantized as the model's input says.
            out[part] = self.io.prepare(self._profiled(pixels.astype(np.float32))) if quantized else pixels
        if np.issubdtype(self.io.input_dtype, np.floating):
            self._profiled(out)
        return out

    def _profiled(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel values (floats, in place) as the preprocessing profile leaves images."""
        one = pixels.dtype.type
        if self.profile == "torchvision":  # /255, then near ImageNet's mean and standard deviation
            pixels *= one(1.0 / (255.0 * 0.226))
            pixels -= one(0.449 / 0.226)
        else:
            pixels -= one(118.0)  # near the mean of ImageNet's channel means
        return pixels


class ImagenetData(SampleLibrary):
    """ImageNet layout: ``DIR/val_map.txt`` lists ``<file> <label>`` per line; images are
    preprocessed as MLPerf's reference does and cached as .npy beside nothing of the user's:
    the cache lives in ``preprocessed_dir`` (the dataset may be mounted read-only)."""

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
        self.layout, self.size = image_layout(io.input_shape)
        if layout is not None and layout != self.layout:
            msg = (
                f"--data-format {layout}: the model's input {io.input_name} {io.input_shape} is {self.layout}; "
                f"pass --data-format {self.layout} (or leave it out: it is read from the model)"
            )
            raise BenchError(msg)
        super().__init__(io, len(files))
        self.root = root
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.profile = profile or "mlperf"
        key = f"imagenet-{self.profile}-{self.layout}-{self.size}-v{PREPROCESSING_VERSION}"
        self.cache = _cache_root(preprocessed_dir, root) / key

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        """Preprocessed samples (cached as float32), in the model's input type: a quantized
        input's are quantized here, once per load."""
        out = np.empty((len(indices), *self.io.input_shape), dtype=self.io.input_dtype)
        made = 0
        for row, index in enumerate(indices):
            sample, fresh = self._sample(self.files[index])
            out[row] = self.io.prepare(sample)
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
        sample = preprocess_imagenet(source, self.size, self.layout, self.profile)
        _save_atomic(cached, sample)
        return sample, True


def take_rows(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The batch of these rows: a view when they are consecutive (no copy; batches are
    planned that way, see run.contiguous_batches), else a gather."""
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
    from mlbox_bench.files import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda out: np.save(out, array), mode=0o600)  # a private cache
    except OSError as err:
        msg = f"cannot write preprocessed samples to {path.parent}: {err.strerror} (see --preprocessed-dir)"
        raise BenchError(msg) from None
