"""The GPU paths' logic, on the CPU: Server's dynamic batching, the runner search and the
fp16 variants mlbox makes. What needs a GPU itself is in test_bench_gpu.py (marked gpu)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlbox_bench.cli import main
from mlbox_bench.responses import Responses


class SlowSession:
    """A session that takes 20 ms a batch and answers each sample's row number."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.io = None

    def select(self, names: tuple[str, ...]) -> None:
        pass

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        time.sleep(0.02)
        self.batches.append(len(batch))
        return (batch.reshape(len(batch), -1)[:, :1].astype(np.int64),)


def test_server_workers_batch_the_queries_waiting(tmp_path: Path) -> None:
    from mlbox_bench.backends import ModelIO, Output
    from mlbox_bench.data import SyntheticData
    from mlbox_bench.runners import ThreadRunner
    from mlbox_bench.tasks.classification import Labels

    io = ModelIO("x", (1,), np.float32, (Output("y", "int64", (None,)),))
    data = SyntheticData(io, 64)
    data.load(list(range(64)))
    session = SlowSession()
    backend: Any = type("B", (), {"session": session, "new_session": lambda self: session})()
    runner = ThreadRunner(backend, data, Labels("y", 0), 1, replicate=False, coalesce=8, window_s=0.0)
    answered: dict[int, float] = {}
    lock = threading.Lock()

    def complete(ids: Any, out: Responses) -> None:
        with lock:
            answered.update(zip((int(i) for i in ids), out.rows[:, 0].tolist(), strict=True))

    for n in range(20):  # one-sample queries, faster than the worker runs them
        runner.submit([1000 + n], [n], complete)
    runner.wait_idle()
    runner.close()
    assert sorted(answered) == [1000 + n for n in range(20)]  # every query answered once
    assert answered == {1000 + n: float(data.data[data.slot[n]].reshape(-1)[0]) for n in range(20)}
    assert max(session.batches) > 1  # the waiting ones ran together
    assert max(session.batches) <= 8  # never more than the largest batch
    assert runner.observed()["largest_batch"] == max(session.batches)


def test_dynamic_batches_are_padded_to_a_few_shapes(tmp_path: Path) -> None:
    """On a GPU each new input shape costs a kernel search: batches run at bucket sizes
    (padded with the last sample, whose extra answers are dropped), warmed up before."""
    from mlbox_bench.backends import ModelIO, Output
    from mlbox_bench.data import SyntheticData
    from mlbox_bench.runners import ThreadRunner
    from mlbox_bench.tasks.classification import Labels
    from mlbox_bench.tune import buckets

    assert buckets(32) == (1, 2, 4, 8, 16, 32)
    assert buckets(24) == (1, 2, 4, 8, 16, 24)
    io = ModelIO("x", (1,), np.float32, (Output("y", "int64", (None,)),))
    data = SyntheticData(io, 64)
    data.load(list(range(64)))
    session = SlowSession()
    backend: Any = type("B", (), {"session": session, "new_session": lambda self: session})()
    runner = ThreadRunner(backend, data, Labels("y", 0), 1, replicate=False, coalesce=8, buckets=buckets(8))
    runner.warm_shapes()
    assert session.batches == [1, 2, 4, 8]
    session.batches.clear()
    answered: dict[int, float] = {}

    def complete(ids: Any, out: Responses) -> None:
        answered.update(zip((int(i) for i in ids), out.rows[:, 0].tolist(), strict=True))

    for n in range(13):
        runner.submit([2000 + n], [n], complete)
    runner.wait_idle()
    runner.close()
    assert set(session.batches) <= {1, 2, 4, 8}
    assert answered == {2000 + n: float(data.data[data.slot[n]].reshape(-1)[0]) for n in range(13)}
    assert runner.observed()["samples_run"] == 13  # padding is not counted as work


