"""mlbox-bench on the host with real LoadGen and onnxruntime, on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlbox_bench.cli import main
from tests.support.gpu import no_gpu


def result_of(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_every_scenario_runs_valid_in_a_short_run(scenario: str, bench_model: Path, tmp_path: Path) -> None:
    """No --target-qps or --target-latency: mlbox-bench calibrates what LoadGen needs, and
    --duration lowers the query count to what early stopping needs. The point is a VALID
    run, so it gets headroom for a loaded 2-core machine: 2 s, and a light Server load."""
    out = tmp_path / "out"  # created by the harness
    # Server: a 1 s bound and a light load; its calibrated rate is checked elsewhere (a rate
    # measured in a quiet moment overloads a machine that another process loads, and busy
    # loops on both cores delay a query by tens of milliseconds now and then).
    bound = ["--target-latency", "1000", "--target-qps", "200"] if scenario == "Server" else []
    args = [
        "--modelpath",
        str(bench_model),
        "--scenario",
        scenario,
        "--duration",
        "2",
        *bound,
        "--output_dir",
        str(out),
    ]
    rc = main(args)
    result = result_of(out)
    assert (rc, result["validity"]) == (0, "VALID"), result["early_stopping"]
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        assert (out / name).is_file(), name
    assert result["scenario"] == result["effective_settings"]["scenario"] == scenario
    assert result["metric"]["value"] > 0
    assert result["latency_ns"]["percentiles"]["99.00_percentile"] > 0
    assert result["backend"]["provider"] == "CPUExecutionProvider"
    assert result["effective_settings"]["min_duration_ms"] == 2000
    assert result["model"]["path"] == str(bench_model)
    assert result["loadgen_errors"] == []
    assert result["invalid_reason"] is None
    assert result["host"]["cpus"] >= 1
    # The run's own counts: calibration's batches are not in them.
    observed = result["harness"]["observed"]["samples_run"]
    assert observed == _completed(out)


def _completed(out: Path) -> int:
    """Samples LoadGen issued in the run, from its detail log."""
    from mlbox_bench.report import parse_detail_log

    log = parse_detail_log(out / "mlperf_log_detail.txt")
    queries = int(log["result_query_count"]) if "result_query_count" in log else 1
    return queries * int(log["effective_samples_per_query"])


@no_gpu
def test_no_gpu_is_reported_on_a_cpu_host(bench_model: Path, tmp_path: Path) -> None:
    assert (
        main(["--modelpath", str(bench_model), "--duration", "0.05", "--output-dir", str(tmp_path), "--allow-invalid"])
        == 0
    )
    assert result_of(tmp_path)["host"]["gpus"] == []


@no_gpu
def test_cuda_on_a_cpu_host_is_refused(bench_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--modelpath", str(bench_model), "--ep", "CUDAExecutionProvider", "--output_dir", str(tmp_path)])
    assert rc == 3
    err = capsys.readouterr().err
    assert "CUDAExecutionProvider is not available" in err
    assert "--gpus all" in err
    assert not (tmp_path / "result.json").exists()


@pytest.mark.subprocess
def test_accuracy_on_generated_images_equals_the_known_value(
    colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, expected = colour_data
    out, prep = tmp_path / "out", tmp_path / "prep"
    args = ["--modelpath", str(colour_model), "--mode", "accuracy", "--dataset", str(dataset)]
    assert main([*args, "--preprocessed-dir", str(prep), "--output-dir", str(out)]) == 0
    result = result_of(out)
    assert result["accuracy"]["top1"] == pytest.approx(expected)
    assert result["accuracy"]["total"] == result["accuracy"]["logged_samples"] == 12
    assert (result["accuracy"]["dtype"], result["model"]["label_offset"]) == ("float32", -1)
    line = (out / "accuracy.txt").read_text().strip()
    assert line == f"accuracy={100 * expected:.3f}%, good=9, total=12"

    # The accuracy log round-trips through the standalone script (MLPerf's flags).
    script = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbox_bench.accuracy",
            "--mlperf-accuracy-file",
            str(out / "mlperf_log_accuracy.json"),
            "--imagenet-val-file",
            str(dataset / "val_map.txt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert script.stdout.strip() == line

    # A second run reads the preprocessed cache instead of decoding again.
    capsys.readouterr()
    assert main([*args, "--preprocessed-dir", str(prep), "--output-dir", str(tmp_path / "again")]) == 0
    assert "preprocessed" not in capsys.readouterr().err
    assert result_of(tmp_path / "again")["accuracy"]["top1"] == pytest.approx(expected)


def test_accuracy_on_synthetic_inputs_writes_the_log_but_no_score(bench_model: Path, tmp_path: Path) -> None:
    assert (
        main(["--modelpath", str(bench_model), "--mode", "accuracy", "--samples", "20", "--output-dir", str(tmp_path)])
        == 0
    )
    result = result_of(tmp_path)
    assert (result["accuracy"]["metric"], result["accuracy"]["value"]) == ("top1_accuracy", None)
    assert "no ground truth" in result["accuracy"]["reason"]
    assert len(json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())) == 20
    assert not (tmp_path / "accuracy.txt").exists()


def test_find_peak_reports_the_highest_valid_server_qps(bench_model: Path, tmp_path: Path) -> None:
    # LoadGen's search judges each rate by its latency bound alone (PerfConstraintsMet); a
    # 500 ms bound holds at the calibrated rate even on a loaded machine, and a rate far
    # above capacity still breaks it, so the search ends. The peak run's own verdict also
    # needs min duration and queries, which a 0.2 s run on a busy machine may miss: that
    # verdict is not what this test is about, so --allow-invalid keeps it from deciding.
    args = [
        "--modelpath",
        str(bench_model),
        "--scenario",
        "Server",
        "--mode",
        "find-peak",
        "--duration",
        "0.2",
        "--target-latency",
        "500",
        "--allow-invalid",
    ]
    assert main([*args, "--output-dir", str(tmp_path)]) == 0
    result = result_of(tmp_path)
    peak = result["metric"]["value"]  # report.find_peak: LoadGen's "Found peak performance field"
    assert peak is not None, "LoadGen's search found no rate within the bound"
    assert result["metric"]["name"] == "peak_server_target_qps"
    assert peak >= result["harness"]["applied"]["target_qps"]  # the search starts at the calibrated rate
    assert result["effective_settings"]["test_mode"] == "FindPeakPerformance"
    assert result["effective_settings"]["target_latency_ns"] == 500_000_000


def test_processpool_runs_in_processes_and_cleans_up(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared samples go to a folder of this test's own (not /dev/shm, where another
    # test worker's processpool run may be writing at the same time).
    from mlbox_bench import runners

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(runners, "_scratch_parent", lambda data: str(scratch))
    args = [
        "--modelpath",
        str(bench_model),
        "--runner",
        "processpool",
        "--concurrency",
        "2",
        "--duration",
        "0.2",
        "--allow-invalid",
    ]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 0
    observed = result_of(tmp_path / "out")["harness"]["observed"]
    assert (observed["runner"], observed["workers_used"]) == ("processpool", 2)
    assert list(scratch.iterdir()) == []


def test_mlbox_bench_on_the_host_through_mlbox(bench_model: Path, tmp_path: Path) -> None:
    """`mlbox bench` runs the harness in process and exits with its code (a short run's
    verdict is not the point: --allow-invalid keeps it 0 on a busy machine)."""
    from mlbox.cli import main as mlbox_main

    rc = mlbox_main(
        [
            "bench",
            "--modelpath",
            str(bench_model),
            "--scenario",
            "SingleStream",
            "--duration",
            "0.05",
            "--output-dir",
            str(tmp_path),
            "--allow-invalid",
        ]
    )
    assert rc == 0
    result = result_of(tmp_path)
    assert result["effective_settings"]["scenario"] == "SingleStream"
    assert result["sources"]["allow_invalid"] == "flag --allow-invalid"
    # The harness's usage error (its exit 2) is mlbox's 22: mlbox's own 2 is a usage error of mlbox's.
    assert mlbox_main(["bench", "--scenario", "Sideways"]) == 22
    assert (
        mlbox_main(["bench", "--modelpath", str(tmp_path / "missing.onnx"), "--output-dir", str(tmp_path / "o")]) == 23
    )


def test_every_benchmark_outcome_has_an_mlbox_code_of_its_own() -> None:
    """What `mlbox run`/`mlbox bench` exit with never means one of mlbox's own failures."""
    from mlbox.errors import BENCH_OUTCOMES, MlboxError, bench_outcome, exit_codes
    from mlbox_bench import errors as bench

    classes: list[type[MlboxError]] = [MlboxError, *MlboxError.__subclasses__()]
    own = {cls.exit_code for cls in classes} | {1, 2}
    outcomes = {bench_outcome(code) for code in (*range(128), 130, 137, 143)}
    assert outcomes & own == set()
    assert [bench_outcome(c) for c in (bench.EXIT_VALID, bench.EXIT_INVALID, bench.EXIT_USAGE, 137)] == [0, 4, 22, 137]
    table = dict(exit_codes())
    assert len(table) == len(exit_codes())  # one meaning per code
    assert {ours for _, ours, _ in BENCH_OUTCOMES} <= table.keys()


