"""mlbox-bench's outputs read as MLCommons' own tools read them.

The official tools are not part of this repository; their documented behaviour is
re-implemented here, independently of mlbox_bench: accuracy-imagenet.py decodes each
accuracy-log entry as float32 and compares it with val_map.txt's label with no offset;
the submission checker reads RESULT_FIELD_NEW's key from the detail log, the first record
when a key repeats; truncate_accuracy_log.py keeps 4 KiB from each end and appends
``hash=<sha256 of the full log>`` to accuracy.txt.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlbox_bench.cli import main
from tests.support.colors import colour_classifier

# tools/submission/submission_checker/constants.py, RESULT_FIELD_NEW["v6.1"]
CHECKER_KEYS = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
}


def official_accuracy_line(log: Path, val_map: Path) -> str:
    """accuracy-imagenet.py with its default flags (--dtype float32, no offset)."""
    labels = [int(line.split()[1]) for line in val_map.read_text().splitlines()]
    seen: set[int] = set()
    good = 0
    for entry in json.loads(log.read_text()):
        if entry["qsl_idx"] in seen:
            continue
        seen.add(entry["qsl_idx"])
        found = int(np.frombuffer(bytes.fromhex(entry["data"]), np.float32)[0])
        good += labels[entry["qsl_idx"]] == found
    return f"accuracy={100.0 * good / len(seen):.3f}%, good={good}, total={len(seen)}"


def first_wins(detail: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for line in detail.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            record = json.loads(line[len(":::MLLOG ") :])
            values.setdefault(record["key"], record["value"])
    return values


def bench_process(*args: str) -> subprocess.CompletedProcess[str]:
    """mlbox-bench in its own process (LoadGen reads a user.conf once per process)."""
    return subprocess.run([sys.executable, "-m", "mlbox_bench", *args], capture_output=True, text=True, check=False)


@pytest.mark.subprocess
@pytest.mark.parametrize("classes", [1001, 1000])
def test_accuracy_log_scores_the_same_with_the_official_decoding(
    classes: int, colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    dataset, expected = colour_data
    model = colour_classifier(tmp_path / f"colour{classes}.onnx", classes=classes)
    out = tmp_path / "out"
    args = ["--modelpath", str(model), "--mode", "accuracy", "--dataset", str(dataset), "--output-dir", str(out)]
    assert main([*args, "--preprocessed-dir", str(tmp_path / "prep")]) == 0
    line = (out / "accuracy.txt").read_text().strip()
    val_map = dataset / "val_map.txt"
    assert official_accuracy_line(out / "mlperf_log_accuracy.json", val_map) == line
    assert line == f"accuracy={100 * expected:.3f}%, good=9, total=12"
    # mlbox's scorer with the official script's flags and defaults reads it the same way.
    script = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlbox_bench.accuracy",
            "--mlperf-accuracy-file",
            str(out / "mlperf_log_accuracy.json"),
            "--imagenet-val-file",
            str(val_map),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert script.stdout.strip() == line


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_metric_is_the_one_the_checker_reads(scenario: str, bench_model: Path, tmp_path: Path) -> None:
    args = ["--modelpath", str(bench_model), "--scenario", scenario, "--duration", "0.1", "--samples", "64"]
    assert main([*args, "--output-dir", str(tmp_path), "--allow-invalid"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    log = first_wins(tmp_path / "mlperf_log_detail.txt")
    assert result["metric"]["name"] == CHECKER_KEYS[scenario]
    assert result["metric"]["value"] == log[CHECKER_KEYS[scenario]]
    plain = {
        "SingleStream": "result_90.00_percentile_latency_ns",
        "MultiStream": "result_99.00_percentile_per_query_latency_ns",
    }.get(scenario, CHECKER_KEYS[scenario])
    assert result["plain_metric"]["value"] == log[plain]


def test_a_repeated_key_reads_as_its_first_record(tmp_path: Path) -> None:
    from mlbox_bench.report import parse_detail_log

    detail = tmp_path / "mlperf_log_detail.txt"
    detail.write_text(
        ':::MLLOG {"key": "result_validity", "value": "VALID", "metadata": {}}\n'
        ':::MLLOG {"key": "result_validity", "value": "INVALID", "metadata": {}}\n'
    )
    assert parse_detail_log(detail)["result_validity"] == first_wins(detail)["result_validity"] == "VALID"


def test_an_accuracy_run_reports_no_performance_validity(bench_model: Path, tmp_path: Path) -> None:
    assert (
        main(["--modelpath", str(bench_model), "--mode", "accuracy", "--samples", "16", "--output-dir", str(tmp_path)])
        == 0
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["validity"] == "VALID"  # every sample answered and logged
    assert {"latency_ns", "early_stopping", "plain_metric"}.isdisjoint(result)


def user_conf_fields(conf: Path, model: str, scenario: str, names: list[str]) -> dict[str, Any]:
    """The TestSettings a fresh LoadGen makes of mlperf.conf plus this user.conf."""
    code = (
        "import json, sys, mlperf_loadgen as lg\n"
        "ts = lg.TestSettings()\n"
        "assert ts.FromConfig(sys.argv[1], sys.argv[2], sys.argv[3], 1) == 0\n"
        "print(json.dumps({n: getattr(ts, n) for n in sys.argv[4:]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(conf), model, scenario, *names], capture_output=True, text=True, check=True
    )
    values: dict[str, Any] = json.loads(proc.stdout)
    return values


@pytest.mark.subprocess
@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_submission_tree_for_every_scenario(
    scenario: str, colour_model: Path, colour_data: tuple[Path, float], tmp_path: Path
) -> None:
    """performance, accuracy, TEST01 and TEST04, as the checker's file lists want them."""
    dataset, expected = colour_data
    out = tmp_path / "out"
    common = [
        "--modelpath",
        str(colour_model),
        "--dataset",
        str(dataset),
        "--scenario",
        scenario,
        "--preprocessed-dir",
        str(tmp_path / "prep"),
        "--submission-layout",
        "--system-name",
        "box1",
        "--submitter",
        "acme",
        "--output-dir",
        str(out),
        "--allow-invalid",
    ]
    short = ["--duration", "0.3", *(["--target-latency", "100"] if scenario == "Server" else [])]
    for extra in ([*short], ["--mode", "accuracy"], ["--compliance", "TEST01"], ["--compliance", "TEST04"]):
        proc = bench_process(*common, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # The v6.1 checker's name for resnet50 (submission_checker constants.py MODEL_CONFIG).
    base = out / "submission" / "closed" / "acme" / "results" / "box1" / "resnet" / scenario
    runs = out / "runs" / "box1" / "resnet" / scenario
    files = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    logs = {"mlperf_log_summary.txt", "mlperf_log_detail.txt"}
    assert files == {
        *(f"performance/run_1/{n}" for n in logs),
        *(f"accuracy/{n}" for n in [*logs, "accuracy.txt", "mlperf_log_accuracy.json"]),
        "TEST01/verify_accuracy.txt",
        "TEST01/verify_performance.txt",
        *(f"TEST01/performance/run_1/{n}" for n in logs),
        *(
            f"TEST01/accuracy/{n}"
            for n in ["mlperf_log_accuracy.json", "accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt"]
        ),
        "TEST04/verify_performance.txt",
        *(f"TEST04/performance/run_1/{n}" for n in logs),
        "user.conf",
        "measurements.json",
        "README.md",
    }
    # accuracy.txt: the score, then the hash of the full log (kept under runs/).
    lines = (base / "accuracy" / "accuracy.txt").read_text().split("\n")
    full = runs / "accuracy" / "mlperf_log_accuracy.json"
    assert lines[0] == official_accuracy_line(full, dataset / "val_map.txt")
    assert lines[0].startswith(f"accuracy={100 * expected:.3f}%")
    assert f"hash={hashlib.sha256(full.read_bytes()).hexdigest()}" in lines
    # TEST01: the sampled answers of the performance run equal the accuracy run's.
    assert (base / "TEST01" / "verify_accuracy.txt").read_text().strip().endswith("TEST PASS")
    for test in ("TEST01", "TEST04"):
        audit = runs / test / "audit.config"
        assert audit.is_file(), "the audit settings are written into the run's own directory"
        assert first_wins(runs / test / "mlperf_log_detail.txt")["warning_generic_message"].startswith(
            "Found Audit Config file"
        )
    # The compliance runs repeated the performance run's settings: its user.conf.
    result = json.loads((runs / "TEST04" / "result.json").read_text())
    assert result["sources"]["user_conf"] == "submission user.conf"
    # systems/<system>.json: the fields MLCommons requires, submitter and division as the tree says.
    system = json.loads((out / "submission/closed/acme/systems/box1.json").read_text())
    assert (system["submitter"], system["division"], system["number_of_nodes"]) == ("acme", "closed", "1")
    assert system["status"].startswith("FILL IN: ")  # only a person can say
    measurements = json.loads((base / "measurements.json").read_text())
    assert measurements["starting_weights_filename"] == colour_model.name
    assert (out / "submission/closed/acme/src/mlbox_bench/run.py").is_file()


@pytest.mark.subprocess
@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_user_conf_reproduces_the_run(scenario: str, bench_model: Path, tmp_path: Path) -> None:
    """LoadGen reading the written user.conf sets every field the run set on top of
    mlperf.conf: flags and calibration alike (MultiStream's expected latency included)."""
    extra = {"Server": ["--target-latency", "40"], "MultiStream": ["--samples-per-query", "4"]}.get(scenario, [])
    args = (
        [
            "--modelpath",
            str(bench_model),
            "--scenario",
            scenario,
            "--duration",
            "0.2",
            "--samples",
            "64",
            "--latency-percentile",
            "90",
            *extra,
        ]
        if scenario != "Offline"
        else ["--modelpath", str(bench_model), "--duration", "0.2", "--samples", "64"]
    )
    proc = bench_process(*args, "--submission-layout", "--output-dir", str(tmp_path), "--allow-invalid")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next((tmp_path / "runs").rglob("result.json")).read_text())
    applied = result["harness"]["applied_test_settings"]
    calibrated = {"Offline": "offline_expected_qps", "Server": "server_target_qps"}.get(
        scenario, f"{'single' if scenario == 'SingleStream' else 'multi'}_stream_expected_latency_ns"
    )
    assert calibrated in applied
    conf = next(tmp_path.rglob("user.conf"))
    loaded = user_conf_fields(conf, "resnet50", scenario, sorted(applied))
    for name, value in applied.items():
        assert loaded[name] == pytest.approx(value, rel=1e-9, abs=1), name


