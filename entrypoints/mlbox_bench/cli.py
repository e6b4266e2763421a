"""mlbox-bench's entry: parse the settings, handle signals, run, exit with the verdict.

The run itself is run.py; what it reports, report.py (result.json, accuracy),
submission.py (the submission tree) and compliance.py (TEST01, TEST04).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from mlbox_bench.errors import EXIT_CRASH, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_VALID, BenchError, Interrupted
from mlbox_bench.files import os_reason
from mlbox_bench.settings import SettingsError, parse_settings

log = logging.getLogger("mlbox-bench")


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
    from mlbox_bench.run import run

    previous = _stop_on_signals()
    tighten_timer_slack()
    try:
        return run(settings)
    except BenchError as err:
        print(f"mlbox-bench: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as err:
        # Workers are stopped, temp files gone and the partial run set aside (the cleanup
        # ran); LoadGen's own thread cannot be stopped mid-test, so leave without it.
        print(f"mlbox-bench: {err}: stopped; no result.json was written", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED if err.signum == signal.SIGINT else 128 + err.signum)
    except OSError as err:  # the machine's fault (a full disk, a vanished mount), not a bug
        where = f" ({err.filename})" if err.filename else ""
        print(f"mlbox-bench: error: {os_reason(err)}{where}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:
        if os.environ.get("MLBOX_DEBUG"):
            raise
        kind, value = sys.exc_info()[:2]
        print(
            f"mlbox-bench: internal error: {kind.__name__ if kind else '?'}: {value}. This is a bug: "
            "run again with MLBOX_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_CRASH
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
        for each in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the cleanup short
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(signum)

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