def test_the_runner_search_picks_a_plan_and_says_how_to_reproduce_it(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU only (forced here): the picked plan is the fastest measured, result.json has
    the candidates, and the flags it gives run that plan again without a search."""
    import mlbox_bench.tune

    monkeypatch.setattr(mlbox_bench.tune, "on_gpu", lambda backend: True)
    monkeypatch.setattr(mlbox_bench.tune, "OFFLINE_BATCHES", (4, 16))
    monkeypatch.setattr(mlbox_bench.tune, "CANDIDATE_S", 0.05)
    out = tmp_path / "a"
    args = ["--modelpath", str(bench_model), "--scenario", "Offline", "--duration", "0.3", "--allow-invalid"]
    assert main([*args, "--output-dir", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    tuning = result["harness"]["tuning"]
    best = max(tuning["tried"], key=lambda c: c["samples_per_s"])
    assert tuning["picked"]["runner"] == best["runner"]
    assert tuning["picked"]["batch"] == best["batch"]
    assert {c["runner"] for c in tuning["tried"]} == {"inline", "threadpool"}
    assert result["harness"]["runner"]["runner"] == best["runner"]
    again = tmp_path / "b"
    assert main([*args, *tuning["flags"], "--output-dir", str(again)]) == 0
    rerun = json.loads((again / "result.json").read_text())
    assert rerun["harness"]["tuning"] == {}  # no search: the flags say everything
    assert rerun["harness"]["runner"]["runner"] == best["runner"]
    assert rerun["harness"]["runner"]["batch"] == best["batch"]


def test_no_search_on_the_cpu_or_when_everything_is_given(bench_model: Path, tmp_path: Path) -> None:
    args = ["--modelpath", str(bench_model), "--scenario", "Offline", "--duration", "0.2", "--allow-invalid"]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["harness"]["tuning"] == {}


@pytest.mark.parametrize("classes", [1001, 1000])
def test_the_fp16_variant_keeps_the_accuracy(classes: int, colour_data: tuple[Path, float], tmp_path: Path) -> None:
    """mlbox's fp16 file of an fp32 model (fp32 inputs and outputs kept) scores the same
    top-1 on a generated dataset: at least 99% of fp32's, MLPerf's closed-division bound."""
    import onnx

    from mlbox.catalog import Derive, Variant
    from mlbox.convert import derived_model
    from mlbox.fetch import digests
    from tests.support.colors import colour_classifier

    fp32 = colour_classifier(tmp_path / "colour.onnx", classes=classes)
    variant = Variant(
        description="t",
        framework="onnx",
        precision="fp16",
        backend="onnxruntime",
        file="colour16.onnx",
        derive=Derive(source="fp32", convert="fp16"),
    )
    fp16 = derived_model(variant, fp32, digests(fp32)[1], tmp_path / "cache")
    model = onnx.load(str(fp16))
    assert {i.data_type for i in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 inputs kept
    assert derived_model(variant, fp32, digests(fp32)[1], tmp_path / "cache") == fp16  # made once
    dataset, expected = colour_data
    top1 = {}
    for name, path in (("fp32", fp32), ("fp16", fp16)):
        out = tmp_path / name
        assert (
            main(
                [
                    "--modelpath",
                    str(path),
                    "--mode",
                    "accuracy",
                    "--dataset",
                    str(dataset),
                    "--preprocessed-dir",
                    str(tmp_path / "prep"),
                    "--output-dir",
                    str(out),
                ]
            )
            == 0
        )
        top1[name] = json.loads((out / "result.json").read_text())["accuracy"]["top1"]
    assert top1["fp32"] == pytest.approx(expected)
    assert top1["fp16"] >= 0.99 * top1["fp32"]


def test_samples_on_device_needs_a_gpu_provider(bench_model: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["--modelpath", str(bench_model), "--samples-on-device", "--output-dir", str(tmp_path)]) == 2
    assert "--samples-on-device keeps samples in GPU memory: it needs a CUDA provider" in capsys.readouterr().err
