"""Which runner, how many workers and what batch size: the user's, or on a GPU a short
search over what the user left open (``--tune auto``, the default).

A GPU left to the defaults (one inline worker feeding batches from host memory) idles
between batches: on an H200, onnxruntime ran ResNet-50 at 4,700 samples/s inline and
7,000 with four thread workers. The search measures each candidate with the real runner
on the loaded samples, as calibration does, keeps the fastest, and says in result.json
what it picked and the flags that reproduce it (``--tune off`` plus those).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from mlbox_bench.backends import Backend
from mlbox_bench.calibrate import measure
from mlbox_bench.data import SampleLibrary
from mlbox_bench.errors import BenchError
from mlbox_bench.responses import Answer, Complete
from mlbox_bench.runners import Runner, ThreadRunner, make_runner
from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

OFFLINE_BATCHES = (32, 64, 128, 256)
SERVER_BATCHES = (8, 16, 32, 64)
THREAD_WORKERS = (2, 4)
CANDIDATE_S = 0.4  # measured time per candidate, after its warm-up
BETTER = 1.03  # a larger batch must be 3% faster to be worth its latency
# Server on a GPU: a worker may wait this fraction of the latency bound for more queries.
WINDOW_FRACTION, WINDOW_MAX_S = 0.1, 0.002


@dataclass(frozen=True)
class RunnerPlan:
    runner: str
    workers: int
    batch: int
    window_s: float = 0.0  # Server's dynamic batching window

    def flags(self) -> list[str]:
        """The mlbox-bench flags that run this plan again without a search."""
        flags = ["--tune", "off", "--runner", self.runner, "--max-batchsize", str(self.batch)]
        if self.runner != "inline":
            flags += ["--concurrency", str(self.workers)]
        if self.window_s:
            flags += ["--batch-window", f"{self.window_s * 1000:g}"]
        return flags


def on_gpu(backend: Backend) -> bool:
    return bool(backend.session.facts().get("device") == "cuda")


def requested(s: Settings, backend: Backend, bound_ms: float | None) -> RunnerPlan:
    """The plan the settings ask for. Server's inline runner becomes one thread worker, so
    LoadGen's issue thread never runs inference; Server batches dynamically up to the
    largest batch, with a wait window on a GPU."""
    runner, workers = s.runner, 1 if s.runner == "inline" else s.concurrency
    window = 0.0
    if s.scenario == "Server":
        if runner == "inline":
            runner, workers = "threadpool", 1
        if s.batch_window is not None:
            window = s.batch_window / 1000
        elif on_gpu(backend) and bound_ms:
            window = min(WINDOW_MAX_S, WINDOW_FRACTION * bound_ms / 1000)
    return RunnerPlan(runner, workers, s.max_batchsize, window)


def buckets(largest: int) -> tuple[int, ...]:
    """Powers of two up to the largest batch, and that batch."""
    sizes = {largest}
    size = 1
    while size < largest:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def build(plan: RunnerPlan, s: Settings, backend: Backend, data: SampleLibrary, answer: Answer) -> Runner:
    """The plan's runner. Server on a GPU pads its dynamic batches to a few shapes and
    runs each once before LoadGen starts (a GPU library's first batch of a new shape
    takes hundreds of ms: an H200 run saw p99 1.8 s from that alone)."""
    server = s.scenario == "Server"
    gpu = server and plan.batch > 1 and on_gpu(backend)
    runner = make_runner(
        plan.runner,
        backend,
        data,
        answer,
        plan.workers,
        on_device=s.samples_on_device,
        coalesce=plan.batch if server else 1,
        window_s=plan.window_s,
        buckets=buckets(plan.batch) if gpu else (),
    )
    if gpu and isinstance(runner, ThreadRunner) and (data.slot >= 0).any():
        runner.warm_shapes()
    return runner


def wanted(s: Settings, backend: Backend) -> bool:
    """Search only on a GPU, for a timed run, and only if something is left open."""
    open_ = not (s.set_by_user("runner") and s.set_by_user("concurrency") and s.set_by_user("max_batchsize"))
    timed = s.mode in ("performance", "find-peak") and s.scenario in ("Offline", "Server")
    return s.tune == "auto" and timed and open_ and on_gpu(backend)


def tune(
    s: Settings, backend: Backend, data: SampleLibrary, answer: Answer, base: RunnerPlan, complete: Complete
) -> tuple[RunnerPlan, dict[str, Any]]:
    """The fastest plan among the candidates (only what the user left open varies)."""
    if s.set_by_user("runner"):
        kinds = [base.runner]
    else:  # Server never runs inference on LoadGen's issue thread
        kinds = ["inline", "threadpool"] if s.scenario == "Offline" else ["threadpool"]
    shapes: list[tuple[str, int]] = []
    for kind in kinds:
        if kind == "inline":
            shapes.append(("inline", 1))
        elif s.set_by_user("concurrency"):
            shapes.append((kind, base.workers))
        else:
            shapes += [(kind, w) for w in THREAD_WORKERS]
    batches = [s.max_batchsize] if s.set_by_user("max_batchsize") else _batches(s, data)
    tried: list[dict[str, Any]] = []
    best: tuple[float, RunnerPlan] | None = None
    for runner_kind, workers in shapes:
        plan = RunnerPlan(runner_kind, workers, batches[0], base.window_s)
        runner = build(plan, s, backend, data, answer)
        try:
            previous = 0.0
            for batch in batches:  # larger batches while they pay
                m = measure(runner, data, batch, workers, CANDIDATE_S, complete, per_worker=2, fixed_batch=True)
                rate = m.samples_per_s
                tried.append({"runner": runner_kind, "workers": workers, "batch": batch, "samples_per_s": rate})
                if best is None or m.samples_per_s > best[0]:
                    best = (m.samples_per_s, RunnerPlan(runner_kind, workers, batch, base.window_s))
                if m.samples_per_s < previous * BETTER:
                    break
                previous = m.samples_per_s
        finally:
            runner.close()
    if best is None:  # there is always a candidate; kept for the type checker
        msg = "the runner search measured nothing"
        raise BenchError(msg)
    picked = best[1]
    log.info(
        "tuned: %s with %d worker(s), batch %d (%.0f samples/s; %d candidates); reproduce with %s",
        picked.runner,
        picked.workers,
        picked.batch,
        best[0],
        len(tried),
        " ".join(picked.flags()),
    )
    return picked, {"picked": asdict(picked), "samples_per_s": best[0], "tried": tried, "flags": picked.flags()}


def _batches(s: Settings, data: SampleLibrary) -> list[int]:
    sizes = OFFLINE_BATCHES if s.scenario == "Offline" else SERVER_BATCHES
    loaded = int((data.slot >= 0).sum())
    return [b for b in sizes if b <= loaded] or [min(sizes[0], max(1, loaded))]
