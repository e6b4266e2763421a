"""Runners: where inference happens. All share one interface (submit, wait_idle, close).

- ``inline``: in the caller's thread (LoadGen's issue thread), no hand-off cost.
- ``threadpool``: worker threads share one session (onnxruntime's, PyTorch's and
  TensorFlow's ``run`` are thread-safe; a backend whose sessions are not, LiteRT's
  interpreter, gets one per worker instead, and says so).
- ``threadpool+replication``: one session per worker thread.
- ``processpool``: worker processes, each with its own session; loaded samples are
  published once per LoadGen load as a memory-mapped .npy that every worker maps, so
  a task carries only row numbers.

A runner knows neither the backend's library nor the task: a session's raw outputs go
through the run's ``Answer`` (the task bound to the model), and the ``Responses`` it
makes go to LoadGen's completion.

Each runner records what it observed (workers that ran inference, batch sizes), which
result.json reports: a setting that did not take effect shows up there.

With samples on the device, a session gets LoadGen's loaded samples once per load
(``stage``) and runs rows of them (``run_rows``). In Server, thread workers batch
dynamically: a worker takes the queries already waiting (and, with a window, those that
arrive within it) up to the largest batch, and runs them as one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np

from mlbox_bench import threads
from mlbox_bench.backends import Backend, BackendConfig, DeviceSession, Session, open_worker_session
from mlbox_bench.data import SampleLibrary, take_rows
from mlbox_bench.errors import BenchError, cut
from mlbox_bench.responses import Answer, Complete, Ids, Responses

log = logging.getLogger("mlbox-bench")
WORKER_START_TIMEOUT_S = 300.0


class Failures:
    """Inference errors seen by the workers: counted, and the first few distinct ones kept
    (a model that fails every batch fails tens of thousands of them; memory and the report
    stay bounded). Safe to add to from several threads."""

    KEPT = 3

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []
        self._lock = threading.Lock()

    def add(self, message: str) -> None:
        line = " ".join(message.split())  # onnxruntime's messages span lines
        with self._lock:
            self.count += 1
            if len(self.first) < self.KEPT and line not in self.first:
                self.first.append(cut(line, 303))

    def __bool__(self) -> bool:
        return self.count > 0

    def summary(self) -> str:
        shown = "; ".join(self.first)
        return f"{self.count} batch(es) failed; first error(s): {shown}"


class Runner:
    name = "runner"

    def __init__(self, backend: Backend, data: SampleLibrary, answer: Answer, *, on_device: bool = False) -> None:
        if on_device and not isinstance(backend.session, DeviceSession):
            msg = f"--samples-on-device: {backend.name} sessions cannot keep samples on the device"
            raise BenchError(msg)
        self.backend = backend
        self.data = data
        self.answer = answer
        self.on_device = on_device
        self.errors = Failures()
        self._lock = threading.Lock()
        self._staged: dict[int, int] = {}  # id(session) -> the load generation it holds
        # Per worker: [batches, samples, largest batch]. Each entry has one writer (its
        # worker, or the collector thread), so the hot path takes no lock.
        self._stats: dict[str, list[int]] = {}

    def submit(self, ids: Ids, indices: Ids, complete: Complete) -> None:
        raise NotImplementedError

    def wait_idle(self) -> None:
        """Return when every submitted batch has completed."""

    def close(self) -> None:
        """Stop workers; safe to call twice."""

    def abort(self) -> None:
        """Stop workers now, dropping queued work (the run is being stopped); safe to call twice."""
        self.close()

    def forget(self) -> None:
        """Drop what was observed so far (calibration): result.json reports the run only."""
        self._stats = {}

    sessions = 1  # sessions (interpreters) that run inference

    def observed(self) -> dict[str, Any]:
        stats = list(self._stats.values())
        return {
            "runner": self.name,
            "sessions": self.sessions,
            "workers_used": sum(1 for s in stats if s[0]),
            "largest_batch": max((s[2] for s in stats), default=0),
            "samples_run": sum(s[1] for s in stats),
        }

    def _note(self, worker: str, batch: int) -> None:
        stats = self._stats.get(worker)
        if stats is None:
            stats = self._stats[worker] = [0, 0, 0]
        stats[0] += 1
        stats[1] += batch
        if batch > stats[2]:
            stats[2] = batch

    def _failed(self, error: str, count: int) -> Responses:
        """Record a failed batch and answer its queries anyway (LoadGen would wait for them
        forever); the run fails after LoadGen ends (see Failures)."""
        self.errors.add(error)
        return self.answer.fallback(count)

    def _infer(self, session: Session, indices: Ids) -> Responses:
        if not self.on_device:
            return self.answer.respond(session.run(self.data.batch(indices)), indices)
        session = cast(DeviceSession, session)  # checked when the runner was made: not per batch
        generation = self.data.generation
        if self._staged.get(id(session)) != generation:
            with self._lock:  # a shared session is staged once per load, by one worker
                if self._staged.get(id(session)) != generation:
                    session.stage(self.data.data)
                    self._staged[id(session)] = generation
        return self.answer.respond(session.run_rows(self.data.rows(np.asarray(indices))), indices)

    def _run_and_complete(self, session: Session, ids: Ids, indices: Ids, complete: Complete) -> None:
        try:
            out = self._infer(session, indices)
        except Exception as err:  # keep LoadGen from waiting forever; fail after the run
            out = self._failed(f"{type(err).__name__}: {err}", len(ids))
        self._note(threading.current_thread().name, len(ids))
        complete(ids, out)


class InlineRunner(Runner):
    name = "inline"

    def submit(self, ids: Ids, indices: Ids, complete: Complete) -> None:
        self._run_and_complete(self.backend.session, ids, indices, complete)


class ThreadRunner(Runner):
    """Worker threads fed from a queue: LoadGen's issue thread only enqueues.

    queue.SimpleQueue is C code: a put/get hand-off costs a few microseconds where
    queue.Queue (Python, with task tracking) costs several times that; idleness is
    tracked with a counter instead.
    """

    def __init__(
        self,
        backend: Backend,
        data: SampleLibrary,
        answer: Answer,
        workers: int,
        *,
        replicate: bool,
        on_device: bool = False,
        coalesce: int = 1,
        window_s: float = 0.0,
        buckets: tuple[int, ...] = (),
    ) -> None:
        super().__init__(backend, data, answer, on_device=on_device)
        self.name = "threadpool+replication" if replicate else "threadpool"
        self._coalesce = coalesce  # the largest batch dynamic batching forms (1: none)
        self._window_s = window_s
        # Batch sizes dynamic batches are padded up to (a GPU picks kernels per input shape,
        # and the first batch of a new shape takes hundreds of milliseconds); () pads none.
        self._buckets = tuple(sorted(buckets))
        if not replicate and workers > 1 and not backend.thread_safe:
            log.info("%s: %s sessions are not thread-safe: one session per worker thread", self.name, backend.name)
            replicate = True
        self._queue: queue.SimpleQueue[tuple[Ids, Ids, Complete] | None] = queue.SimpleQueue()
        # Idleness without a lock on the hot path: one thread submits at a time (LoadGen's
        # issue thread, or calibration before the run), and each worker counts its own.
        self._submitted = 0
        self._stopping = False
        self._done = [0] * workers
        # Sessions are made before the run starts so the first queries don't pay for it.
        sessions = [backend.session]
        sessions += [backend.new_session() if replicate else backend.session for _ in range(workers - 1)]
        self.sessions = len({id(s) for s in sessions})
        self._sessions = [(i, s) for i, s in enumerate(sessions)]
        # Kept threads (see threads.py): the workers call QuerySamplesComplete.
        self._threads = [threads.start(partial(self._work, i, s), f"mlbox-worker-{i}") for i, s in self._sessions]

    def submit(self, ids: Ids, indices: Ids, complete: Complete) -> None:
        if self._stopping:
            return
        self._submitted += 1
        self._queue.put((ids, indices, complete))

    def wait_idle(self) -> None:
        while sum(self._done) < self._submitted:  # only calibration waits: a yielding poll is fine
            time.sleep(0)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def abort(self) -> None:
        # What is queued is dropped (and submit stops queueing): each worker ends after
        # its current batch. Threads cannot be killed; they are daemons, so a long batch only
        # delays this by up to half a second, not the process's exit.
        self._stopping = True
        with contextlib.suppress(queue.Empty):
            while True:  # an Offline run queues all its batches at once: drop them
                self._queue.get_nowait()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + 0.5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _work(self, slot: int, session: Session) -> None:
        while (item := self._queue.get()) is not None:
            items, stop = self._gather(item) if self._coalesce > 1 else ([item], False)
            try:
                if len(items) == 1:
                    self._run_and_complete(session, *item)
                else:
                    self._run_together(session, items)
            finally:
                self._done[slot] += len(items)
            if stop:
                return

    def _gather(self, first: tuple[Ids, Ids, Complete]) -> tuple[list[tuple[Ids, Ids, Complete]], bool]:
        """The queries to run with ``first``: those waiting, then those arriving within the
        window, up to the largest batch. True when the shutdown sentinel was drawn."""
        items, count = [first], len(first[0])
        deadline = time.perf_counter() + self._window_s
        while count < self._coalesce:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return items, True
            items.append(item)
            count += len(item[0])
        return items, False

    def warm_shapes(self) -> None:
        """Run every bucket size once on every session, before the run: no query meets a
        shape the library has not seen."""
        loaded = np.flatnonzero(self.data.slot >= 0)
        unique = {id(s): s for _, s in self._sessions}  # threadpool workers share one session
        for session in unique.values():
            for size in self._buckets:
                self._infer(session, np.resize(loaded, size))

    def _run_together(self, session: Session, items: list[tuple[Ids, Ids, Complete]]) -> None:
        ids = np.concatenate([np.asarray(i[0], dtype=np.uint64) for i in items])
        indices = np.concatenate([np.asarray(i[1], dtype=np.int64) for i in items])
        size = next((b for b in self._buckets if b >= len(indices)), len(indices))
        if size > len(indices):  # padded with the last sample; its extra answers are dropped
            indices = np.concatenate([indices, np.repeat(indices[-1:], size - len(indices))])
        try:
            out = self._infer(session, indices).part(0, len(ids))
        except Exception as err:  # keep LoadGen from waiting forever; fail after the run
            out = self._failed(f"{type(err).__name__}: {err}", len(ids))
        self._note(threading.current_thread().name, len(ids))
        if all(i[2] is items[0][2] for i in items):
            items[0][2](ids, out)  # one completion call for the whole batch
            return
        start = 0
        for item_ids, _, complete in items:
            complete(item_ids, out.part(start, start + len(item_ids)))
            start += len(item_ids)


class ProcessRunner(Runner):
    """Worker processes (spawned: forking a process that runs onnxruntime and LoadGen
    threads is unsafe). A collector thread completes queries as results come back."""

    name = "processpool"

    def __init__(self, backend: Backend, data: SampleLibrary, answer: Answer, workers: int) -> None:
        super().__init__(backend, data, answer)
        self.sessions = workers  # each worker process opens its own
        ctx = multiprocessing.get_context("spawn")
        self._tasks: Any = ctx.Queue()
        self._results: Any = ctx.Queue()
        self._pending: dict[int, tuple[Ids, Complete]] = {}
        self._idle = threading.Condition(self._lock)
        self._seq = 0
        self._published: tuple[int, str] | None = None  # (generation, path)
        self._scratch = Path(tempfile.mkdtemp(prefix="mlbox-samples-", dir=_scratch_parent(data)))
        config = (backend.name, backend.config, answer)
        self._procs = [
            ctx.Process(target=_process_main, args=(config, self._tasks, self._results), name=f"mlbox-worker-{i}")
            for i in range(workers)
        ]
        try:
            for proc in self._procs:
                proc.daemon = True
                proc.start()
            self._await_workers()
        except BaseException:
            self.close()
            raise
        self._collector = threads.start(self._collect, "mlbox-collector")  # completes queries: a kept thread

    def _await_workers(self) -> None:
        ready = 0
        while ready < len(self._procs):
            try:
                kind, _, detail = self._results.get(timeout=WORKER_START_TIMEOUT_S)
            except queue.Empty:
                msg = f"processpool workers did not start within {WORKER_START_TIMEOUT_S:.0f} s"
                raise BenchError(msg) from None
            if kind == "failed":
                msg = f"a processpool worker could not start: {detail}"
                raise BenchError(msg)
            ready += 1

    def submit(self, ids: Ids, indices: Ids, complete: Complete) -> None:
        path = self._publish()
        rows = self.data.rows(np.asarray(indices))
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._pending[seq] = (ids, complete)
        self._tasks.put((seq, path, rows, indices))

    def _publish(self) -> str:
        """Write the loaded samples once per LoadGen load; workers map the file."""
        generation = self.data.generation
        if self._published is None or self._published[0] != generation:
            path = self._scratch / f"samples-{generation}.npy"
            try:
                np.save(path, self.data.data)
            except OSError as err:
                msg = f"cannot share samples with worker processes in {self._scratch}: {err.strerror}"
                raise BenchError(msg + " (give the container more --shm-size or a writable /tmp)") from None
            if self._published is not None:
                Path(self._published[1]).unlink(missing_ok=True)  # workers keep their mapping
            self._published = (generation, str(path))
        return self._published[1]

    def _collect(self) -> None:
        while True:
            item = self._results.get()
            if item is None:
                return
            kind, seq, payload = item
            with self._lock:
                ids, complete = self._pending.pop(seq)
            if kind == "error":
                out = self._failed(str(payload[1]), len(ids))
            else:
                worker, out = payload
                self._note(worker, len(ids))
            complete(ids, out)
            with self._lock:
                if not self._pending:
                    self._idle.notify_all()

    def wait_idle(self) -> None:
        with self._lock:
            while self._pending:
                self._idle.wait(0.5)
                if not any(p.is_alive() for p in self._procs):
                    msg = "every processpool worker has exited"
                    raise BenchError(msg)

    def close(self) -> None:
        self._stop(drain=True)

    def abort(self) -> None:
        # Queued tasks are dropped: the workers are terminated, not asked to finish the
        # queue (that took 13-18 s in an Offline run).
        self._stop(drain=False)

    def _stop(self, *, drain: bool) -> None:
        """End the workers: ``drain``, after the queued tasks (10 s, then SIGTERM); else
        SIGTERM now (SIGKILL after a second)."""
        for proc in self._procs:
            if drain and proc.is_alive():
                self._tasks.put(None)
            elif not drain:
                proc.terminate()
        deadline = time.monotonic() + (10.0 if drain else 1.0)
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive() and drain:
                proc.terminate()
            elif proc.is_alive():
                proc.kill()
            proc.join()
        self._procs = []
        collector = getattr(self, "_collector", None)
        if collector is not None and collector.is_alive():
            self._results.put(None)  # after any results still queued
            if drain:
                collector.join()
        shutil.rmtree(self._scratch, ignore_errors=True)


def _scratch_parent(data: SampleLibrary) -> str | None:
    """/dev/shm (RAM, shared by design) when it is writable and has room for the loaded
    samples with some to spare, else the temp dir (page cache: as fast once read).
    Docker's default /dev/shm is 64 MB; ResNet50's 1024 samples take 616 MB."""
    shm = Path("/dev/shm")
    needed = len(data.slot) * int(np.prod(data.io.input_shape)) * np.dtype(data.io.input_dtype).itemsize
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    if os.access(shm, os.W_OK) and stat.f_bavail * stat.f_frsize > 1.5 * needed:
        return str(shm)
    log.info("processpool: /dev/shm is too small for the samples; sharing them through %s", tempfile.gettempdir())
    return None


def _process_main(config: tuple[str, BackendConfig, Answer], tasks: Any, results: Any) -> None:
    """A worker process: one session, answering as the task does; tasks are (seq, samples
    file, rows, QSL indices)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    name = multiprocessing.current_process().name
    backend, backend_config, answer = config
    try:
        session = open_worker_session(backend, backend_config)
        session.select(answer.outputs)
    except Exception as err:
        results.put(("failed", 0, f"{type(err).__name__}: {err}"))
        return
    results.put(("ready", 0, name))
    mapped: tuple[str, np.ndarray] | None = None
    while (task := tasks.get()) is not None:
        seq, path, rows, indices = task
        try:
            if mapped is None or mapped[0] != path:
                mapped = (path, np.load(path, mmap_mode="r"))
            batch = take_rows(mapped[1], rows)
            results.put(("done", seq, (name, answer.respond(session.run(batch), indices))))
        except Exception as err:
            results.put(("error", seq, (name, f"{type(err).__name__}: {err}")))


def make_runner(
    kind: str,
    backend: Backend,
    data: SampleLibrary,
    answer: Answer,
    workers: int,
    *,
    on_device: bool = False,
    coalesce: int = 1,
    window_s: float = 0.0,
    buckets: tuple[int, ...] = (),
) -> Runner:
    """``coalesce``/``window_s``/``buckets``: Server's dynamic batching (thread workers)."""
    if kind == "inline":
        return InlineRunner(backend, data, answer, on_device=on_device)
    if kind in ("threadpool", "threadpool+replication"):
        return ThreadRunner(
            backend,
            data,
            answer,
            workers,
            replicate=kind == "threadpool+replication",
            on_device=on_device,
            coalesce=coalesce,
            window_s=window_s,
            buckets=buckets,
        )
    if kind == "processpool":
        if on_device:
            msg = "--samples-on-device keeps samples in this process's GPU memory: use a thread runner"
            raise BenchError(msg)
        return ProcessRunner(backend, data, answer, workers)
    msg = f"unknown runner {kind}"
    raise BenchError(msg)
