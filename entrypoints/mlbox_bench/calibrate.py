"""Calibration: what LoadGen needs but nothing set (no flag, variable, image default or
user.conf entry), measured on the real runner and the loaded samples within a time
budget: Offline's expected QPS (sizes its one query), SingleStream/MultiStream's expected
latency (how many queries LoadGen generates), Server's arrival rate.

The measurement walks over the loaded samples in consecutive batches, as the run does:
one batch measured over and over stays in the CPU caches and runs faster than the run
will (2.3x for a tiny model), which made Offline runs last twice their duration.

Offline and the stream scenarios are sized from the fastest round, not a typical one: a
run slower than its calibration only lasts longer, while a run faster than it ends before
its duration and is INVALID. On a busy 2-core CI machine the median round of a 0.2 s
calibration came out at half the run's rate (9,131 vs 18,108 samples/s), another process
having taken the CPU for most of it; the fastest round is the one nothing interrupted.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlbox_bench.data import SampleLibrary
from mlbox_bench.errors import BenchError
from mlbox_bench.responses import Complete, Ids, Responses, loadgen_responses
from mlbox_bench.runners import Runner
from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

# The longest calibration; a short run gets a tenth of its duration, at least 0.5 s (enough
# rounds that one of them runs undisturbed on a busy machine).
CALIBRATION_S = 1.0
CALIBRATION_MIN_S = 0.5
# Offline: the expected QPS is this multiple of the measured rate. LoadGen issues
# 1.1 x duration x QPS samples, so the run lasts 1.1 x 1.08 = 1.19 x the duration at the
# measured rate. A run faster than its calibration ends early and is INVALID, so the margin
# is on that side: the run stays VALID while its rate is up to 19% above the measured one,
# which a machine another process loads in bursts reached (0.95 here made a tiny model's
# run 9% faster than its calibration INVALID), and within 1.2 x the duration while it is
# no slower than the measured rate.
OFFLINE_MARGIN = 1.08
# SingleStream/MultiStream: LoadGen generates twice the queries the expected latency
# asks for and stops at the duration; a lower expected latency only generates more.
STREAM_MARGIN = 1.25
# Server without --target-qps: this fraction of the measured capacity (queueing headroom).
SERVER_LOAD_FRACTION = 0.5
# Warm-up: rounds (one batch per worker) until one is no more than 10% faster than the one
# before (at most WARM_UP_ROUNDS, WARM_UP_S). Libraries make the first runs of each batch
# shape slow (onnxruntime allocates and picks kernels; PyTorch packs weights), and a slow
# round measured would size the run too small.
WARM_UP_ROUNDS = 8
WARM_UP_S = 10.0
STEADY = 0.9


@dataclass(frozen=True)
class Measurement:
    samples_per_s: float  # at the median round (Server's typical capacity)
    round_s: float  # median time of one round (one query per worker)
    fastest_round_s: float
    batch: int
    seconds: float  # how long the measurement took, warm-up included

    @property
    def peak_samples_per_s(self) -> float:
        """The rate of the fastest round."""
        return self.samples_per_s * self.round_s / self.fastest_round_s


def budget(s: Settings) -> float:
    return CALIBRATION_S if s.duration is None else min(CALIBRATION_S, max(CALIBRATION_MIN_S, s.duration / 10))


def measure(
    runner: Runner,
    data: SampleLibrary,
    batch: int,
    workers: int,
    seconds: float,
    complete: Complete,
    *,
    per_worker: int = 1,
    fixed_batch: bool = False,
) -> Measurement:
    """Rate and round time of the real runner over the loaded samples, for ``seconds``.

    Rounds of ``per_worker`` batches per worker, each round waited for; the rate is that
    of the median round, and the fastest round is kept too. The batch is
    ``batch``, or with ``fixed_batch`` False, smaller when a batch would take more than a
    quarter of the budget (ResNet-50 on 2 cores: 32 samples take 0.8 s).
    """
    start = time.perf_counter()
    order = np.flatnonzero(data.slot >= 0)
    walk = order[np.argsort(data.slot[order], kind="stable")]  # QSL indices in row order
    position = 0

    def next_batch(size: int) -> np.ndarray:
        nonlocal position
        picked = np.take(walk, np.arange(position, position + size), mode="wrap")
        position = (position + size) % len(walk)
        return picked

    def run_round(size: int, per: int = per_worker) -> float:
        t = time.perf_counter()
        for _ in range(workers * per):
            indices = next_batch(size)
            runner.submit(np.zeros(size, dtype=np.uint64), indices, complete)
        runner.wait_idle()
        if runner.errors:  # a model that fails here fails every query: stop before LoadGen
            msg = f"inference failed while calibrating: {runner.errors.summary()}"
            raise BenchError(msg)
        return time.perf_counter() - t

    def warm_up(size: int) -> float:
        """Rounds of one batch per worker until one is no more than 10% faster than the
        one before; that round's time."""
        began = time.perf_counter()
        times = [run_round(size, 1)]
        while len(times) < WARM_UP_ROUNDS and time.perf_counter() - began < WARM_UP_S:
            times.append(run_round(size, 1))
            if times[-1] >= STEADY * times[-2]:
                break
        return times[-1]

    first = min(batch, 1 if not fixed_batch else batch)
    one = warm_up(first)
    if not fixed_batch:
        per_sample = one / first
        picked = int(min(batch, max(1, seconds / 4 / max(per_sample, 1e-9))))
        if picked != first:
            warm_up(picked)
        batch = picked
    rounds: list[float] = []
    began = time.perf_counter()
    while not rounds or time.perf_counter() - began < seconds:
        rounds.append(run_round(batch))
    # The median round: a round that another process interrupted says nothing of the run.
    median = statistics.median(rounds)
    return Measurement(workers * per_worker * batch / median, median, min(rounds), batch, time.perf_counter() - start)


