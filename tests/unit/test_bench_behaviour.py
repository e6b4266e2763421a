"""Every mlbox-bench option, every CM/MLC variable and every reference-app flag changes
what really happens.

These run the real harness (LoadGen and onnxruntime) on a tiny model, in process, and
check what LoadGen logged or what the runner observed, not what the settings say. Runs
are short, so LoadGen's VALID/INVALID verdict is not what they check: --allow-invalid.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlbox_bench.cli import main
from tests.support.gpu import no_gpu

Result = dict[str, Any]
SHORT = ["--scenario", "SingleStream", "--duration", "0.05", "--samples", "64"]
SERVER_900 = ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05"]


def bench(model: Path, out: Path, *args: str) -> tuple[int, Result | None]:
    rc = main(["--modelpath", str(model), "--output-dir", str(out), "--allow-invalid", *args])
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
    (
        "target_qps",
        ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05"],
        lambda r, _: eff(r, "target_qps") == 900,
    ),
    (
        "target_latency",
        ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05", "--target-latency", "40"],
        lambda r, _: eff(r, "target_latency_ns") == 40_000_000,
    ),
    (
        "latency_percentile",
        [*SHORT, "--latency-percentile", "97"],
        lambda r, _: eff(r, "target_latency_percentile") == pytest.approx(0.97),
    ),
    ("min_query_count", [*SHORT, "--min-query-count", "100"], lambda r, _: eff(r, "min_query_count") == 100),
    # 70 queries end before the duration (INVALID), so --allow-invalid keeps the exit 0.
    (
        "max_query_count",
        [*SHORT, "--max-query-count", "70", "--allow-invalid"],
        lambda r, _: eff(r, "max_query_count") == 70,
    ),
    ("samples", [*SHORT, "--samples", "48"], lambda r, _: r["qsl"]["total"] == 48),
    (
        "performance_sample_count",
        [*SHORT, "--performance-sample-count", "16"],
        lambda r, _: eff(r, "performance_sample_count") == 16,
    ),
    (
        "samples_per_query",
        ["--scenario", "MultiStream", "--duration", "0.05", "--samples-per-query", "4"],
        lambda r, _: eff(r, "samples_per_query") == 4,
    ),
    ("max_batchsize", ["--duration", "0.1", "--max-batchsize", "5"], lambda r, _: seen(r, "largest_batch") == 5),
    (
        "runner",
        ["--duration", "0.1", "--runner", "processpool", "--concurrency", "2"],
        lambda r, _: (seen(r, "runner"), seen(r, "workers_used")) == ("processpool", 2),
    ),
    # Half a second of batches of one: every worker gets work even when the machine is busy.
    (
        "concurrency",
        ["--duration", "0.5", "--runner", "threadpool", "--concurrency", "3", "--max-batchsize", "1"],
        lambda r, _: seen(r, "workers_used") == 3,
    ),
    ("execmode", [*SHORT, "--execmode", "parallel"], lambda r, _: session(r, "execution_mode") == "parallel"),
    ("intraop", [*SHORT, "--intraop", "1"], lambda r, _: session(r, "intra_op_num_threads") == 1),
    ("interop", [*SHORT, "--interop", "2"], lambda r, _: session(r, "inter_op_num_threads") == 2),
    ("weights", [*SHORT, "--weights", "synthetic"], lambda r, _: r["model"]["weights"] == "synthetic"),
    (
        "system_name",
        [*SHORT, "--submission-layout", "--system-name", "box1"],
        lambda r, out: (out / "submission/closed/mlbox/results/box1/resnet/SingleStream/performance/run_1").is_dir(),
    ),
    (
        "submitter",
        [*SHORT, "--submission-layout", "--submitter", "acme"],
        lambda r, out: (out / "submission/closed/acme/systems/mlbox.json").is_file(),
    ),
    (
        "division",
        [*SHORT, "--submission-layout", "--division", "open"],
        lambda r, out: json.loads((out / "submission/open/mlbox/systems/mlbox.json").read_text())["division"] == "open",
    ),
    # LoadGen stops at the maximum even though the minimum duration asks for longer.
    (
        "max_duration",
        ["--scenario", "SingleStream", "--samples", "64", "--duration", "5", "--max-duration", "0.2"],
        lambda r, _: (
            eff(r, "max_duration_ms") == 200 and any("Max test duration reached" in e for e in r["loadgen_errors"])
        ),
    ),
    (
        "data_format",
        ["--mode", "accuracy", "--samples", "8", "--data-format", "NCHW"],
        lambda r, _: r["sources"]["data_format"] == "flag --data-format",
    ),
    (
        "compliance",
        [*SHORT, "--compliance", "TEST04"],
        lambda r, _: eff(r, "performance_issue_same") is True and eff(r, "performance_issue_same_index") == 3,
    ),
]


@pytest.mark.parametrize(("option", "args", "check"), FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_each_flag_changes_what_runs(
    option: str, args: list[str], check: Callable[[Result, Path], bool], bench_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rc, result = bench(bench_model, out, *args)
    if result is None:  # submission layout: result.json is under runs/
        found = next((out / "runs").rglob("result.json"))
        result = json.loads(found.read_text())
    assert rc == 0
    assert result["sources"][option].startswith("flag"), result["sources"][option]
    assert check(result, out), json.dumps(result, indent=1)[:3000]


def test_model_name_selects_mlperf_conf_entries(bench_model: Path, tmp_path: Path) -> None:
    """--model picks mlperf.conf's rows: Server latency bound 15 ms for resnet50, 100 ms for retinanet."""
    common = ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05"]
    _, resnet = bench(bench_model, tmp_path / "a", *common)
    _, retina = bench(bench_model, tmp_path / "b", *common, "--model", "retinanet", "--task", "classification")
    assert resnet is not None
    assert retina is not None
    assert (eff(resnet, "target_latency_ns"), eff(retina, "target_latency_ns")) == (15_000_000, 100_000_000)


