"""Query sample libraries: what LoadGen's QSL loads into memory.

The generic part: a task (see tasks/) makes the library of its dataset, or synthetic
samples shaped like the model's input, and knows what its ground truth is. Loaded
samples live in one contiguous array (``data``) with a map from QSL index to row
(``slot``), so a batch is a single gather. ``generation`` changes on every load,
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
from mlbox_bench.preprocess import PREPROCESSING_VERSION, image_layout

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
        self.labels: np.ndarray | None = None  # a classifier's ground truth, when known
        self.profile: str | None = None  # the preprocessing its samples had (result.json says)

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
    random block plus i // 64, in 8-bit pixel values, then ``pixels * scale + shift`` as
    the task's preprocessing profile leaves images (ImageNet's: minus the channel means;
    OpenImages': / 255). Made this way, mlperf.conf's 1024 ResNet50 samples (616 MB) take
    a fraction of a second.
    """

    kind = "synthetic"
    BLOCK = 64

    def __init__(
        self, io: ModelIO, count: int, seed: int = 0, affine: tuple[float, float] = (1.0, -118.0), profile: str = ""
    ) -> None:
        super().__init__(io, count)
        self.scale, self.shift = affine
        self.profile = profile or None
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
        if self.scale != 1.0:
            pixels *= one(self.scale)
        if self.shift:
            pixels += one(self.shift)
        return pixels


class ImageFiles(SampleLibrary):
    """A dataset of image files (``files`` under ``images``), each preprocessed once for
    the model's input by the task's ``preprocess`` and cached as float32 .npy beside
    nothing of the user's: the cache lives in ``preprocessed_dir`` (the dataset may be
    mounted read-only), keyed by the task's profile, the layout and the size."""

    def __init__(
        self,
        io: ModelIO,
        images: Path,
        files: list[str],
        key: str,
        cache_of: tuple[Path | None, Path],
        layout: str | None,
    ) -> None:
        self.layout, self.size = image_layout(io.input_shape)
        if layout is not None and layout != self.layout:
            msg = (
                f"--data-format {layout}: the model's input {io.input_name} {io.input_shape} is {self.layout}; "
                f"pass --data-format {self.layout} (or leave it out: it is read from the model)"
            )
            raise BenchError(msg)
        super().__init__(io, len(files))
        self.images = images
        self.files = files
        preprocessed_dir, dataset = cache_of
        self.cache = (
            _cache_root(preprocessed_dir, dataset) / f"{key}-{self.layout}-{self.size}-v{PREPROCESSING_VERSION}"
        )

    def preprocess(self, source: Path) -> np.ndarray:
        """One image file as the task's reference preprocesses it (float32)."""
        raise NotImplementedError

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        """Preprocessed samples, in the model's input type: a quantized input's are
        quantized here, once per load."""
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
        source = self.images / name
        cached = self.cache / (name + ".npy")
        try:
            if cached.stat().st_mtime >= source.stat().st_mtime:
                return np.load(cached), False
        except (OSError, ValueError):
            pass  # not cached yet, or unreadable: make it again
        sample = self.preprocess(source)
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