def calibrate(
    s: Settings,
    ts: Any,
    runner: Runner,
    data: SampleLibrary,
    workers: int,
    complete: Complete,
    *,
    batch: int | None = None,
    tuned: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings values to apply, facts for result.json). Applies nothing itself.
    ``batch``: the plan's batch; ``tuned``: the runner search picked it (measured as is)."""
    sc, seconds = s.scenario, budget(s)
    if s.mode == "accuracy" and sc != "Server":
        # Accuracy runs issue every sample once; only Server's pace (mlperf.conf's
        # placeholder is 1 query/s: 1024 samples would take 17 minutes) needs a rate.
        return {}, {}
    if sc == "Offline" and s.target_qps is None:
        # The batch a user asked for is measured as it is; otherwise a smaller one when a
        # full batch would not fit the budget, and the run then uses that batch: the rate
        # that sizes the query is the rate of the batches that run.
        fixed = tuned or s.set_by_user("max_batchsize")
        size = batch or s.max_batchsize
        m = measure(runner, data, size, workers, seconds, complete, per_worker=2, fixed_batch=fixed)
        qps = m.peak_samples_per_s * OFFLINE_MARGIN
        log.info(
            "calibrated Offline: %.1f samples/s measured (fastest round %.1f, batch %d); expected QPS %.1f",
            m.samples_per_s,
            m.peak_samples_per_s,
            m.batch,
            qps,
        )
        facts = {
            "measured_samples_per_s": m.samples_per_s,
            "fastest_round_samples_per_s": m.peak_samples_per_s,
            "batch": m.batch,
            "seconds": m.seconds,
        }
        return {"target_qps": qps}, facts
    if sc in ("SingleStream", "MultiStream") and s.target_latency is None:
        per_query = 1 if sc == "SingleStream" else int(ts.multi_stream_samples_per_query)
        # A query is run as the run runs it: in batches of at most --max-batchsize (a
        # detector answers one image per run), one round of them per query.
        size = min(per_query, s.max_batchsize)
        batches = -(-per_query // size)
        m = measure(runner, data, size, 1, seconds, complete, per_worker=batches, fixed_batch=True)
        expected_ms = m.fastest_round_s * 1000 / STREAM_MARGIN
        log.info(
            "calibrated %s: %.3f ms per query measured (fastest %.3f ms)",
            sc,
            m.round_s * 1000,
            m.fastest_round_s * 1000,
        )
        facts = {
            "measured_query_latency_ms": m.round_s * 1000,
            "fastest_query_latency_ms": m.fastest_round_s * 1000,
            "seconds": m.seconds,
        }
        return {"target_latency": expected_ms}, facts
    if sc == "Server" and s.target_qps is None:
        m = measure(runner, data, 1, workers, seconds, complete, fixed_batch=True)
        qps = m.samples_per_s * SERVER_LOAD_FRACTION
        bound_ms = int(ts.server_target_latency_ns) / 1e6
        log.info(
            "calibrated Server: %.1f queries/s capacity measured; target QPS %.1f "
            "(pass --target-qps, or --mode find-peak to search the highest VALID rate)",
            m.samples_per_s,
            qps,
        )
        if m.round_s * 1000 >= bound_ms:
            log.warning(
                "one query takes %.1f ms here, above Server's %.0f ms latency bound for %s: no arrival rate can be "
                "VALID on this machine (use a faster device or fewer intra-op threads contending, or --target-latency "
                "for an unofficial bound)",
                m.round_s * 1000,
                bound_ms,
                s.model,
            )
        facts = {"measured_samples_per_s": m.samples_per_s, "query_ms": m.round_s * 1000, "seconds": m.seconds}
        return {"target_qps": qps}, facts
    return {}, {}


def responses_only(lg: Any) -> Complete:
    """A completion that builds LoadGen's responses but does not send them (there is no
    test yet): calibration pays the Python side of completing, as the run will."""

    def complete(ids: Ids, responses: Responses) -> None:
        loadgen_responses(lg, ids, responses)

    return complete
