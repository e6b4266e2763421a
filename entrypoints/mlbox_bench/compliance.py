"""MLPerf compliance tests TEST01 and TEST04: their official audit settings, and their
verification, re-implemented from MLCommons' scripts (compliance/TEST01/run_verification.py
with verify_accuracy.py and verify_performance.py, compliance/TEST04/verify_performance.py).

TEST01 (accuracy in performance mode): LoadGen logs a sample of the responses of a
performance run; each must equal the accuracy run's response for the same sample, and
the run's score must be within 10% (20% for fast SingleStream/MultiStream) of the
performance run's. TEST04 (no caching): every query repeats one sample; the run must not
be more than 10% (20%) faster than the performance run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlbox_bench.errors import BenchError
from mlbox_bench.mlperf import conf_name
from mlbox_bench.report import CHECKER_METRIC, parse_detail_log

_HEADER = """# The format of this config file is 'key = value'.
# The key has the format 'model.scenario.key'. Value is mostly int64_t.
# Model maybe '*' as wildcard. In that case the value applies to all models.
# All times are in milli seconds
"""


def _test01(sampling_target: int) -> str:
    return (
        _HEADER + "\n# mode dictionary (0 = submission, 1 = accuracy, 2 = performance, 3 = find peak perf)\n"
        "*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n"
        f"*.*.accuracy_log_sampling_target = {sampling_target}\n"
    )


_TEST04 = _HEADER + "".join(
    f"*.{sc}.mode = 2\n*.{sc}.performance_issue_unique = 0\n*.{sc}.performance_issue_same = 1\n"
    f"*.{sc}.performance_issue_same_index = 3\n"
    for sc in ("MultiStream", "Offline", "SingleStream", "Server")
)

# compliance/TEST01/<model>/audit.config and compliance/TEST04/audit.config, as published
# (TEST04 exempts retinanet: its run time depends on the detections).
AUDIT_CONFIGS = {
    ("TEST01", "resnet50"): _test01(4096),
    ("TEST01", "retinanet"): _test01(256),
    ("TEST04", "resnet50"): _TEST04,
}


def audit_text(test: str, model: str) -> str:
    """The test's audit.config for the model, under any of its names (the published
    folders are named as mlperf.conf names the model)."""
    try:
        return AUDIT_CONFIGS[(test, conf_name(model))]
    except KeyError:
        known = ", ".join(m for t, m in AUDIT_CONFIGS if t == test)
        msg = f"--compliance {test}: MLPerf has no {test} audit.config for model {model!r} (mlbox-bench has: {known})"
        raise BenchError(msg) from None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str  # what the official script prints, ending in TEST PASS or TEST FAIL


def verify_accuracy(reference_log: Path, test_log: Path) -> Verdict:
    """TEST01: the sampled responses of the performance run against the accuracy run's,
    as compliance/TEST01/verify_accuracy.py compares them with --dtype float32: an empty
    response matches only an empty one; otherwise the first value decides (a detector's
    first value is the sample index, so its detections may differ in number)."""
    reference = json.loads(reference_log.read_text(encoding="utf-8"))
    test = json.loads(test_log.read_text(encoding="utf-8"))
    answers: dict[int, str] = {}
    duplicates = reference_mismatch = 0
    for entry in reference:
        index, data = int(entry["qsl_idx"]), str(entry["data"])
        if index in answers:
            duplicates += 1
            reference_mismatch += answers[index] != data
        else:
            answers[index] = data
    matched = mismatched = missing = 0
    for entry in test:
        index = int(entry["qsl_idx"])
        if index not in answers:
            missing += 1
            continue
        matched += 1
        ours = np.frombuffer(bytes.fromhex(entry["data"]), np.float32)
        theirs = np.frombuffer(bytes.fromhex(answers[index]), np.float32)
        if ours.size == 0 or theirs.size == 0:
            mismatched += ours.size != theirs.size
        elif ours[0] != theirs[0]:
            mismatched += 1
    passed = mismatched == 0 and matched > 0
    lines = [
        f"num_acc_log_entries = {len(reference)}",
        f"num_acc_log_duplicate_keys = {duplicates}",
        f"num_acc_log_data_mismatch = {reference_mismatch}",
        f"num_perf_log_entries = {len(test)}",
        f"num_perf_log_qsl_idx_match = {matched}",
        f"num_perf_log_data_mismatch = {mismatched}",
        f"num_missing_qsl_idxs = {missing}",
        "TEST PASS" if passed else "TEST FAIL",
    ]
    return Verdict(passed, "\n".join(lines) + "\n")


def _score(detail: Path) -> tuple[str, float, object, str]:
    log = parse_detail_log(detail)
    scenario = str(log.get("effective_scenario"))
    key = CHECKER_METRIC[scenario][0]
    return scenario, float(log.get(key) or 0), log.get("effective_target_latency_ns"), str(log.get("result_validity"))


def _threshold(scenario: str, latency_ns: float) -> float:
    """10%, or 20% when the score is at most 200000 (SingleStream) or 1600000
    (MultiStream): there the run-to-run noise of the OS is large. As in the official
    scripts, the score is a latency in ns for TEST01 and a rate for TEST04."""
    fast = {"SingleStream": 200_000, "MultiStream": 1_600_000}
    return 0.20 if latency_ns <= fast.get(scenario, -1) else 0.10


def verify_performance(test: str, reference_detail: Path, test_detail: Path) -> Verdict:
    ref_sc, ref_score, ref_latency, ref_valid = _score(reference_detail)
    test_sc, test_score, test_latency, test_valid = _score(test_detail)
    lines = ["Verifying performance."]
    if ref_valid != "VALID" or test_valid != "VALID":
        which = reference_detail if ref_valid != "VALID" else test_detail
        return Verdict(False, "\n".join([*lines, f"TEST FAIL: Invalid results in {which}"]) + "\n")
    if ref_sc != test_sc:
        return Verdict(False, "\n".join([*lines, "TEST FAIL: Test and reference scenarios do not match!"]) + "\n")
    if ref_sc == "Server" and ref_latency != test_latency:
        return Verdict(False, "\n".join([*lines, "TEST FAIL: Server target latency mismatch"]) + "\n")
    if test == "TEST04":
        # Higher is better here: latencies become rates, as TEST04's script reads them
        # (its 20% rule then compares the rate with the same limits).
        if ref_sc in ("SingleStream", "MultiStream"):
            ref_score, test_score = 1e9 / ref_score, 1e9 / test_score
        passed = test_score < ref_score * (1 + _threshold(ref_sc, ref_score))
    else:
        threshold = _threshold(ref_sc, ref_score)
        passed = ref_score * (1 - threshold) <= test_score <= ref_score * (1 + threshold)
    lines += [f"Reference score = {ref_score}", f"Test score = {test_score}"]
    lines.append("TEST PASS" if passed else "TEST FAIL: Test score invalid")
    return Verdict(passed, "\n".join(lines) + "\n")
