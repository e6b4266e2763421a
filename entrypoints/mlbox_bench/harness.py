"""LoadGen wiring: test settings, the system under test, its worker pool, and the run."""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlbox_bench.backend import OnnxRuntimeBackend
from mlbox_bench.data import SyntheticData
from mlbox_bench.errors import BenchError
from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

# Queries LoadGen's early stopping needs before it can call a short run VALID.
EARLY_STOPPING_MIN_QUERIES = {"SingleStream": 64, "MultiStream": 662, "Server": 459, "Offline": 1}
# Offline calibration: how long to measure, and the margin so the run meets its duration.
CALIBRATION_S = 1.0
CALIBRATION_MARGIN = 1.15

Complete = Callable[[np.ndarray, np.ndarray], None]


def test_settings(lg: Any, s: Settings, *, expected_qps: float | None) -> Any:
    """mlperf.conf (built into LoadGen) < user.conf < our flags, in that order.

    FromConfig is called exactly once per process: a second call does not reload
    mlperf.conf and LoadGen logs an error that the submission checker treats as critical.
    """
    ts = lg.TestSettings()
    if s.user_conf is not None:
        if not Path(s.user_conf).is_file():
            msg = f"user.conf not found: {s.user_conf}"
            raise BenchError(msg)
        rc = ts.FromConfig(s.user_conf, s.model, s.scenario, 1)
    else:
        rc = ts.FromConfig("", s.model, s.scenario, 0)
    if rc != 0:
        msg = f"LoadGen could not read its configuration (FromConfig returned {rc})"
        raise BenchError(msg + " for model " + repr(s.model) + " scenario " + s.scenario)
    ts.scenario = getattr(lg.TestScenario, s.scenario)
    ts.mode = lg.TestMode.AccuracyOnly if s.mode == "accuracy" else lg.TestMode.PerformanceOnly
    if s.duration is not None:
        # LoadGen's integer fields reject floats: cast.
        ts.min_duration_ms = int(s.duration * 1000)
        ts.min_query_count = EARLY_STOPPING_MIN_QUERIES[s.scenario]
    if s.scenario == "Offline" and expected_qps is not None:
        ts.offline_expected_qps = float(expected_qps)
    if s.scenario == "Server" and s.target_qps is not None:
        ts.server_target_qps = float(s.target_qps)
    if s.target_latency is not None:
        ts.server_target_latency_ns = int(s.target_latency * 1_000_000)
    return ts


