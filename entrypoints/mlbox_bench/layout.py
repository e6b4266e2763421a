"""Where a run's files go. Without --submission-layout: the output dir. With it, two
trees under the output dir, so MLCommons' checker sees only what it asks for:

    submission/<division>/<submitter>/   what the submission checker reads (its --input is
        results/<system>/<model>/<Scenario>/...  OUTPUT/submission)
        systems/<system>.json
        src/                             the harness source that made the runs
    runs/<system>/<model>/<Scenario>/<run>/   each run as it happened: LoadGen's logs in
        full, the untruncated accuracy log, mlbox-bench's result.json

<model> is the name the --submission-round's checker expects (see mlperf.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mlbox_bench.mlperf import submission_name


class Where(Protocol):
    """The settings a path depends on (Settings, or the values resolved so far)."""

    @property
    def output_dir(self) -> str: ...
    @property
    def submission_layout(self) -> bool: ...
    @property
    def division(self) -> str: ...
    @property
    def submitter(self) -> str: ...
    @property
    def system_name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def submission_round(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def compliance(self) -> str | None: ...


def run_kind(s: Where) -> str:
    """performance, accuracy, find-peak, or the compliance test's name."""
    return s.compliance or s.mode


def submission_root(s: Where) -> Path:
    return Path(s.output_dir) / "submission"


def submitter_dir(s: Where) -> Path:
    return submission_root(s) / s.division / s.submitter


def model_dir(s: Where) -> str:
    """The model's directory: the name the round's checker expects (resnet for resnet50),
    in runs/ too, so every name of a model finds the same reference runs. A model the round
    lacks keeps its given name here; submission.check_ready refuses it before any run."""
    return submission_name(s.model, s.submission_round) or s.model


def scenario_dir(s: Where) -> Path:
    return submitter_dir(s) / "results" / s.system_name / model_dir(s) / s.scenario


def runs_dir(s: Where, kind: str) -> Path:
    return Path(s.output_dir) / "runs" / s.system_name / model_dir(s) / s.scenario / kind


def run_dir(s: Where) -> Path:
    """Where LoadGen writes this run's logs (and result.json goes)."""
    return runs_dir(s, run_kind(s)) if s.submission_layout else Path(s.output_dir)
