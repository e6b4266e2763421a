"""The TensorFlow backend through the real harness: LoadGen and TensorFlow (CPU build) in
process, on small frozen graphs and SavedModels the tests make. Checks what TensorFlow and
the runner report, not verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.backend_runs import SHORT, bench

tf = pytest.importorskip("tensorflow")  # the dev extras install tensorflow-cpu

CPU, GPU = "/job:localhost/replica:0/task:0/device:CPU:0", "/job:localhost/replica:0/task:0/device:GPU:0"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support.colors import colour_classifier_tf, tiny_tf_model

    d = tmp_path_factory.mktemp("tf-models")
    return {
        "tiny": tiny_tf_model(d / "tiny.pb"),
        "colour": colour_classifier_tf(d / "colour.pb"),
        "colour-saved": colour_classifier_tf(d / "colour-saved", "saved-model"),
    }


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_every_scenario_runs_on_a_frozen_graph(scenario: str, models: dict[str, Path], tmp_path: Path) -> None:
    extra = ["--target-latency", "100"] if scenario == "Server" else []
    rc, result = bench(
        "--modelpath", str(models["tiny"]), "--scenario", scenario, *SHORT, *extra, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["effective_settings"]["scenario"] == scenario
    assert result["harness"]["observed"]["samples_run"] > 0
    backend = result["backend"]
    assert (backend["name"], backend["model_format"]) == ("tensorflow", "frozen-graph")
    assert backend["preprocessing"] == "mlperf"
    assert backend["version"] == tf.__version__
    assert backend["device"] == "cpu"
    assert backend["session"]["session_devices"] == [CPU]
    session = backend["session"]
    assert (session["input"], session["output"]) == ("input_tensor:0", "ArgMax:0")  # MLCommons' names, found
    assert session["optimize_for_inference"] == "float32"  # as the reference loads the published graph
    assert session["file"] == {"weights": "synthetic", "generator": "tiny"}  # the graph's own note
    assert result["model"]["label_offset"] == -1  # 1001 classes, read from the ArgMax's input
    assert result["model"]["input_dtype"] == "float32"
    assert result["sources"]["backend"] == "model format frozen-graph"


@pytest.mark.subprocess
@pytest.mark.parametrize("model", ["colour", "colour-saved"])
def test_accuracy_through_tensorflow_decodes_as_the_official_scorer(
    model: str, models: dict[str, Path], colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    """MLPerf's preprocessing in NHWC, 1001 classes (offset -1), the log read the way
    accuracy-imagenet.py reads it (float32, no offset), batches of 4."""
    dataset, expected = colour_data
    out = tmp_path / "out"
    rc, result = bench(
        "--modelpath",
        str(models[model]),
        "--mode",
        "accuracy",
        "--dataset",
        str(dataset),
        "--max-batchsize",
        "4",
        "--preprocessed-dir",
        str(tmp_path / "prep"),
        "--output-dir",
        str(out),
    )
    assert rc == 0
    assert result is not None
    assert result["accuracy"]["top1"] == pytest.approx(expected)
    assert (result["backend"]["preprocessing"], result["model"]["label_offset"]) == ("mlperf", -1)
    labels = [int(line.split()[1]) for line in (dataset / "val_map.txt").read_text().splitlines()]
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    good = sum(
        int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) == labels[e["qsl_idx"]] for e in entries
    )  # the official decoding: float32, no offset
    assert (out / "accuracy.txt").read_text().startswith(f"accuracy={100.0 * good / len(entries):.3f}%")
    sample = np.load(next((tmp_path / "prep").rglob("imagenet-mlperf-NHWC-224-*/*.npy")))
    assert sample.shape == (224, 224, 3)  # NHWC, as the model's input says
    if model == "colour-saved":
        session = result["backend"]["session"]
        assert (session["format"], session["signature"], session["signature_output"]) == (
            "saved-model",
            "serving_default",
            "classes",
        )
        assert len(result["model"]["sha256"]) == 64  # a directory: its listing's digest


def test_a_saved_model_output_can_be_named(models: dict[str, Path], tmp_path: Path) -> None:
    rc, result = bench(
        "--modelpath", str(models["colour-saved"]), "--outputs", "probabilities", *SHORT, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["backend"]["session"]["signature_output"] == "probabilities"
    assert result["sources"]["tf_output"] == "flag --tf-output"


def test_tensor_names_are_found_or_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph without MLCommons' input name: its only placeholder; --tf-output picks the
    softmax; a name the graph lacks is refused, saying which."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="images")
        logits = tf.matmul(tf.reduce_mean(x, axis=[1, 2]), tf.ones((3, 1000)))
        tf.nn.softmax(logits, name="softmax_tensor")
    path = tmp_path / "own.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    rc, result = bench("--modelpath", str(path), *SHORT, "--output-dir", str(tmp_path / "a"))
    assert rc == 0
    assert result is not None
    assert (result["backend"]["session"]["input"], result["backend"]["session"]["output"]) == (
        "images:0",
        "softmax_tensor:0",
    )
    assert result["model"]["label_offset"] == 0  # 1000 classes
    rc, result = bench("--modelpath", str(path), "--tf-input", "pixels", *SHORT, "--output-dir", str(tmp_path / "b"))
    assert (rc, result) == (3, None)
    assert "--tf-input pixels:0: " in capsys.readouterr().err


def test_threads_take_effect(models: dict[str, Path], tmp_path: Path) -> None:
    rc, result = bench(
        "--modelpath",
        str(models["tiny"]),
        "--tf-intra-op-threads",
        "1",
        "--tf-inter-op-threads",
        "2",
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert rc == 0
    assert result is not None
    session = result["backend"]["session"]  # read back from the session's ConfigProto
    assert (session["intra_op_parallelism_threads"], session["inter_op_parallelism_threads"]) == (1, 2)


@pytest.mark.parametrize(("runner", "sessions"), [("threadpool", 1), ("threadpool+replication", 2), ("processpool", 2)])
def test_runners_share_or_replicate_tensorflow_sessions(
    runner: str, sessions: int, models: dict[str, Path], tmp_path: Path
) -> None:
    rc, result = bench(
        "--modelpath",
        str(models["tiny"]),
        "--runner",
        runner,
        "--concurrency",
        "2",
        "--max-batchsize",
        "1",
        *SHORT,
        "--output-dir",
        str(tmp_path),
    )
    assert rc == 0
    assert result is not None
    observed = result["harness"]["observed"]
    assert (observed["runner"], observed["workers_used"], observed["sessions"]) == (runner, 2, sessions)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--intraop", "2"], "intraop is a onnxruntime option; this run uses tensorflow"),
        (["--tflite-threads", "2"], "tflite_threads is a tflite option; this run uses tensorflow"),
        (["--torch-threads", "2"], "torch_threads is a pytorch option; this run uses tensorflow"),
        (["--backend", "onnxruntime"], "backend onnxruntime cannot load frozen-graph models (tensorflow does)"),
        (["--outputs", "ArgMax:0,softmax_tensor:0"], "is not one tensor name"),
    ],
)
def test_options_of_another_backend_are_refused(
    args: list[str], message: str, models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = bench("--modelpath", str(models["tiny"]), *args, *SHORT, "--output-dir", str(tmp_path))
    assert (rc, result) == (2, None)  # a usage error: nothing ran
    assert message in capsys.readouterr().err


def test_cuda_on_a_cpu_only_tensorflow_fails_loudly(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = bench("--modelpath", str(models["tiny"]), "--device", "cuda", *SHORT, "--output-dir", str(tmp_path))
    assert (rc, result) == (3, None)
    assert f"--device cuda was requested but this TensorFlow {tf.__version__} is a CPU-only build" in (
        capsys.readouterr().err
    )


def test_a_run_with_no_operation_on_a_gpu_is_refused() -> None:
    """The check a CUDA run makes after tracing one run: operations per device, from
    TensorFlow's own RunMetadata; none on a GPU device refuses the run."""
    from mlbox_bench.backends.tensorflow import gpu_ops, ops_by_device

    def metadata(devices: dict[str, int]) -> Any:
        md = tf.compat.v1.RunMetadata()
        for device, count in devices.items():
            stats = md.step_stats.dev_stats.add()
            stats.device = device
            for i in range(count):
                stats.node_stats.add(node_name=f"op{i}")
        return md

    on_gpu = metadata({GPU: 180, CPU: 3})
    assert gpu_ops(ops_by_device(on_gpu)) == 180
    on_cpu = metadata({CPU: 183})
    assert gpu_ops(ops_by_device(on_cpu)) == 0


