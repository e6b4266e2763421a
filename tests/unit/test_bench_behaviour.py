"""Every mlbox-bench option and every CM variable changes what really happens.

These run the real harness (LoadGen and onnxruntime) on a tiny model, in process, and
check what LoadGen logged or what the runner observed, not what the settings say.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlbox_bench.cli import main

Result = dict[str, Any]
SHORT = ["--scenario", "SingleStream", "--duration", "0.05", "--samples", "64"]


def bench(model: Path, out: Path, *args: str) -> tuple[int, Result | None]:
    rc = main(["--modelpath", str(model), "--output-dir", str(out), *args])
    path = out / "result.json"
    return rc, json.loads(path.read_text()) if path.is_file() else None


def eff(result: Result, key: str) -> Any:
    """A setting as LoadGen logged it (effective_*)."""
    return result["effective_settings"][key]


def seen(result: Result, key: str) -> Any:
    """What the runner observed while it ran."""
    return result["harness"]["observed"][key]


def session(result: Result, key: str) -> Any:
    """The onnxruntime session's options, read back from the session."""
    return result["backend"]["session"][key]


# (option, extra args, check(result, out dir)). Each extra-args list sets one option away
# from its default; the check reads what LoadGen or the runner did.
FLAG_CASES: list[tuple[str, list[str], Callable[[Result, Path], bool]]] = [
    ("scenario", ["--scenario", "MultiStream", "--duration", "0.05"], lambda r, _: eff(r, "scenario") == "MultiStream"),
    ("mode", [*SHORT, "--mode", "accuracy"], lambda r, _: eff(r, "test_mode") == "AccuracyOnly"),
    ("duration", [*SHORT, "--duration", "0.3"], lambda r, _: eff(r, "min_duration_ms") == 300),
    ("target_qps", ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05"],
     lambda r, _: eff(r, "target_qps") == 900),
    ("target_latency", ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05", "--target-latency", "40"],
     lambda r, _: eff(r, "target_latency_ns") == 40_000_000),
    ("latency_percentile", [*SHORT, "--latency-percentile", "97"],
     lambda r, _: eff(r, "target_latency_percentile") == pytest.approx(0.97)),
    ("min_query_count", [*SHORT, "--min-query-count", "100"], lambda r, _: eff(r, "min_query_count") == 100),
    # 70 queries end before the duration (INVALID), so --allow-invalid keeps the exit 0.
    ("max_query_count", [*SHORT, "--max-query-count", "70", "--allow-invalid"],
     lambda r, _: eff(r, "max_query_count") == 70),
    ("samples", [*SHORT, "--samples", "48"], lambda r, _: r["qsl"]["total"] == 48),
    ("performance_sample_count", [*SHORT, "--performance-sample-count", "16"],
     lambda r, _: eff(r, "performance_sample_count") == 16),
    ("samples_per_query", ["--scenario", "MultiStream", "--duration", "0.05", "--samples-per-query", "4"],
     lambda r, _: eff(r, "samples_per_query") == 4),
    ("max_batchsize", ["--duration", "0.1", "--max-batchsize", "5"], lambda r, _: seen(r, "largest_batch") == 5),
    ("runner", ["--duration", "0.1", "--runner", "processpool", "--concurrency", "2"],
     lambda r, _: (seen(r, "runner"), seen(r, "workers_used")) == ("processpool", 2)),
    ("concurrency", ["--duration", "0.1", "--runner", "threadpool", "--concurrency", "3", "--max-batchsize", "1"],
     lambda r, _: seen(r, "workers_used") == 3),
    ("execmode", [*SHORT, "--execmode", "parallel"], lambda r, _: session(r, "execution_mode") == "parallel"),
    ("intraop", [*SHORT, "--intraop", "1"], lambda r, _: session(r, "intra_op_num_threads") == 1),
    ("interop", [*SHORT, "--interop", "2"], lambda r, _: session(r, "inter_op_num_threads") == 2),
    ("weights", [*SHORT, "--weights", "synthetic"], lambda r, _: r["model"]["weights"] == "synthetic"),
    ("system_name", [*SHORT, "--submission-layout", "--system-name", "box1"],
     lambda r, out: (out / "results/box1/resnet50/SingleStream/performance/run_1/result.json").is_file()),
]  # fmt: skip


