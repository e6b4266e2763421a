"""Threads that call into LoadGen outlive their run (see mlbox_bench/threads.py: LoadGen
can free an exited thread's logger while it still has a swap pending, and crash)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from mlbox_bench import threads
from mlbox_bench.cli import main


def kept() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name == "mlbox-idle"}


def test_the_thread_that_ran_a_job_stays_alive_and_idle() -> None:
    ran_on: list[int] = []
    job = threads.start(lambda: ran_on.append(threading.get_ident()), "mlbox-test-job")
    job.join(10)
    assert not job.is_alive()
    assert ran_on[0] in kept()


def test_a_job_that_raises_is_reported_and_its_thread_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[tuple[Any, str, str]] = []

    def hook(args: Any) -> None:  # the thread's name as it is when the error is reported
        reported.append((args.exc_type, str(args.exc_value), args.thread.name))

    monkeypatch.setattr(threading, "excepthook", hook)
    ran_on: list[int] = []

    def fail() -> None:
        ran_on.append(threading.get_ident())
        msg = "boom"
        raise RuntimeError(msg)

    job = threads.start(fail, "mlbox-test-job")
    job.join(10)
    assert not job.is_alive()
    assert reported == [(RuntimeError, "boom", "mlbox-test-job")]
    assert ran_on[0] in kept()


def test_a_second_run_in_the_process_reuses_the_first_runs_threads(bench_model: Path, tmp_path: Path) -> None:
    """LoadGen's thread and the runner's workers: none exits, none is added."""

    def run(out: Path) -> dict[str, Any]:
        argv = ["--modelpath", str(bench_model), "--output-dir", str(out), "--allow-invalid"]
        argv += ["--scenario", "Offline", "--duration", "0.05", "--samples", "32"]
        argv += ["--runner", "threadpool", "--concurrency", "2", "--max-batchsize", "4"]
        assert main(argv) == 0
        result: dict[str, Any] = json.loads((out / "result.json").read_text())
        return result

    first = run(tmp_path / "a")
    after_first = kept()
    second = run(tmp_path / "b")
    assert first["harness"]["observed"]["workers_used"] == second["harness"]["observed"]["workers_used"] == 2
    assert len(after_first) >= 3  # LoadGen's thread and two workers, at least
    assert kept() == after_first
