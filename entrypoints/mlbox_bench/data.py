"""Query sample libraries: what LoadGen's QSL loads into memory."""

from __future__ import annotations

import numpy as np

from mlbox_bench.backend import ModelIO


class SyntheticData:
    """Deterministic random inputs shaped like the model's input (no dataset needed).

    Loaded samples live in one contiguous array so a batch is a single gather.
    """

    def __init__(self, io: ModelIO, count: int, seed: int = 0) -> None:
        self.io = io
        self.count = count
        self.seed = seed
        self.data = np.empty((0, *io.input_shape), dtype=io.input_dtype)
        self.slot = np.full(count, -1, dtype=np.int64)  # QSL index -> row in self.data

    def load(self, indices: list[int]) -> None:
        rng = np.random.default_rng(self.seed)
        rows = rng.standard_normal((len(indices), *self.io.input_shape)).astype(self.io.input_dtype, copy=False)
        self.data = rows
        self.slot[:] = -1
        self.slot[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))

    def unload(self, indices: list[int]) -> None:
        self.slot[np.asarray(indices, dtype=np.int64)] = -1

    def batch(self, indices: np.ndarray) -> np.ndarray:
        batch: np.ndarray = self.data[self.slot[indices]]
        return batch
