"""The task seam: a detector and a classifier each run as their task says, a model whose
outputs do not fit its task is refused before LoadGen starts, and a task made up here
runs through the unchanged runners, LoadGen wiring and report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlbox_bench import tasks
from mlbox_bench.backends import ModelIO
from mlbox_bench.cli import main
from mlbox_bench.data import SampleLibrary, SyntheticData
from mlbox_bench.responses import Ids, Responses
from mlbox_bench.settings import Settings
from mlbox_bench.tasks import Score
from tests.support.detection import detection_model


def result_of(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny detection twin: MLCommons RetinaNet's I/O names and types on 64x64 images."""
    return detection_model(tmp_path_factory.mktemp("detector") / "tiny-retinanet.onnx", 64)


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_the_tiny_detector_runs_every_scenario_valid(scenario: str, detector: Path, tmp_path: Path) -> None:
    """As the classifier's short runs (test_bench_run): 2 s, and a light Server load with a
    1 s bound, so a busy 2-core machine still gives a VALID run."""
    bound = ["--target-latency", "1000", "--target-qps", "100"] if scenario == "Server" else []
    out = tmp_path / "out"
    args = ["--modelpath", str(detector), "--model-name", "retinanet", "--scenario", scenario, "--duration", "2"]
    rc = main([*args, *bound, "--output-dir", str(out)])
    result = result_of(out)
    assert (rc, result["validity"]) == (0, "VALID"), result["early_stopping"]
    assert result["model"]["task"] == "detection"
    assert result["model"]["answer_outputs"] == ["boxes", "labels", "scores"]
    assert result["harness"]["runner"]["batch"] == 1  # the reference profile's max batch size
    assert result["qsl"]["performance"] == 64  # mlperf.conf's retinanet rule
    if scenario == "Server":
        assert result["effective_settings"]["target_latency_ns"] == 1_000_000_000


def test_the_detector_answers_records_as_the_reference_writes_them(detector: Path, tmp_path: Path) -> None:
    """Accuracy mode on synthetic images: every sample logged, 7 float32 per detection with
    the sample's own index first, or nothing; no score without ground truth."""
    out = tmp_path / "out"
    args = ["--modelpath", str(detector), "--model-name", "retinanet", "--mode", "accuracy", "--samples", "16"]
    assert main([*args, "--output-dir", str(out)]) == 0
    result = result_of(out)
    assert (result["accuracy"]["metric"], result["accuracy"]["value"]) == ("mAP", None)
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(16))
    for entry in entries:
        records = np.frombuffer(bytes.fromhex(entry["data"]), np.float32)
        assert len(records) % 7 == 0
        assert set(records[0::7].tolist()) <= {float(entry["qsl_idx"])}
    assert not (out / "accuracy.txt").exists()