def test_a_file_that_is_not_a_graph_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.pb"
    path.write_bytes(b"\xff\x00 not a protobuf")
    rc, _ = bench("--modelpath", str(path), *SHORT, "--output-dir", str(tmp_path / "out"))
    assert rc == 3
    assert "is not a frozen TensorFlow graph (a serialized GraphDef)" in capsys.readouterr().err


@pytest.mark.subprocess
def test_tensorflows_load_time_info_lines_stay_out_of_the_log(models: dict[str, Path], tmp_path: Path) -> None:
    """TensorFlow writes INFO lines from C++ while it loads, before it reads
    TF_CPP_MIN_LOG_LEVEL; mlbox-bench drops them (and only them) unless TF_CPP_MIN_LOG_LEVEL=0."""

    def run(level: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        if level is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = level
        cmd = [
            sys.executable,
            "-m",
            "mlbox_bench",
            "--modelpath",
            str(models["tiny"]),
            *SHORT,
            "--output-dir",
            str(tmp_path / str(level)),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    quiet, verbose = run(None), run("0")
    assert "oneDNN custom operations are on" in verbose  # TensorFlow does write it: the filter is what removes it
    assert "oneDNN custom operations are on" not in quiet
    assert "absl::InitializeLog" not in quiet
    assert "mlbox-bench: Offline performance run" in quiet  # the rest of stderr passes through
