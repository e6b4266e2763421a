"""LoadGen wiring: test settings, calibration, the system under test, and the run."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlbox_bench.backend import OnnxRuntimeBackend
from mlbox_bench.data import SampleLibrary
from mlbox_bench.errors import BenchError
from mlbox_bench.runners import Complete, Runner, ThreadRunner, make_runner
from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

# Queries LoadGen's early stopping needs before it can call a short run VALID.
EARLY_STOPPING_MIN_QUERIES = {"SingleStream": 64, "MultiStream": 662, "Server": 459, "Offline": 1}
# Calibration: how long to measure, and the margin so the run meets its duration even
# when the machine is busier during the run than during the measurement.
CALIBRATION_S = 1.0
CALIBRATION_MARGIN = 1.25
# Server without --target-qps: this fraction of the measured capacity (queueing headroom).
SERVER_LOAD_FRACTION = 0.5
MODE_NAMES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly", "find-peak": "FindPeakPerformance"}
# The TestSettings field each scenario uses for a latency (ns) and its percentile.
LATENCY_FIELD = {
    "Server": "server_target_latency_ns",
    "SingleStream": "single_stream_expected_latency_ns",
    "MultiStream": "multi_stream_expected_latency_ns",
}
PERCENTILE_FIELD = {
    "Server": "server_target_latency_percentile",
    "SingleStream": "single_stream_target_latency_percentile",
    "MultiStream": "multi_stream_target_latency_percentile",
}

_from_config_calls = 0  # LoadGen loads mlperf.conf once per process: see load_test_settings


def load_test_settings(lg: Any, s: Settings) -> Any:
    """mlperf.conf (built into LoadGen) < user.conf < our flags and variables.

    FromConfig with a user.conf may run once per process: a second call does not
    reload mlperf.conf, so the run would silently use other settings, and LoadGen logs
    an error the submission checker treats as critical.
    """
    global _from_config_calls
    ts = lg.TestSettings()
    if s.user_conf is not None:
        if _from_config_calls:
            msg = "LoadGen already read a user.conf in this process; run each --user-conf benchmark in its own process"
            raise BenchError(msg)
        if not Path(s.user_conf).is_file():
            msg = f"user.conf not found: {s.user_conf}"
            raise BenchError(msg)
        _from_config_calls += 1
        rc = ts.FromConfig(s.user_conf, s.model, s.scenario, 1)
    else:
        rc = ts.FromConfig("", s.model, s.scenario, 0)
    if rc != 0:
        msg = f"LoadGen could not read its configuration (FromConfig returned {rc})"
        raise BenchError(msg + " for model " + repr(s.model) + " scenario " + s.scenario)
    ts.scenario = getattr(lg.TestScenario, s.scenario)
    ts.mode = getattr(lg.TestMode, MODE_NAMES[s.mode])
    for name, value in user_overrides(s).items():
        setattr(ts, name, value)
    return ts


def user_overrides(s: Settings) -> dict[str, Any]:
    """TestSettings fields set by flags/variables (a user.conf value is already in place).

    LoadGen's integer fields reject floats, so every value is cast to its field's type.
    """
    out: dict[str, Any] = {}
    sc = s.scenario
    if s.set_by_user("duration"):
        assert s.duration is not None
        out["min_duration_ms"] = int(s.duration * 1000)
        if s.min_query_count is None:  # a short run: only as many queries as early stopping needs
            out["min_query_count"] = EARLY_STOPPING_MIN_QUERIES[sc]
    if s.set_by_user("min_query_count"):
        out["min_query_count"] = int(s.min_query_count or 0)
    if s.set_by_user("max_query_count"):
        out["max_query_count"] = int(s.max_query_count or 0)
    if s.set_by_user("performance_sample_count"):
        out["performance_sample_count_override"] = int(s.performance_sample_count or 0)
    if s.set_by_user("samples_per_query") and sc == "MultiStream":
        out["multi_stream_samples_per_query"] = int(s.samples_per_query or 0)
    if s.set_by_user("target_qps"):
        qps = float(s.target_qps or 0)
        field = {"Server": "server_target_qps", "Offline": "offline_expected_qps"}.get(sc)
        if sc == "MultiStream":  # expected rate -> expected latency per query
            out["multi_stream_expected_latency_ns"] = int(1e9 / qps)
        elif field:
            out[field] = qps
    if s.set_by_user("target_latency") and sc in LATENCY_FIELD:
        out[LATENCY_FIELD[sc]] = int((s.target_latency or 0) * 1_000_000)
    if s.set_by_user("latency_percentile") and sc in PERCENTILE_FIELD:
        out[PERCENTILE_FIELD[sc]] = float(s.latency_percentile or 0) / 100.0
    return out


def contiguous_batches(rows: np.ndarray, limit: int) -> list[np.ndarray]:
    """Split a large query (Offline's single query) into batches of ``limit`` samples,
    as many as possible made of consecutive rows of the loaded array, so the batch is a
    view instead of a copy (a copy costs ~10 us per 224x224 float sample).

    Every sample is still run once, on its own data: this only picks the order, which
    MLPerf leaves to the system. Returns positions into the query. The k-th repeat of a
    row goes to the k-th pass over the rows, so each pass has distinct, sorted rows;
    pieces of runs shorter than a batch are pooled and gathered, so batches stay full.
    """
    order = np.argsort(rows, kind="stable")
    ranked = rows[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    repeat = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    by_pass = np.lexsort((ranked, repeat))
    positions, sorted_rows, passes = order[by_pass], ranked[by_pass], repeat[by_pass]
    breaks = np.flatnonzero((np.diff(sorted_rows) != 1) | (np.diff(passes) != 0)) + 1
    batches: list[np.ndarray] = []
    leftover: list[np.ndarray] = []
    for run in np.split(positions, breaks):
        full = len(run) - len(run) % limit
        batches.extend(run[i : i + limit] for i in range(0, full, limit))
        if full < len(run):
            leftover.append(run[full:])
    if leftover:
        rest = np.concatenate(leftover)
        batches.extend(rest[i : i + limit] for i in range(0, len(rest), limit))
    return batches


def loadgen_complete(lg: Any) -> Complete:
    def complete(ids: np.ndarray | list[int], outputs: np.ndarray) -> None:
        # `outputs` must stay alive until QuerySamplesComplete returns: it does (local).
        base, stride = outputs.ctypes.data, outputs.strides[0]
        id_list = ids if isinstance(ids, list) else ids.tolist()
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q, base + k * stride, stride) for k, q in enumerate(id_list)])

    return complete


def measure(
    runner: Runner, data: SampleLibrary, batch_size: int, workers: int, seconds: float, *, per_worker: int = 1
) -> tuple[float, float]:
    """(samples/s, seconds per batch) of the real runner, from the fastest of several
    rounds after a warm-up. The fastest round errs on the safe side: a higher expected
    rate or a lower expected latency makes LoadGen issue more work, never too little."""
    loaded = np.flatnonzero(data.slot >= 0)
    indices = np.resize(loaded, batch_size)
    ids = np.zeros(batch_size, dtype=np.uint64)
    # ``per_worker`` batches per worker per round: Offline queues many at once, so it
    # measures with several (hand-offs and the end-of-round wait then do not dominate
    # small batches of a fast model); Server and the streams measure one at a time.
    rounds = max(1, workers) * per_worker
    for _ in range(2):  # warm-up: the first runs allocate memory and pick kernels
        for _ in range(rounds):
            runner.submit(ids, indices, lambda *_: None)
        runner.wait_idle()
    best = float("inf")
    measured, start = 0, time.perf_counter()
    while measured < 3 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(rounds):
            runner.submit(ids, indices, lambda *_: None)
        runner.wait_idle()
        best = min(best, time.perf_counter() - t)
        measured += 1
    return rounds * batch_size / best, best / rounds


def calibrate(s: Settings, ts: Any, runner: Runner, data: SampleLibrary, workers: int) -> dict[str, Any]:
    """Fill what LoadGen needs but nothing set (no flag, variable, image default or
    user.conf entry), from a short measurement: Offline's expected QPS (sizes the one
    query), SingleStream/MultiStream's expected latency (how many queries are generated),
    Server's arrival rate."""
    sc = s.scenario
    if s.mode == "accuracy":
        return {}
    # A short run gets a short calibration: at most a quarter of it, at least 0.2 s.
    seconds = CALIBRATION_S if s.duration is None else min(CALIBRATION_S, max(0.2, s.duration / 4))
    if sc == "Offline" and s.target_qps is None:
        rate, _ = measure(runner, data, s.max_batchsize, workers, seconds, per_worker=max(1, 32 // s.max_batchsize))
        ts.offline_expected_qps = float(rate * CALIBRATION_MARGIN)
        log.info(
            "calibrated Offline: %.1f samples/s measured; expected QPS set to %.1f", rate, rate * CALIBRATION_MARGIN
        )
        return {"measured_samples_per_s": rate, "offline_expected_qps": ts.offline_expected_qps}
    if sc in ("SingleStream", "MultiStream") and s.target_latency is None:
        if sc == "MultiStream" and s.target_qps is not None:
            return {}
        per_query = 1 if sc == "SingleStream" else int(ts.multi_stream_samples_per_query)
        _, seconds = measure(runner, data, per_query, 1, seconds)
        # A lower expected latency makes LoadGen generate more queries: enough for the duration.
        ns = max(1, int(seconds * 1e9 / CALIBRATION_MARGIN))
        setattr(ts, LATENCY_FIELD[sc], ns)
        log.info("calibrated %s: %.3f ms per query measured", sc, seconds * 1000)
        return {"measured_query_latency_ns": int(seconds * 1e9), "expected_latency_ns": ns}
    if sc == "Server" and s.target_qps is None:
        rate, _ = measure(runner, data, 1, workers, seconds)
        ts.server_target_qps = float(rate * SERVER_LOAD_FRACTION)
        log.info(
            "calibrated Server: %.1f queries/s capacity measured; target QPS set to %.1f "
            "(pass --target-qps, or --mode find-peak to search the highest VALID rate)",
            rate,
            ts.server_target_qps,
        )
        return {"measured_samples_per_s": rate, "server_target_qps": ts.server_target_qps}
    return {}


def run_loadgen(
    s: Settings, backend: OnnxRuntimeBackend, make_data: Callable[[int], SampleLibrary], output_dir: Path
) -> tuple[dict[str, Any], SampleLibrary]:
    """Run one LoadGen test; return facts for result.json (beside LoadGen's own logs) and
    the sample library (its labels score accuracy).

    ``make_data`` gets mlperf.conf's performance sample count (synthetic data uses it as
    the library size when --samples is not given).
    """
    import mlperf_loadgen as lg

    ts = load_test_settings(lg, s)  # the one TestSettings of this process
    conf_perf_count = int(ts.performance_sample_count_override) or 1024
    data = make_data(conf_perf_count)
    perf_count = min(conf_perf_count, data.count)
    ts.performance_sample_count_override = perf_count
    runner_kind = s.runner
    if s.scenario == "Server" and runner_kind == "inline":
        # Inline would run inference on LoadGen's issue thread and delay the next arrivals.
        log.info("Server: the inline runner uses one worker thread so LoadGen's issue thread never waits")
        runner: Runner = ThreadRunner(backend, data, 1, replicate=False)
        workers = 1
    else:
        workers = 1 if runner_kind == "inline" else s.concurrency
        runner = make_runner(runner_kind, backend, data, workers)
    complete = loadgen_complete(lg)
    batch = s.max_batchsize

    def issue(ids_list: list[int], indices_list: list[int]) -> None:
        # ConstructFastSUT hands over plain lists of ids and indices: no per-sample
        # QuerySample objects to build and read back.
        if len(ids_list) == 1:  # SingleStream and Server: LoadGen's own lists go straight through
            runner.submit(ids_list, indices_list, complete)
            return
        ids = np.array(ids_list, dtype=np.uint64)
        idx = np.array(indices_list, dtype=np.int64)
        if len(ids) <= batch:
            runner.submit(ids, idx, complete)
            return
        for pos in contiguous_batches(data.rows(idx), batch):
            runner.submit(ids[pos], idx[pos], complete)

    def flush() -> None:
        pass  # every sample is submitted as soon as it is issued: nothing is held back

    try:
        calibration: dict[str, Any] = {}
        if s.mode != "accuracy":
            data.load(list(range(perf_count)))
            calibration = calibrate(s, ts, runner, data, workers)
        sut = lg.ConstructFastSUT(issue, flush)
        qsl = lg.ConstructQSL(data.count, perf_count, data.load, data.unload)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(output_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        with tempfile.TemporaryDirectory(prefix="mlbox-audit-") as empty:
            # LoadGen reads ./audit.config if present (compliance tests): point it at a
            # path that cannot exist.
            _start_test(lg, sut, qsl, ts, log_settings, str(Path(empty) / "audit.config"))
        lg.DestroyQSL(qsl)
        lg.DestroyFastSUT(sut)
    finally:
        runner.close()
    if runner.errors:
        msg = f"inference failed during the run ({len(runner.errors)} batch(es)): {runner.errors[0]}"
        raise BenchError(msg)
    facts = {
        "total_sample_count": data.count,
        "performance_sample_count": perf_count,
        "calibration": calibration,
        "observed": runner.observed(),
        "applied_overrides": user_overrides(s),
    }
    return facts, data


def _start_test(lg: Any, sut: Any, qsl: Any, ts: Any, log_settings: Any, audit: str) -> None:
    """StartTest in a thread: the main thread stays free to handle Ctrl-C / SIGTERM."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut, qsl, ts, log_settings, audit)
        except BaseException as err:
            failure.append(err)

    thread = threading.Thread(target=target, name="loadgen", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failure:
        msg = f"LoadGen failed: {failure[0]}"
        raise BenchError(msg)