def test_truncated_accuracy_log_is_truncate_accuracy_logs() -> None:
    from mlbox_bench.submission import truncated

    text = "".join(f'{{"seq_id": {i}, "qsl_idx": {i}, "data": "0000803F"}},\n' for i in range(500))
    assert truncated(text) == text[:4096] + "\n\n...\n\n" + text[-4096:]
    assert truncated(text[:100]) == text[:100]


def test_compliance_needs_its_reference_runs(
    bench_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "--modelpath",
            str(bench_model),
            "--compliance",
            "TEST01",
            "--submission-layout",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "--compliance TEST01 is verified against this scenario's performance and accuracy runs" in err
    assert "run them first" in err


def test_a_stray_audit_config_in_the_working_directory_is_never_read(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit.config").write_text("*.*.performance_issue_same = 1\n*.*.performance_issue_same_index = 3\n")
    args = ["--modelpath", str(bench_model), "--scenario", "SingleStream", "--duration", "0.05", "--samples", "64"]
    assert main([*args, "--output-dir", str(tmp_path / "a"), "--allow-invalid"]) == 0
    log = first_wins(tmp_path / "a" / "mlperf_log_detail.txt")
    assert log["effective_performance_issue_same"] is False
    assert "warning_generic_message" not in log or "Audit" not in str(log["warning_generic_message"])
    # --compliance writes the official file into the run's directory, and LoadGen reads that.
    assert main([*args, "--compliance", "TEST04", "--output-dir", str(tmp_path / "b"), "--allow-invalid"]) == 0
    from mlbox_bench.compliance import AUDIT_CONFIGS

    assert (tmp_path / "b" / "audit.config").read_text() == AUDIT_CONFIGS[("TEST04", "resnet50")]
    log = first_wins(tmp_path / "b" / "mlperf_log_detail.txt")
    assert (log["effective_performance_issue_same"], log["effective_performance_issue_same_index"]) == (True, 3)


def _entries(values: list[float]) -> list[dict[str, Any]]:
    return [{"seq_id": i, "qsl_idx": i, "data": np.float32(v).tobytes().hex()} for i, v in enumerate(values)]


def test_test01_accuracy_verification_finds_a_changed_answer(tmp_path: Path) -> None:
    from mlbox_bench.compliance import verify_accuracy

    reference, same, changed = tmp_path / "ref.json", tmp_path / "same.json", tmp_path / "changed.json"
    reference.write_text(json.dumps(_entries([3, 1, 4, 1])))
    same.write_text(json.dumps(_entries([3, 1])))
    changed.write_text(json.dumps(_entries([3, 2])))
    assert verify_accuracy(reference, same).text.endswith("TEST PASS\n")
    failed = verify_accuracy(reference, changed)
    assert not failed.passed
    assert "num_perf_log_data_mismatch = 1" in failed.text


def _detail(path: Path, scenario: str, score: float, validity: str = "VALID") -> Path:
    records = [
        ("effective_scenario", scenario),
        (CHECKER_KEYS[scenario], score),
        ("result_validity", validity),
        ("effective_target_latency_ns", 15_000_000),
    ]
    path.write_text("".join(f":::MLLOG {json.dumps({'key': k, 'value': v, 'metadata': {}})}\n" for k, v in records))
    return path


@pytest.mark.parametrize(
    ("test", "scenario", "reference", "score", "passed"),
    [
        ("TEST01", "Offline", 1000.0, 1090.0, True),
        ("TEST01", "Offline", 1000.0, 1110.0, False),  # 10% either way
        ("TEST01", "SingleStream", 150_000.0, 179_000.0, True),  # 20% for a fast SingleStream
        ("TEST04", "Offline", 1000.0, 1099.0, True),  # may be slower, at most 10% faster
        ("TEST04", "Offline", 1000.0, 1101.0, False),
        ("TEST04", "SingleStream", 1_000_000.0, 700_000.0, False),  # latency: faster is lower
    ],
)
def test_performance_verification_thresholds(
    test: str, scenario: str, reference: float, score: float, passed: bool, tmp_path: Path
) -> None:
    from mlbox_bench.compliance import verify_performance

    verdict = verify_performance(
        test, _detail(tmp_path / "ref.txt", scenario, reference), _detail(tmp_path / "test.txt", scenario, score)
    )
    assert verdict.passed is passed, verdict.text
    assert verdict.text.strip().endswith("TEST PASS" if passed else "TEST FAIL: Test score invalid")


def test_performance_verification_refuses_an_invalid_reference(tmp_path: Path) -> None:
    from mlbox_bench.compliance import verify_performance

    ref = _detail(tmp_path / "ref.txt", "Offline", 1000.0, "INVALID")
    verdict = verify_performance("TEST01", ref, _detail(tmp_path / "test.txt", "Offline", 1000.0))
    assert verdict.text.strip().endswith(f"TEST FAIL: Invalid results in {ref}")