class WorkerPool:
    """Runs batches on onnxruntime. ``inline`` runs in the caller's thread; the pools
    take work from a queue so LoadGen's issue thread never waits on inference."""

    def __init__(self, backend: OnnxRuntimeBackend, data: SyntheticData, kind: str, workers: int) -> None:
        self.backend = backend
        self.data = data
        self.kind = kind
        self.errors: list[BaseException] = []
        self._queue: queue.Queue[tuple[np.ndarray, np.ndarray, Complete] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        if kind == "inline":
            self._inline_session = backend.session
            return
        # Sessions are made before the run starts so the first queries don't pay for it.
        sessions = [backend.session] * workers
        if kind == "threadpool+replication":
            sessions = [backend.session, *(backend.new_session() for _ in range(workers - 1))]
        for i, session in enumerate(sessions):
            thread = threading.Thread(target=self._work, args=(session,), name=f"mlbox-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, ids: np.ndarray, indices: np.ndarray, complete: Complete) -> None:
        if self.kind == "inline":
            self._process(self._inline_session, ids, indices, complete)
        else:
            self._queue.put((ids, indices, complete))

    def wait_idle(self) -> None:
        if self.kind != "inline":
            self._queue.join()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self, session: Any) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._process(session, *item)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _process(self, session: Any, ids: np.ndarray, indices: np.ndarray, complete: Complete) -> None:
        try:
            out = self.backend.run(session, self.data.batch(indices))
        except Exception as err:  # keep LoadGen from waiting forever; fail after the run
            self.errors.append(err)
            out = np.zeros(len(ids), dtype=np.int64)
        complete(ids, np.ascontiguousarray(out.reshape(len(ids), -1)))


def loadgen_complete(lg: Any) -> Complete:
    def complete(ids: np.ndarray, outputs: np.ndarray) -> None:
        # `outputs` must stay alive until QuerySamplesComplete returns: it does (local).
        base, stride = outputs.ctypes.data, outputs.strides[0]
        responses = [lg.QuerySampleResponse(int(qid), base + k * stride, stride) for k, qid in enumerate(ids)]
        lg.QuerySamplesComplete(responses)

    return complete


def calibrate_offline(pool: WorkerPool, data: SyntheticData, batch_size: int, workers: int) -> float:
    """Measure samples/s with the real pool, so Offline's query is sized for the duration."""
    indices = np.flatnonzero(data.slot >= 0)[:batch_size]
    if len(indices) < batch_size:
        indices = np.resize(indices, batch_size)
    ids = np.zeros(len(indices), dtype=np.uint64)
    done = 0

    def count(ids_: np.ndarray, outputs: np.ndarray) -> None:
        nonlocal done
        done += len(ids_)

    rounds = max(1, workers)
    for _ in range(rounds):  # warm-up: first runs allocate and tune
        pool.submit(ids, indices, lambda *_: None)
    pool.wait_idle()
    start = time.perf_counter()
    while time.perf_counter() - start < CALIBRATION_S:
        for _ in range(rounds):
            pool.submit(ids, indices, count)
        pool.wait_idle()
    return done / (time.perf_counter() - start)


def run_loadgen(s: Settings, backend: OnnxRuntimeBackend, output_dir: Path) -> dict[str, Any]:
    """Run one LoadGen test; return facts for result.json beside LoadGen's own logs."""
    import mlperf_loadgen as lg

    # One TestSettings for the whole run: FromConfig must run once per process.
    ts = test_settings(lg, s, expected_qps=s.target_qps)
    perf_count = int(ts.performance_sample_count_override) or 1024
    total = s.samples or perf_count
    perf_count = min(perf_count, total)
    ts.performance_sample_count_override = perf_count
    data = SyntheticData(backend.io, total)
    workers = 1 if s.runner == "inline" else s.concurrency
    pool = WorkerPool(backend, data, s.runner, workers)
    try:
        expected_qps = s.target_qps
        if s.scenario == "Offline" and expected_qps is None:
            data.load(list(range(perf_count)))
            measured = calibrate_offline(pool, data, s.max_batchsize, workers)
            expected_qps = measured * CALIBRATION_MARGIN
            log.info("calibrated Offline expected QPS: %.1f samples/s measured", measured)
            ts.offline_expected_qps = float(expected_qps)
        complete = loadgen_complete(lg)
        batch = (
            s.max_batchsize
            if s.scenario == "Offline"
            else (1 if s.scenario in ("SingleStream", "Server") else s.max_batchsize)
        )

        def issue(query_samples: list[Any]) -> None:
            n = len(query_samples)
            ids = np.fromiter((q.id for q in query_samples), dtype=np.uint64, count=n)
            idx = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=n)
            for start in range(0, n, batch):
                pool.submit(ids[start : start + batch], idx[start : start + batch], complete)

        sut = lg.ConstructSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(total, perf_count, data.load, data.unload)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(output_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        with tempfile.TemporaryDirectory(prefix="mlbox-audit-") as empty:
            # LoadGen reads ./audit.config if present (compliance tests): point it at a
            # path that cannot exist unless the user asks for an audit.
            audit = str(Path(empty) / "audit.config")
            _start_test(lg, sut, qsl, ts, log_settings, audit)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    finally:
        pool.close()
    if pool.errors:
        msg = f"inference failed during the run: {pool.errors[0]}"
        raise BenchError(msg)
    return {"total_sample_count": total, "performance_sample_count": perf_count, "expected_qps": expected_qps}


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