@pytest.mark.parametrize(
    ("which", "flags", "expected", "found"),
    [
        ("classifier", ["--task", "detection"], "expected outputs boxes", "ArgMax:0 (int64"),
        ("classifier", ["--model-name", "retinanet"], "expected outputs boxes", "softmax_tensor:0 (float32 [?,1001])"),
        ("detector", [], "the class label", "boxes (float32 [3,4])"),
        ("detector", ["--task", "classification"], "they are a detector's", "scores (float32 [3])"),
    ],
)
def test_a_model_that_does_not_fit_its_task_is_refused_before_loadgen(
    which: str,
    flags: list[str],
    expected: str,
    found: str,
    detector: Path,
    bench_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = detector if which == "detector" else bench_model
    out = tmp_path / "out"
    rc = main(["--modelpath", str(model), *flags, "--scenario", "Offline", "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "do not fit the" in err, err
    assert expected in err, err
    assert found in err, err
    assert not out.exists() or not any(p.name.startswith("mlperf_log") for p in out.rglob("*"))  # LoadGen never ran


def test_a_detector_refuses_a_batch_it_cannot_answer(
    detector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before anything runs or is written: the reference runs RetinaNet with max batch size 1."""
    out = tmp_path / "out"
    args = ["--modelpath", str(detector), "--model-name", "retinanet", "--scenario", "Offline"]
    assert main([*args, "--max-batchsize", "8", "--output-dir", str(out)]) == 2
    assert (
        "flag --max-batchsize: max batch size 8: the detection task's models answer at most 1"
        in capsys.readouterr().err
    )
    assert not out.exists()
    # Left open, the task fixes it, and says so.
    assert main([*args, "--print-settings"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["max_batchsize"] == {
        "value": 1,
        "source": "the detection task (its models answer 1 sample(s) per run)",
    }
    assert printed["preprocessing"] == {"value": "openimages", "source": "the detection task"}


# A task made up here: "parity". The model is any classifier; a sample's response is its
# QSL index and the parity of the model's label, as two int32s; the score is the share of
# logged samples whose response names their own index. Nothing of mlbox-bench's runners,
# LoadGen wiring or report is edited or patched.


@dataclass(frozen=True)
class ParityAnswer:
    output: str

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,)

    def respond(self, raw: tuple[np.ndarray, ...], indices: Ids) -> Responses:
        labels = np.asarray(raw[0]).reshape(len(indices), -1)[:, 0].astype(np.int32)
        return Responses(np.ascontiguousarray(np.stack([np.asarray(indices, dtype=np.int32), labels % 2], axis=1)))

    def fallback(self, count: int) -> Responses:
        return Responses(np.full((count, 2), -1, dtype=np.int32))

    def facts(self) -> dict[str, object]:
        return {"parity_of": self.output}


class Parity:
    name = "parity"
    metric = "own_index_share"
    profiles = ("mlperf",)
    max_batch = None

    def answer(self, io: ModelIO) -> ParityAnswer:
        integer = [o.name for o in io.outputs if o.kind in ("i", "u")]
        if not integer:
            raise tasks.refuse(self.name, io, "an integer output")
        return ParityAnswer(integer[0])

    def samples(self, s: Settings, io: ModelIO, count: int) -> SampleLibrary:
        return SyntheticData(io, s.samples or count)

    def score(self, log: Path, data: SampleLibrary) -> Score | None:
        entries = json.loads(log.read_text())
        own = sum(np.frombuffer(bytes.fromhex(e["data"]), np.int32)[0] == e["qsl_idx"] for e in entries)
        return Score(f"own={100.0 * own / len(entries):.1f}%", own / len(entries), {"entries": len(entries)})


@pytest.fixture
def parity() -> Any:
    task = Parity()
    tasks.register(task)
    yield task
    tasks.unregister(task.name)


@pytest.mark.parametrize("runner", ["inline", "threadpool", "processpool"])
def test_a_new_task_plugs_in_without_touching_runners_wiring_or_report(
    runner: str, parity: Parity, bench_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--modelpath", str(bench_model), "--task", "parity", "--mode", "accuracy", "--samples", "40"]
    assert main([*args, "--scenario", "Offline", "--runner", runner, "--output-dir", str(out)]) == 0
    result = result_of(out)
    assert (result["model"]["task"], result["model"]["parity_of"]) == ("parity", "ArgMax:0")
    assert result["metric"] == {"name": "own_index_share", "value": 1.0, "unit": "fraction"}
    assert (out / "accuracy.txt").read_text() == "own=100.0%\n"
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    answers = {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), np.int32).tolist() for e in entries}
    assert sorted(answers) == list(range(40))
    assert all(a[0] == i and a[1] in (0, 1) for i, a in answers.items())


def test_an_unknown_task_is_a_usage_error(bench_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--modelpath", str(bench_model), "--task", "parity"]) != 0
    assert "not a task mlbox-bench knows (classification, detection)" in capsys.readouterr().err


def test_annotations_that_are_not_coco_are_refused_before_the_run(
    detector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.detection import detection_dataset

    data = detection_dataset(tmp_path / "data", 64)
    annotations = data.root / "annotations" / "openimages-mlperf.json"
    doc = json.loads(annotations.read_text())
    del doc["categories"]  # pycocotools would fail on it after the whole run
    annotations.write_text(json.dumps(doc))
    out = tmp_path / "out"
    args = ["--modelpath", str(detector), "--model-name", "retinanet", "--mode", "accuracy"]
    assert main([*args, "--dataset", str(data.root), "--output-dir", str(out)]) == 3
    assert "images (id, file_name, height, width), annotations and categories" in capsys.readouterr().err
    assert not (out / "mlperf_log_accuracy.json").exists()


def test_the_standalone_scorer_says_what_is_wrong_with_a_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlbox_bench.accuracy_openimages import main as score
    from tests.support.detection import detection_dataset

    data = detection_dataset(tmp_path / "data", 64)
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([{"qsl_idx": 99, "seq_id": 0, "data": ""}]))
    assert score(["--mlperf-accuracy-file", str(log), "--openimages-dir", str(data.root)]) == 3
    assert "qsl_idx 99 is not an image of the annotations (they list 6)" in capsys.readouterr().err
    log.write_text(json.dumps([{"qsl_idx": None, "data": ""}]))
    assert score(["--mlperf-accuracy-file", str(log), "--openimages-dir", str(data.root)]) == 3
    assert "not a LoadGen accuracy log" in capsys.readouterr().err


def test_test01_compares_a_detectors_responses_as_the_official_script(tmp_path: Path) -> None:
    """verify_accuracy.py: an empty response matches only an empty one, otherwise the first
    float32 decides; a detector's first value is the sample index, so a run that finds one
    detection fewer (a score at the threshold) still passes, and an empty answer does not."""
    from mlbox_bench.compliance import verify_accuracy

    def log(path: Path, records: dict[int, list[float]]) -> Path:
        data = [
            {"qsl_idx": i, "seq_id": i, "data": np.array(r, np.float32).tobytes().hex()} for i, r in records.items()
        ]
        path.write_text(json.dumps(data))
        return path

    two = [3, 0.1, 0.1, 0.5, 0.5, 0.9, 7, 3, 0.2, 0.2, 0.6, 0.6, 0.06, 7]
    reference = log(tmp_path / "reference.json", {3: two, 4: []})
    assert verify_accuracy(reference, log(tmp_path / "a.json", {3: two[:7], 4: []})).passed
    assert not verify_accuracy(reference, log(tmp_path / "b.json", {3: [], 4: []})).passed
    assert not verify_accuracy(reference, log(tmp_path / "c.json", {3: two, 4: two})).passed
