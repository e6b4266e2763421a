"""Threads that call into LoadGen live as long as the process.

LoadGen gives every thread that logs (the one that calls StartTest, those that call
QuerySamplesComplete) a thread-local logger. When such a thread exits, its logger is
handed to LoadGen's IO thread to free, and LoadGen (6.0) can free it while a request to
swap its buffers is still pending: the IO thread then reads freed memory and the process
dies in ``TlsLogger::SwapBuffers`` (seen about once in 15 runs of the unit tier's
in-process benches, never in a process that runs one test). Any process that runs several
LoadGen tests (the tests, ``--find-peak``, a submission's runs) met it. A thread that has
called into LoadGen is therefore never let go: when its job ends it waits, idle, for the
next one, so LoadGen never sees it exit.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable

_IDLE_NAME = "mlbox-idle"
_idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()


class Job:
    """One target run on a kept thread; ``join`` and ``is_alive`` as on a Thread."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.target = target
        self.name = name
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        return not self._done.is_set()


class _Worker:
    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        # Daemon: at exit the process ends without waiting for idle workers, and without
        # running their thread-local destructors (so LoadGen never frees their loggers).
        threading.Thread(target=self._serve, name=_IDLE_NAME, daemon=True).start()

    def _serve(self) -> None:
        # Ctrl-C and SIGTERM go to the main thread, which stops the run: blocked here, and in
        # the threads LoadGen starts from here (they inherit the mask), the kernel delivers
        # them there at once instead of to a busy thread, to be noticed a while later.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        me = threading.current_thread()
        while True:
            job = self.jobs.get()
            me.name = job.name  # runners key what they observed by thread name
            try:
                job.target()
            except BaseException as err:  # reported as a thread's uncaught error is; the thread stays
                threading.excepthook(threading.ExceptHookArgs((type(err), err, err.__traceback__, me)))
            finally:
                me.name = _IDLE_NAME
                _idle.put(self)  # idle again before join() returns: the next job reuses it
                job._done.set()


def start(target: Callable[[], object], name: str) -> Job:
    """Run ``target`` on an idle kept thread (a new one when none is idle)."""
    try:
        worker = _idle.get_nowait()
    except queue.Empty:
        worker = _Worker()
    job = Job(target, name)
    worker.jobs.put(job)
    return job