def test_modelpath_and_output_dir(bench_model: Path, colour_model: Path, tmp_path: Path) -> None:
    from mlbox_bench.files import file_sha256

    _, result = bench(colour_model, tmp_path / "elsewhere", *SHORT)
    assert result is not None
    assert result["model"]["sha256"] == file_sha256(colour_model) != file_sha256(bench_model)
    assert (tmp_path / "elsewhere" / "mlperf_log_detail.txt").is_file()


def test_allow_invalid_turns_exit_4_into_0(bench_model: Path, tmp_path: Path) -> None:
    # A 1 us latency bound cannot be met: LoadGen says INVALID.
    args = [
        "--modelpath",
        str(bench_model),
        "--scenario",
        "Server",
        "--target-qps",
        "900",
        "--duration",
        "0.05",
        "--target-latency",
        "0.001",
    ]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 4
    assert json.loads((tmp_path / "a" / "result.json").read_text())["validity"] == "INVALID"
    assert main([*args, "--output-dir", str(tmp_path / "b"), "--allow-invalid"]) == 0
    assert json.loads((tmp_path / "b" / "result.json").read_text())["validity"] == "INVALID"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        # A 1 us latency bound cannot be met, however fast the machine.
        (
            ["--scenario", "Server", "--target-qps", "900", "--duration", "0.05", "--target-latency", "0.001"],
            "Reduce target QPS to improve latency.",
        ),
        # A handful of samples of the tiny model end long before the 5 s minimum, however slow the machine.
        (
            ["--scenario", "Offline", "--target-qps", "1", "--duration", "5"],
            "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query.",
        ),
    ],
    ids=["latency", "duration"],
)
def test_an_invalid_run_says_loadgens_reason(
    args: list[str], reason: str, bench_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mlbox-bench"):
        rc, result = bench(bench_model, tmp_path / "out", *args)
    assert result is not None
    assert (rc, result["validity"], result["invalid_reason"]) == (0, "INVALID", reason)
    assert f"LoadGen's reason: {reason}" in caplog.messages
    summary = (tmp_path / "out" / "mlperf_log_summary.txt").read_text()
    assert f"* {reason}" in summary  # the reason LoadGen's own summary gives


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


# Counted in a process of its own: in the test process, threads that earlier tests left
# to wind down (a closed runner's, a collected session's) would be counted too.
THREAD_COUNT = """
import sys
from pathlib import Path
from mlbox_bench.backends import from_settings
from mlbox_bench.settings import parse_settings

def threads_after(intraop):
    before = len(list(Path("/proc/self/task").iterdir()))
    settings, _ = parse_settings(["--modelpath", sys.argv[1], "--intraop", str(intraop)], {})
    backend = from_settings(settings)
    return len(list(Path("/proc/self/task").iterdir())) - before, backend

warm = threads_after(1)  # the first session also starts onnxruntime's once-per-process threads
one, kept_1 = threads_after(1)
four, kept_4 = threads_after(4)
print(four - one)
"""


@pytest.mark.subprocess
def test_intraop_sets_onnxruntime_thread_count(colour_model: Path) -> None:
    """Counted at the OS: a session with N intra-op threads starts N - 1 pool threads."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", THREAD_COUNT, str(colour_model)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3"]


# CM variable -> (the setting it feeds, value, args, check). Each is the only setting that
# differs from a plain run; MLCommons' current automation spells each one MLC_*.
CM_CASES: list[tuple[str, str, str, list[str], Callable[[Result, Path], bool]]] = [
    (
        "CM_MLPERF_LOADGEN_SCENARIO",
        "scenario",
        "MultiStream",
        ["--duration", "0.05"],
        lambda r, _: eff(r, "scenario") == "MultiStream",
    ),
    (
        "CM_MLPERF_CONCURRENCY",
        "concurrency",
        "3",
        ["--duration", "0.5", "--runner", "threadpool", "--max-batchsize", "1"],
        lambda r, _: seen(r, "workers_used") == 3,
    ),
    ("CM_MLPERF_EXEC_MODE", "execmode", "parallel", SHORT, lambda r, _: session(r, "execution_mode") == "parallel"),
    ("CM_MLPERF_INTEROP", "interop", "3", SHORT, lambda r, _: session(r, "inter_op_num_threads") == 3),
    ("CM_MLPERF_INTRAOP", "intraop", "1", SHORT, lambda r, _: session(r, "intra_op_num_threads") == 1),
    ("CM_MLPERF_OUTPUT_DIR", "output_dir", "{tmp}/cm-out", SHORT, lambda r, _: r["output_dir"].endswith("cm-out")),
    (
        "CM_MLPERF_RUNNER",
        "runner",
        "threadpool+replication",
        ["--duration", "0.1", "--concurrency", "2"],
        lambda r, _: seen(r, "runner") == "threadpool+replication",
    ),
    (
        "CM_MLPERF_LOADGEN_SAMPLES",
        "samples",
        "40",
        ["--scenario", "SingleStream", "--duration", "0.05"],
        lambda r, _: r["qsl"]["total"] == 40,
    ),
    (
        "CM_ML_MODEL_FILE_WITH_PATH",
        "modelpath",
        "{colour}",
        SHORT,
        lambda r, _: r["model"]["path"].endswith("colour.onnx"),
    ),
    (
        "CM_MLPERF_LOADGEN_EXPECTED_QPS",
        "target_qps",
        "321",
        ["--scenario", "Server", "--duration", "0.05"],
        lambda r, _: eff(r, "target_qps") == 321,
    ),
    (
        "CM_MLPERF_LOADGEN_DURATION_SEC",
        "duration",
        "0.15",
        ["--scenario", "SingleStream"],
        lambda r, _: eff(r, "min_duration_ms") == 150,
    ),
    (
        "CM_MLPERF_BACKEND",
        "backend",
        "onnxruntime",
        SHORT,
        lambda r, _: r["backend"]["name"] == "onnxruntime" and r["backend"]["version"],
    ),
]
ALIAS_CASES = [
    (prefix + name.removeprefix("CM_"), setting, value, args, check)
    for name, setting, value, args, check in CM_CASES
    for prefix in ("CM_", "MLC_")
]


@pytest.mark.parametrize(
    ("variable", "setting", "value", "args", "check"), ALIAS_CASES, ids=[c[0] for c in ALIAS_CASES]
)
def test_each_cm_and_mlc_variable_takes_effect(
    variable: str,
    setting: str,
    value: str,
    args: list[str],
    check: Callable[[Result, Path], bool],
    bench_model: Path,
    colour_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, value.format(tmp=tmp_path, colour=colour_model))
    argv = [*args, "--allow-invalid"]
    if setting != "modelpath":
        argv += ["--modelpath", str(bench_model)]
    if setting != "output_dir":
        argv += ["--output-dir", str(tmp_path / "out")]
    if setting != "samples" and "--samples" not in argv:
        argv += ["--samples", "64"]
    assert main(argv) == 0
    result = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert result["sources"][setting] == variable
    assert check(result, tmp_path), json.dumps(result, indent=1)[:3000]


def test_mlc_variable_wins_over_its_cm_predecessor(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlbox_bench.settings import parse_settings

    s, _ = parse_settings([], {"CM_MLPERF_LOADGEN_SCENARIO": "Server", "MLC_MLPERF_LOADGEN_SCENARIO": "SingleStream"})
    assert (s.scenario, s.sources["scenario"]) == ("SingleStream", "MLC_MLPERF_LOADGEN_SCENARIO")


@no_gpu
@pytest.mark.parametrize("variable", ["CM_MLPERF_EXECUTION_PROVIDER", "MLC_MLPERF_EXECUTION_PROVIDER"])
def test_cm_execution_provider_is_checked(
    variable: str,
    bench_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, "CUDAExecutionProvider")
    rc, result = bench(bench_model, tmp_path, *SHORT)
    assert (rc, result) == (3, None)
    err = capsys.readouterr().err
    assert "execution provider CUDAExecutionProvider is not available in this onnxruntime" in err
    assert "--gpus all" in err  # what to do about it


def test_an_unknown_backend_is_refused_by_its_variable(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLC_MLPERF_BACKEND", "tensorrt")
    assert bench(bench_model, tmp_path, *SHORT) == (2, None)
    assert "MLC_MLPERF_BACKEND: 'tensorrt' is not one of onnxruntime, pytorch" in capsys.readouterr().err
    monkeypatch.setenv("MLC_MLPERF_BACKEND", "pytorch")  # a backend that cannot load an ONNX file
    assert bench(bench_model, tmp_path, *SHORT) == (2, None)
    assert "MLC_MLPERF_BACKEND: backend pytorch cannot load onnx models (onnxruntime does)" in capsys.readouterr().err


# MLCommons' reference app's flags, with its meaning and units (main.py in
# vision/classification_and_detection/python): (flag args, setting(s) it feeds, check).
REFERENCE_CASES: list[tuple[list[str], list[str], Callable[[Result, Path], bool]]] = [
    (["--accuracy", "--samples", "20"], ["mode"], lambda r, _: eff(r, "test_mode") == "AccuracyOnly"),
    (
        ["--find-peak-performance", "--scenario", "Server", "--duration", "0.1", "--target-latency", "50"],
        ["mode"],
        lambda r, _: eff(r, "test_mode") == "FindPeakPerformance",
    ),
    (
        ["--time", "0.25", *SHORT[:2]],
        ["duration", "max_duration"],
        lambda r, _: (eff(r, "min_duration_ms"), eff(r, "max_duration_ms")) == (250, 250),
    ),
    (
        ["--qps", "456", "--scenario", "Server", "--duration", "0.05"],
        ["target_qps"],
        lambda r, _: eff(r, "target_qps") == 456,
    ),
    (
        ["--qps", "4567", "--scenario", "Offline", "--duration", "0.05"],
        ["target_qps"],
        lambda r, _: eff(r, "target_qps") == 4567,
    ),
    (
        ["--max-latency", "0.04", "--scenario", "Server", "--target-qps", "900", "--duration", "0.05"],
        ["target_latency"],
        lambda r, _: eff(r, "target_latency_ns") == 40_000_000,
    ),  # seconds, as the reference
    (
        ["--max-latency", "0.002", "--scenario", "MultiStream", "--duration", "0.05"],
        ["target_latency"],
        lambda r, _: r["harness"]["applied_test_settings"]["multi_stream_expected_latency_ns"] == 2_000_000,
    ),
    (
        ["--threads", "3", "--duration", "0.5", "--max-batchsize", "1"],
        ["concurrency", "runner"],
        lambda r, _: (seen(r, "runner"), seen(r, "workers_used")) == ("threadpool", 3),
    ),
    (
        ["--count", "24", "--scenario", "SingleStream", "--duration", "0.05"],
        ["samples", "min_query_count", "max_query_count"],
        lambda r, _: (r["qsl"]["total"], eff(r, "min_query_count"), eff(r, "max_query_count")) == (24, 24, 24),
    ),
    (
        [*("--model-name", "retinanet", "--task", "classification"), *SERVER_900],
        ["model"],
        lambda r, _: eff(r, "target_latency_ns") == 100_000_000,
    ),
    (
        ["--dataset-path", "{dataset}", "--mode", "accuracy", "--modelpath", "{colour}"],
        ["dataset"],
        lambda r, _: r["accuracy"]["total"] == 12,
    ),
    (
        ["--data-format", "NCHW", "--dataset-path", "{dataset}", "--mode", "accuracy", "--modelpath", "{colour}"],
        ["data_format"],
        lambda r, _: r["accuracy"]["top1"] == 0.75,
    ),
    (
        ["--audit_conf", "{audit}", *SHORT],
        ["audit_conf"],
        lambda r, out: (
            eff(r, "accuracy_log_sampling_target") == 77
            and (out / "audit.config").read_text() == "*.*.accuracy_log_sampling_target = 77\n"
        ),
    ),
    (["--user_conf", "{conf}", *SHORT], ["user_conf"], lambda r, _: eff(r, "min_query_count") == 123),
]


@pytest.mark.parametrize(
    ("args", "settings", "check"),
    REFERENCE_CASES,
    ids=[" ".join(c[0][:1]) + f"-{i}" for i, c in enumerate(REFERENCE_CASES)],
)
@pytest.mark.subprocess
def test_each_reference_app_flag_takes_effect(
    args: list[str],
    settings: list[str],
    check: Callable[[Result, Path], bool],
    bench_model: Path,
    colour_model: Path,
    colour_data: tuple[Path, float],
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    audit, conf = tmp_path / "my-audit.config", tmp_path / "my-user.conf"
    audit.write_text("*.*.accuracy_log_sampling_target = 77\n")
    conf.write_text("*.SingleStream.min_query_count = 123\n")
    argv = [a.format(dataset=colour_data[0], colour=colour_model, audit=audit, conf=conf) for a in args]
    if "--modelpath" not in argv:
        argv = ["--modelpath", str(bench_model), *argv]
    out = tmp_path / "out"
    # Its own process: a user.conf may reach LoadGen once per process.
    proc = subprocess.run(
        [sys.executable, "-m", "mlbox_bench", *argv, "--output-dir", str(out), "--allow-invalid"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    for name in settings:  # set from the command line (a variable or default would not count)
        assert result["sources"][name].startswith("flag --"), (name, result["sources"][name])
    assert check(result, out), json.dumps(result, indent=1)[:3000]


@pytest.mark.parametrize("value", ["/models/resnet50_v1.onnx", "resnet50_v1.onnx", "model.tflite"])
def test_a_file_given_as_model_name_is_refused_with_a_hint(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", value, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"flag --model: {value!r} looks like a model file" in err
    assert "pass the file with --modelpath" in err


def test_a_reference_flag_and_an_mlbox_flag_that_disagree_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--accuracy", "--mode", "performance"]) == 2
    assert "flag --accuracy and flag --mode both set mode" in capsys.readouterr().err


def test_a_setting_that_does_not_apply_to_the_scenario_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--qps", "10", "--scenario", "SingleStream"]) == 2
    assert "flag --target-qps: target_qps does not apply to SingleStream (LoadGen uses it in Server, Offline)" in (
        capsys.readouterr().err
    )


def test_data_format_that_contradicts_the_model_is_refused(
    colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _ = bench(
        colour_model, tmp_path, "--mode", "accuracy", "--dataset", str(colour_data[0]), "--data-format", "NHWC"
    )
    assert rc == 3
    assert "--data-format NHWC: the model's input input_tensor:0 (3, 224, 224) is NCHW" in capsys.readouterr().err


def test_nhwc_model_reads_nhwc_samples(colour_data: tuple[Path, float], tmp_path: Path) -> None:
    from tests.support.colors import colour_classifier

    model = colour_classifier(tmp_path / "nhwc.onnx", layout="NHWC")
    rc, result = bench(
        model, tmp_path / "out", "--mode", "accuracy", "--dataset", str(colour_data[0]), "--data-format", "NHWC"
    )
    assert rc == 0
    assert result is not None
    assert result["accuracy"]["top1"] == colour_data[1]
