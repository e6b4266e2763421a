"""mlbox-bench: parse settings once, run LoadGen, write result.json, exit with the verdict."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from mlbox_bench import __version__
from mlbox_bench.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_USAGE, EXIT_VALID, BenchError
from mlbox_bench.settings import Settings, SettingsError, parse_settings

log = logging.getLogger("mlbox-bench")


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop the run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="mlbox-bench: %(message)s", stream=sys.stderr)
    try:
        settings, print_only = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as err:
        print(f"mlbox-bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if print_only:
        print(json.dumps(settings.describe(), indent=2))
        return EXIT_VALID
    previous = _stop_on_signals()
    tighten_timer_slack()
    try:
        return run(settings)
    except BenchError as err:
        print(f"mlbox-bench: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as err:
        # Workers are stopped and temp files gone (the `finally` blocks ran); LoadGen's
        # own thread cannot be stopped mid-test, so leave without waiting for it.
        print(f"mlbox-bench: {err}: stopped; no result.json was written (LoadGen's logs are partial)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED if err.signum == signal.SIGINT else 128 + err.signum)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_dir_for(s: Settings) -> Path:
    """Where LoadGen's logs go: the output dir, or MLPerf's submission layout under it."""
    out = Path(s.output_dir)
    if not s.submission_layout:
        return out
    base = out / "results" / s.system_name / s.model / s.scenario
    return base / "accuracy" if s.mode == "accuracy" else base / "performance" / "run_1"


def run(s: Settings) -> int:
    from mlbox_bench.backend import OnnxRuntimeBackend
    from mlbox_bench.data import ImagenetData, SampleLibrary, SyntheticData
    from mlbox_bench.harness import run_loadgen

    run_dir = run_dir_for(s)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # LoadGen skips the run without it
    except OSError as err:
        msg = f"cannot create output directory {run_dir}: {err.strerror}"
        raise BenchError(msg + " (mount a writable directory there)") from None
    for stale in ("result.json", "accuracy.txt"):  # a previous run's verdict must not outlive its logs
        (run_dir / stale).unlink(missing_ok=True)
    if s.weights == "synthetic":
        log.warning("SYNTHETIC WEIGHTS: this model has random weights; performance only, accuracy is meaningless")
    backend = OnnxRuntimeBackend(s)

    def make_data(perf_count: int) -> SampleLibrary:
        if s.dataset is not None:
            prep = Path(s.preprocessed_dir) if s.preprocessed_dir else None
            return ImagenetData(backend.io, Path(s.dataset), s.samples, prep)
        return SyntheticData(backend.io, s.samples or perf_count)

    log.info(
        "%s %s run: model %s on %s (%s, runner %s, %d worker(s)), %s inputs",
        s.scenario,
        s.mode,
        s.modelpath,
        backend.provider,
        s.execmode,
        s.runner,
        1 if s.runner == "inline" else s.concurrency,
        "dataset " + s.dataset if s.dataset else "synthetic",
    )
    facts, data = run_loadgen(s, backend, make_data, run_dir)
    result = _result(s, backend, facts, run_dir)
    if s.mode == "accuracy":
        result["accuracy"] = acc = _accuracy(s, backend, data.labels, run_dir)
        # LoadGen does not judge accuracy runs: VALID means every sample was answered and logged.
        complete = acc["logged_samples"] == data.count and not result["loadgen_errors"]
        result["validity"] = "VALID" if complete else "INVALID"
        result["metric"] = {"name": "top1_accuracy", "value": acc.get("top1"), "unit": "fraction"}
    if s.submission_layout:
        result["user_conf"] = str(_write_user_conf(s, facts))

    from mlbox_bench.results import write_json_atomic

    write_json_atomic(run_dir / "result.json", result)
    metric = result["metric"]
    log.info("%s: %s = %s %s", result["validity"], metric["name"], metric["value"], metric["unit"])
    print(run_dir / "result.json")
    if result["validity"] == "VALID" or s.allow_invalid:
        return EXIT_VALID
    log.warning("LoadGen judged this run INVALID (see mlperf_log_summary.txt); --allow-invalid exits 0")
    return EXIT_INVALID


def _result(s: Settings, backend: Any, facts: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from mlbox_bench.results import build_result, file_sha256, find_peak, host_info, logged_errors, parse_detail_log

    detail = run_dir / "mlperf_log_detail.txt"
    if not detail.is_file():
        msg = f"LoadGen wrote no {detail}"
        raise BenchError(msg)
    result = build_result(parse_detail_log(detail), s.scenario)
    result["loadgen_errors"] = logged_errors(detail)
    if s.mode == "find-peak":
        peak = find_peak(detail)
        result["metric"] = {"name": "peak_server_target_qps", "value": peak, "unit": "queries/s"}
        if peak is None:
            result["validity"] = "INVALID"  # the search found no VALID rate
    assert s.modelpath is not None
    result.update(
        {
            "mode": s.mode,
            "output_dir": str(run_dir),
            "model": {
                "name": s.model,
                "path": s.modelpath,
                "sha256": file_sha256(Path(s.modelpath)),
                "weights": s.weights,
            },
            "data": {"kind": "imagenet" if s.dataset else "synthetic", "path": s.dataset},
            "backend": {
                "name": s.backend,
                "version": backend.version,
                "provider": backend.provider,
                "session": backend.session_facts(),
            },
            "harness": {"name": "mlbox-bench", "version": __version__, **facts},
            "host": host_info(),
            "settings": {k: v["value"] for k, v in s.describe().items()},
            "sources": {k: v["source"] for k, v in s.describe().items()},
        }
    )
    return result


def _accuracy(s: Settings, backend: Any, labels: Any, run_dir: Path) -> dict[str, Any]:
    from mlbox_bench.accuracy import top1
    from mlbox_bench.results import write_text_atomic

    dtype, offset = backend.io.output_dtype, backend.io.label_offset
    log_path = run_dir / "mlperf_log_accuracy.json"
    try:
        logged = {int(e["qsl_idx"]) for e in json.loads(log_path.read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError) as err:
        msg = f"cannot read LoadGen's accuracy log {log_path}: {err}"
        raise BenchError(msg) from None
    facts: dict[str, Any] = {"log": str(log_path), "dtype": dtype, "offset": offset, "logged_samples": len(logged)}
    if labels is None:
        log.warning("accuracy mode on synthetic inputs: the accuracy log is written, but there are no labels")
        return {**facts, "top1": None, "reason": "synthetic inputs have no labels: pass --dataset DIR"}
    acc = top1(log_path, labels, dtype, offset)
    write_text_atomic(run_dir / "accuracy.txt", acc.line() + "\n")
    log.info("%s", acc.line())
    return {**facts, "top1": acc.top1, "good": acc.good, "total": acc.total}


def _write_user_conf(s: Settings, facts: dict[str, Any]) -> Path:
    """The user.conf that reproduces this run: the user's file, then what mlbox-bench set
    on top of it (flags, variables, calibration), as exact model.Scenario keys."""
    from mlbox_bench.results import write_text_atomic

    conf_dir = Path(s.output_dir) / "measurements" / s.system_name / s.model / s.scenario
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "user.conf"
    if s.mode == "accuracy" and path.exists():
        return path  # the performance run's file has its calibrated settings: keep it
    lines = ["# user.conf of this run, written by mlbox-bench " + __version__]
    if s.user_conf:
        lines += [f"# from {s.user_conf}:", Path(s.user_conf).read_text(encoding="utf-8").rstrip()]
    lines.append("# set by mlbox-bench (flags, variables, calibration):")
    prefix = f"{s.model}.{s.scenario}."
    for key, value in conf_entries(s, facts.get("calibration", {})).items():
        lines.append(f"{prefix}{key} = {value}")
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def conf_entries(s: Settings, calibration: dict[str, Any]) -> dict[str, str]:
    from mlbox_bench.harness import EARLY_STOPPING_MIN_QUERIES
    from mlbox_bench.settings import BY_NAME

    out: dict[str, str] = {}
    if s.set_by_user("duration") and s.duration is not None:
        out["min_duration"] = str(int(s.duration * 1000))
        if s.min_query_count is None:
            out["min_query_count"] = str(EARLY_STOPPING_MIN_QUERIES[s.scenario])
    for name in ("min_query_count", "max_query_count", "performance_sample_count", "samples_per_query",
                 "target_qps", "target_latency", "latency_percentile"):  # fmt: skip
        # LoadGen's user.conf has no MultiStream target_latency (mlbox-bench maps it itself).
        if s.set_by_user(name) and not (s.scenario == "MultiStream" and name == "target_latency"):
            out[str(BY_NAME[name].conf_key)] = str(getattr(s, name))
    if "offline_expected_qps" in calibration:
        out["target_qps"] = f"{calibration['offline_expected_qps']:.3f}"
    if "server_target_qps" in calibration:
        out["target_qps"] = f"{calibration['server_target_qps']:.3f}"
    if "expected_latency_ns" in calibration and s.scenario == "SingleStream":
        out["target_latency"] = f"{calibration['expected_latency_ns'] / 1e6:.6f}"
    return out


def tighten_timer_slack() -> None:
    """Ask Linux to wake sleeping threads on time. Threads inherit the slack of the thread
    that creates them, so LoadGen's issue threads (created later) get it too. The
    default 50 us slack delays every scheduled Server/MultiStream issue and shows up as
    latency: a query that completes at once measured a 74 us median with it and 26 us
    without it (see benchmarks/harness_overhead.py)."""
    import contextlib
    import ctypes

    pr_set_timerslack = 29
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to do
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_timerslack, 1, 0, 0, 0)


def _stop_on_signals() -> dict[int, Any]:
    """Ctrl-C / SIGTERM raise Interrupted in the main thread (LoadGen runs in another),
    so workers are stopped and temp files removed before the process exits non-zero."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
