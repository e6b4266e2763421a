"""What a batch's answers look like to LoadGen: one response per sample.

The task turns a backend's raw outputs into ``Responses`` (see tasks/); runners hand them
to LoadGen's ``QuerySamplesComplete`` without knowing what they mean. A response is a run
of bytes LoadGen logs in accuracy mode: one float32 label for a classifier, seven float32s
per detection for a detector (and none when nothing was found), token ids for a language
model. Rows of one array keep the hot path to one allocation per batch; ``sizes`` says how
many bytes of each row are the response when they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# Sample ids and QSL indices: numpy arrays, or LoadGen's own lists for one-sample queries.
Ids = np.ndarray | list[int]


@dataclass(frozen=True, slots=True)
class Responses:
    rows: np.ndarray  # (samples, width), C-contiguous: row k is sample k's response, padded
    sizes: np.ndarray | None = None  # bytes of each row that are its response; None: whole rows

    def __len__(self) -> int:
        return len(self.rows)

    def part(self, start: int, stop: int) -> Responses:
        """The responses of samples ``start`` to ``stop`` (a view: no copy)."""
        return Responses(self.rows[start:stop], None if self.sizes is None else self.sizes[start:stop])


def padded(records: list[np.ndarray], dtype: str = "float32") -> Responses:
    """Responses of different lengths (1-D arrays) as padded rows with their sizes."""
    width = max((len(r) for r in records), default=0)
    rows = np.zeros((len(records), width), dtype=dtype)
    for k, record in enumerate(records):
        rows[k, : len(record)] = record
    if all(len(r) == width for r in records):
        return Responses(rows)
    return Responses(rows, np.array([len(r) * rows.itemsize for r in records], dtype=np.int64))


class Answer(Protocol):
    """A task bound to one model's outputs (picklable: process workers answer too)."""

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs it reads, in the order ``respond`` gets them (Session.select)."""
        ...

    def respond(self, raw: tuple[np.ndarray, ...], indices: Ids) -> Responses:
        """The responses to a batch: ``raw`` is what the session returned for the samples
        at these QSL ``indices``, in order."""
        ...

    def fallback(self, count: int) -> Responses:
        """What a failed batch answers (LoadGen waits for every sample; the run fails after)."""
        ...

    def facts(self) -> dict[str, object]:
        """What the task read from the model (result.json's ``model``)."""
        ...


Complete = Callable[[Ids, Responses], None]


def loadgen_responses(lg: Any, ids: Ids, responses: Responses) -> list[Any]:
    """LoadGen's QuerySampleResponse for each sample: a pointer into ``responses.rows``
    and the response's size. The rows must stay alive until LoadGen has copied them
    (QuerySamplesComplete returns)."""
    rows = responses.rows
    base, stride = rows.ctypes.data, rows.strides[0]
    id_list = ids if isinstance(ids, list) else ids.tolist()
    if responses.sizes is None:
        size = rows.shape[1] * rows.itemsize
        return [lg.QuerySampleResponse(q, base + k * stride, size) for k, q in enumerate(id_list)]
    sizes = responses.sizes.tolist()
    return [lg.QuerySampleResponse(q, base + k * stride, sizes[k]) for k, q in enumerate(id_list)]