@pytest.mark.parametrize(("option", "args", "check"), FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_each_flag_changes_what_runs(
    option: str, args: list[str], check: Callable[[Result, Path], bool], bench_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rc, result = bench(bench_model, out, *args)
    if result is None:  # submission layout: result.json is deeper
        found = next(out.rglob("result.json"))
        result = json.loads(found.read_text())
    assert rc == 0
    assert result["sources"][option].startswith("flag"), result["sources"][option]
    assert check(result, out), json.dumps(result, indent=1)[:3000]


def test_model_name_selects_mlperf_conf_entries(bench_model: Path, tmp_path: Path) -> None:
    """--model picks mlperf.conf's rows: Server latency bound 15 ms for resnet50, 100 ms for retinanet."""
    common = ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05"]
    _, resnet = bench(bench_model, tmp_path / "a", *common)
    _, retina = bench(bench_model, tmp_path / "b", *common, "--model", "retinanet")
    assert resnet is not None
    assert retina is not None
    assert (eff(resnet, "target_latency_ns"), eff(retina, "target_latency_ns")) == (15_000_000, 100_000_000)


def test_modelpath_and_output_dir(bench_model: Path, colour_model: Path, tmp_path: Path) -> None:
    from mlbox_bench.results import file_sha256

    _, result = bench(colour_model, tmp_path / "elsewhere", *SHORT)
    assert result is not None
    assert result["model"]["sha256"] == file_sha256(colour_model) != file_sha256(bench_model)
    assert (tmp_path / "elsewhere" / "mlperf_log_detail.txt").is_file()


def test_allow_invalid_turns_exit_4_into_0(bench_model: Path, tmp_path: Path) -> None:
    # A 1 us latency bound cannot be met: LoadGen says INVALID.
    args = ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05", "--target-latency", "0.001"]
    rc, result = bench(bench_model, tmp_path / "a", *args)
    assert (rc, result and result["validity"]) == (4, "INVALID")
    rc, result = bench(bench_model, tmp_path / "b", *args, "--allow-invalid")
    assert (rc, result and result["validity"]) == (0, "INVALID")


def test_dataset_and_preprocessed_dir(colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path) -> None:
    dataset, _ = colour_data
    prep = tmp_path / "prep"
    rc, result = bench(
        colour_model, tmp_path / "out", *SHORT, "--dataset", str(dataset), "--preprocessed-dir", str(prep)
    )
    assert rc == 0
    assert result is not None
    assert result["data"]["kind"] == "imagenet"
    assert result["qsl"]["total"] == 12  # --samples 64 is capped by the 12 images in val_map.txt
    assert len(list(prep.rglob("*.npy"))) == 12


def test_intraop_sets_onnxruntime_thread_count(colour_model: Path) -> None:
    """Counted at the OS: a session with N intra-op threads starts N - 1 pool threads."""
    from mlbox_bench.backend import OnnxRuntimeBackend
    from mlbox_bench.settings import parse_settings

    def threads_after(intraop: int) -> int:
        before = len(list(Path("/proc/self/task").iterdir()))
        settings, _ = parse_settings(["--modelpath", str(colour_model), "--intraop", str(intraop)], {})
        backend = OnnxRuntimeBackend(settings)
        grown = len(list(Path("/proc/self/task").iterdir())) - before
        del backend
        return grown

    assert threads_after(4) - threads_after(1) == 3


# CM variable -> (value, check). Each is the only setting that differs from a plain run.
CM_CASES: list[tuple[str, str, list[str], Callable[[Result, Path], bool]]] = [
    ("CM_MLPERF_LOADGEN_SCENARIO", "MultiStream", ["--duration", "0.05"],
     lambda r, _: eff(r, "scenario") == "MultiStream"),
    ("CM_MLPERF_CONCURRENCY", "3", ["--duration", "0.1", "--runner", "threadpool", "--max-batchsize", "1"],
     lambda r, _: seen(r, "workers_used") == 3),
    ("CM_MLPERF_EXEC_MODE", "parallel", SHORT, lambda r, _: session(r, "execution_mode") == "parallel"),
    ("CM_MLPERF_INTEROP", "3", SHORT, lambda r, _: session(r, "inter_op_num_threads") == 3),
    ("CM_MLPERF_INTRAOP", "1", SHORT, lambda r, _: session(r, "intra_op_num_threads") == 1),
    ("CM_MLPERF_OUTPUT_DIR", "{tmp}/cm-out", SHORT, lambda r, _: r["output_dir"].endswith("cm-out")),
    ("CM_MLPERF_RUNNER", "threadpool+replication", ["--duration", "0.1", "--concurrency", "2"],
     lambda r, _: seen(r, "runner") == "threadpool+replication"),
    ("CM_MLPERF_LOADGEN_SAMPLES", "40", ["--scenario", "SingleStream", "--duration", "0.05"],
     lambda r, _: r["qsl"]["total"] == 40),
    ("CM_ML_MODEL_FILE_WITH_PATH", "{colour}", SHORT, lambda r, _: r["model"]["path"].endswith("colour.onnx")),
]  # fmt: skip


@pytest.mark.parametrize(("variable", "value", "args", "check"), CM_CASES, ids=[c[0] for c in CM_CASES])
def test_each_cm_variable_takes_effect(
    variable: str,
    value: str,
    args: list[str],
    check: Callable[[Result, Path], bool],
    bench_model: Path,
    colour_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, value.format(tmp=tmp_path, colour=colour_model))
    argv = [*args]
    if variable != "CM_ML_MODEL_FILE_WITH_PATH":
        argv += ["--modelpath", str(bench_model)]
    if variable != "CM_MLPERF_OUTPUT_DIR":
        argv += ["--output-dir", str(tmp_path / "out")]
    if variable != "CM_MLPERF_LOADGEN_SAMPLES" and "--samples" not in argv:
        argv += ["--samples", "64"]
    assert main(argv) == 0
    result = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert result["sources"][next(k for k, v in result["sources"].items() if v == variable)] == variable
    assert check(result, tmp_path), json.dumps(result, indent=1)[:3000]


def test_cm_execution_provider_is_checked(bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CM_MLPERF_EXECUTION_PROVIDER", "CUDAExecutionProvider")
    rc, result = bench(bench_model, tmp_path, *SHORT)
    assert (rc, result) == (3, None)
