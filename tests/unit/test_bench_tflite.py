"""The TFLite backend (LiteRT) through the real harness: LoadGen and LiteRT in process, on
small .tflite files the tests convert with TensorFlow. Checks what LiteRT and the runner
report, not verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.backend_runs import SHORT, bench

litert = pytest.importorskip("ai_edge_litert.interpreter")  # the dev extras install ai-edge-litert
pytest.importorskip("tensorflow")  # the tests' files are converted with TensorFlow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support.colors import colour_classifier_tf, tiny_tf_model

    d = tmp_path_factory.mktemp("tflite-models")
    made = {f"tiny-{fmt}": tiny_tf_model(d / f"tiny-{fmt}.tflite", fmt) for fmt in ("tflite", "tflite-int8")}
    for fmt in ("tflite", "tflite-noargmax", "tflite-int8"):
        made[f"colour-{fmt}"] = colour_classifier_tf(d / f"colour-{fmt}.tflite", fmt)
    return made


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_every_scenario_runs_on_a_tflite_file(scenario: str, models: dict[str, Path], tmp_path: Path) -> None:
    extra = ["--target-latency", "100"] if scenario == "Server" else []
    rc, result = bench(
        "--modelpath", str(models["tiny-tflite"]), "--scenario", scenario, *SHORT, *extra, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["effective_settings"]["scenario"] == scenario
    assert result["harness"]["observed"]["samples_run"] > 0
    backend = result["backend"]
    assert (backend["name"], backend["model_format"], backend["preprocessing"]) == ("tflite", "tflite", "mlperf")
    assert (backend["provider"], backend["device"]) == ("litert:cpu", "cpu")
    import ai_edge_litert

    assert backend["version"] == ai_edge_litert.__version__
    session = backend["session"]
    assert (session["output"], session["classes"]) == ("ArgMax", 1001)  # classes read from the ArgMax's input
    assert session["delegated"] is True  # XNNPACK took the convolutions
    assert result["model"]["label_offset"] == -1
    assert result["sources"]["backend"] == "model format tflite"


@pytest.mark.subprocess
@pytest.mark.parametrize("fmt", ["tflite", "tflite-noargmax", "tflite-int8"])
def test_accuracy_through_litert_decodes_as_the_official_scorer(
    fmt: str, models: dict[str, Path], colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    """MLPerf's preprocessing in NHWC, 1001 classes (offset -1), batches of 4 run by
    resizing the interpreter's input (the files have a batch of 1); the int8 file's uint8
    input and output converted with its scale and zero point."""
    dataset, expected = colour_data
    out = tmp_path / "out"
    rc, result = bench(
        "--modelpath",
        str(models[f"colour-{fmt}"]),
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
    assert result["harness"]["observed"]["largest_batch"] == 4
    labels = [int(line.split()[1]) for line in (dataset / "val_map.txt").read_text().splitlines()]
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    good = sum(
        int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) == labels[e["qsl_idx"]] for e in entries
    )  # the official decoding: float32, no offset
    assert (out / "accuracy.txt").read_text().startswith(f"accuracy={100.0 * good / len(entries):.3f}%")
    session = result["backend"]["session"]
    if fmt == "tflite-int8":
        assert session["input_quantization"]["dtype"] == "uint8"
        assert session["output_quantization"]["dtype"] == "uint8"
        assert result["model"]["input_dtype"] == "uint8"  # samples quantized when loaded, not per batch
        assert np.load(next((tmp_path / "prep").rglob("*.npy"))).dtype == np.float32  # the cache stays float
    else:
        assert session["input_quantization"] is None


def test_a_quantized_input_is_quantized_when_the_samples_load() -> None:
    """Quantizing costs ~0.3 ms a 224x224 sample, 2-3% of an int8 ResNet-50 run: it is done
    once, as the sample library loads, with the preprocessing, not in the timed path."""
    from mlbox_bench.backends import ModelIO, Output, quantize
    from mlbox_bench.data import SyntheticData

    out = (Output("y", "float32", (None, 1001)),)
    quantized = SyntheticData(ModelIO("x", (4, 4, 3), np.uint8, out, (1.0774, 115)), 100)
    floats = SyntheticData(ModelIO("x", (4, 4, 3), np.float32, out), 100)
    for library in (quantized, floats):
        library.load(list(range(100)))
    assert quantized.data.dtype == np.uint8
    assert np.array_equal(quantized.data, quantize(floats.data, np.uint8, 1.0774, 115))
    assert len(np.unique(quantized.data)) > 200  # the range of real pixels minus the means, not a clipped one


def test_quantization_is_the_files_affine_map() -> None:
    from mlbox_bench.backends.tflite import Quantization

    q = Quantization(np.uint8, 0.5, 10)
    x = np.array([-5.0, -4.9, 0.0, 1.26, 200.0], dtype=np.float32)
    assert q.quantize(x).tolist() == [0, 0, 10, 13, 255]  # round(x / 0.5) + 10, clipped to uint8
    assert q.dequantize(np.array([0, 10, 13, 255], dtype=np.uint8)).tolist() == [-5.0, 0.0, 1.5, 122.5]
    signed = Quantization(np.int8, 1.0, -128)
    assert signed.quantize(np.array([-200.0, 0.0, 300.0], dtype=np.float32)).tolist() == [-128, -128, 127]


@pytest.mark.parametrize(
    ("runner", "sessions"), [("threadpool", 2), ("threadpool+replication", 2), ("processpool", 2), ("inline", 1)]
)
def test_one_interpreter_per_worker_never_shared(
    runner: str, sessions: int, models: dict[str, Path], tmp_path: Path
) -> None:
    """An interpreter is not thread-safe: even the threadpool runner (sessions shared for
    the other backends) gives each worker its own."""
    rc, result = bench(
        "--modelpath",
        str(models["tiny-tflite-int8"]),
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
    assert (observed["runner"], observed["sessions"]) == (runner, sessions)
    assert observed["workers_used"] == (1 if runner == "inline" else 2)


def test_threads_are_recorded(models: dict[str, Path], tmp_path: Path) -> None:
    rc, result = bench(
        "--modelpath", str(models["tiny-tflite"]), "--tflite-threads", "1", *SHORT, "--output-dir", str(tmp_path)
    )
    assert rc == 0
    assert result is not None
    assert result["backend"]["session"]["num_threads"] == 1
    assert result["sources"]["tflite_threads"] == "flag --tflite-threads"


def test_a_batch_resizes_the_input_only_when_its_size_changes(models: dict[str, Path]) -> None:
    from mlbox_bench.backends.tflite import Config, open_session
    from mlbox_bench.tasks.classification import TASK

    session = open_session(Config(str(models["colour-tflite-noargmax"]), 0, None))
    assert session.resizes == 1  # the zero-sample check, at the file's batch of 1
    means = np.array([123.68, 116.78, 103.94], dtype=np.float32)
    red, green = np.full((224, 224, 3), (230, 20, 30)) - means, np.full((224, 224, 3), (25, 220, 35)) - means
    batch = np.stack([red, green, red]).astype(np.float32)
    answer = TASK.answer(session.io)

    def labels(x: np.ndarray) -> list[float]:
        return answer.respond(session.run(x), list(range(len(x)))).rows.ravel().tolist()

    assert labels(batch) == [0.0, 1.0, 0.0]  # labels after the offset, float32
    assert labels(batch) == [0.0, 1.0, 0.0]
    assert session.resizes == 2  # once for the batch of 3, not again for the same size
    assert labels(batch[:1]) == [0.0]
    assert session.resizes == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "--device cuda: the tflite backend (LiteRT) runs on the CPU only"),
        (["--tf-intra-op-threads", "2"], "tf_intra_op_threads is a tensorflow option; this run uses tflite"),
        (["--intraop", "2"], "intraop is a onnxruntime option; this run uses tflite"),
        (["--backend", "tensorflow"], "backend tensorflow cannot load tflite models (tflite does)"),
    ],
)
def test_options_of_another_backend_or_device_are_refused(
    args: list[str], message: str, models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = bench("--modelpath", str(models["tiny-tflite"]), *args, *SHORT, "--output-dir", str(tmp_path))
    assert (rc, result) == (2, None)  # a usage error: nothing ran
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_tflite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a flatbuffer at all" * 10)
    rc, _ = bench("--modelpath", str(path), *SHORT, "--output-dir", str(tmp_path / "out"))
    assert rc == 3
    assert f"LiteRT cannot load {path}" in capsys.readouterr().err