def test_synthetic_samples_are_deterministic_and_shaped(bench_model: Path) -> None:
    from mlbox_bench.backends.onnxruntime import Config, open_session
    from mlbox_bench.data import SyntheticData

    io = open_session(Config(str(bench_model), "CPUExecutionProvider", "sequential", 0, 0)).io
    a, b = SyntheticData(io, 10), SyntheticData(io, 10)
    a.load([1, 2, 3])
    b.load([1, 2, 3])
    assert a.batch(np.array([3, 1])).shape == (2, 3, 32, 32)
    assert np.array_equal(a.data, b.data)
    a.unload([1, 2, 3])
    with pytest.raises(Exception, match="not loaded"):
        a.batch(np.array([1]))


@pytest.mark.parametrize(
    ("runner", "workers"), [("inline", 1), ("threadpool", 2), ("threadpool+replication", 2), ("processpool", 2)]
)
def test_calibration_measures_with_the_runs_runner_and_workers(
    runner: str, workers: int, bench_model: Path, tmp_path: Path
) -> None:
    """The rate that sizes an Offline query is the rate of the runner and concurrency the
    run uses (a different runner's rate would make the run too short or too long)."""
    out = tmp_path / "out"
    args = ["--modelpath", str(bench_model), "--scenario", "Offline", "--duration", "1", "--samples", "64"]
    assert main([*args, "--runner", runner, "--concurrency", str(workers), "--output-dir", str(out)]) in (0, 4)
    harness = result_of(out)["harness"]
    seen = harness["calibration"]["observed"]
    assert (seen["runner"], seen["workers_used"]) == (harness["observed"]["runner"], workers)
    assert seen["samples_run"] > 0
