"""The task seam: what a model's task (classification, detection) owns in a run.

A task module (``mlbox_bench.tasks.<name>``) provides ``TASK``, an object with:

- ``answer(io) -> Answer``: check that the model's outputs fit the task (refuse
  it before LoadGen starts, naming what was expected and found) and bind the task to
  them: raw outputs -> LoadGen responses as MLCommons' reference app writes them, and the
  response of a failed batch (see responses.py);
- ``samples(settings, io, count) -> SampleLibrary``: the dataset reader for ``--dataset``
  (preprocessing as the reference does for this model), or synthetic samples;
- ``score(log, data) -> Score | None``: the accuracy log scored as MLCommons' accuracy
  script for the task scores it (None: the samples have no ground truth);
- ``name``, ``metric`` (result.json's name of an accuracy run's figure), ``profiles``
  (the preprocessing profiles it knows) and ``max_batch`` (None, or the largest batch the
  task's models answer: a detector's outputs have no batch dimension).

Runners, the LoadGen wiring and the reports know only this protocol and ``Responses``: a
new task (a language model: token ids in, SQuAD F1 out) is a new module and a row of
``TASKS``; see docs/tasks.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlbox_bench.errors import BenchError

if TYPE_CHECKING:
    from mlbox_bench.backends import ModelIO
    from mlbox_bench.data import SampleLibrary
    from mlbox_bench.responses import Answer
    from mlbox_bench.settings import Settings

TASKS = ("classification", "detection")  # modules under mlbox_bench.tasks


@dataclass(frozen=True)
class Score:
    """An accuracy log's score: ``line`` is what accuracy.txt holds (the official script's
    line, which the submission checker reads); ``value`` the figure, ``facts`` the rest."""

    line: str
    value: float
    facts: dict[str, object]


class Task(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def profiles(self) -> tuple[str, ...]: ...

    @property
    def max_batch(self) -> int | None: ...

    def answer(self, io: ModelIO) -> Answer: ...

    def samples(self, s: Settings, io: ModelIO, count: int) -> SampleLibrary: ...

    def score(self, log: Path, data: SampleLibrary) -> Score | None: ...


_extra: dict[str, Task] = {}  # tasks registered at run time (tests; a plug-in)


def register(task: Task) -> None:
    """Make ``task`` known by its name (a module of this package needs no registration)."""
    _extra[task.name] = task


def unregister(name: str) -> None:
    _extra.pop(name, None)


def known() -> tuple[str, ...]:
    return (*TASKS, *_extra)


def get(name: str) -> Task:
    if name in _extra:
        return _extra[name]
    if name not in TASKS:
        msg = f"unknown task {name!r} (mlbox-bench has {', '.join(known())})"
        raise BenchError(msg)
    task: Task = importlib.import_module(f"mlbox_bench.tasks.{name}").TASK
    return task


def refuse(task: str, io: ModelIO, expected: str, hint: str = "") -> BenchError:
    """The error for a model whose outputs do not fit ``task``."""
    msg = f"the model's outputs do not fit the {task} task: expected {expected}; the model has {io.describe_outputs()}"
    return BenchError(msg + (f" ({hint})" if hint else ""))
