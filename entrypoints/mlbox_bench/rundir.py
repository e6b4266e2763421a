"""A run's files: a run never destroys an earlier one, and a broken one never passes
for a result.

- One run at a time per output directory: a lock (flock, so a killed run frees it).
- LoadGen and mlbox-bench write into a staging directory inside the output directory;
  only a finished run is moved into place, so a failing run leaves the earlier
  result.json and logs as they were.
- A failed or interrupted run is set aside in ``incomplete/<time>-<kind>/``: an
  INCOMPLETE marker with the reason, a result.json with ``"complete": false``, and
  LoadGen's files renamed ``*.partial`` (their summary may say VALID: the harness's
  verdict is what counts, and no tool should read these as a result). A staging
  directory left by a killed run is set aside the same way by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlbox_bench.errors import BenchError
from mlbox_bench.files import os_reason, write_json_atomic, write_text_atomic

log = logging.getLogger("mlbox-bench")

LOCK = ".mlbox-bench.lock"
STAGING_PREFIX = ".mlbox-run-"
INCOMPLETE = "incomplete"  # the folder failed runs are set aside in
MARKER = "INCOMPLETE"  # the file that says a run's folder is not a result
PARTIAL = ".partial"
# What a run leaves in its directory. A new run removes the earlier run's copies of those
# it does not write itself, so one run's files never sit beside another's result.json.
RUN_FILES = (
    "mlperf_log_summary.txt",
    "mlperf_log_detail.txt",
    "mlperf_log_accuracy.json",
    "mlperf_log_trace.json",
    "accuracy.txt",
    "audit.config",
    "result.json",
)


class Run:
    """The staging directory of one run and where it goes when it ends."""

    def __init__(self, root: Path, final: Path, kind: str) -> None:
        self.root = root
        self.final = final
        self.kind = kind
        self.started = time.time()
        self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        self.staging.chmod(0o755)  # mkdtemp makes 0700: a run set aside is for the user to read

    def commit(self, result: dict[str, Any]) -> Path:
        """Move the finished run into place; result.json goes last, so it only ever vouches
        for the logs beside it. Returns the path of result.json."""
        write_json_atomic(self.staging / "result.json", {**result, "complete": True})
        self.final.mkdir(parents=True, exist_ok=True)
        (self.final / "result.json").unlink(missing_ok=True)  # the earlier verdict goes first
        made = {p.name for p in self.staging.iterdir()}
        for name in RUN_FILES:
            if name not in made:
                (self.final / name).unlink(missing_ok=True)
        for name in sorted(made, key=lambda n: n == "result.json"):
            os.replace(self.staging / name, self.final / name)
        self.staging.rmdir()
        return self.final / "result.json"

    def set_aside(self, reason: str) -> Path | None:
        """Mark the run failed and move it to incomplete/; returns where it went, or None
        when it had written nothing (it failed before LoadGen started): nothing to keep."""
        if not any(self.staging.iterdir()):
            self.staging.rmdir()
            return None
        return set_aside(self.root, self.staging, reason, self.kind, self.started)


def set_aside(root: Path, staging: Path, reason: str, kind: str, started: float) -> Path:
    files = sorted(p.name for p in staging.iterdir())
    for name in files:
        if name.startswith("mlperf_log_"):  # LoadGen's: renamed, so no tool takes them for a result
            os.replace(staging / name, staging / (name + PARTIAL))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    parent = root / INCOMPLETE
    parent.mkdir(exist_ok=True)
    target = parent / f"{stamp}-{kind}"
    for n in range(2, 1000):  # two failures in one second: each keeps its own folder
        if not target.exists():
            break
        target = parent / f"{stamp}-{kind}-{n}"
    record = {"complete": False, "reason": reason, "kind": kind, "started": stamp, "files": files}
    write_json_atomic(staging / "result.json", record)
    write_text_atomic(staging / MARKER, f"This run did not finish: {reason}\nNothing here is a result.\n")
    os.replace(staging, target)
    return target


@contextlib.contextmanager
def claimed(root: Path) -> Iterator[None]:
    """Hold the output directory's lock for the whole run; refuse one another run holds."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        reason = os_reason(err)
        if isinstance(err, FileExistsError):  # mkdir's word for "there, but not a directory"
            try:
                root.stat()
                reason = "it is not a directory"
            except OSError as why:  # a symlink loop or a dangling link
                reason = os_reason(why)
        msg = f"cannot use output directory {root}: {reason} (mount or choose a writable directory)"
        raise BenchError(msg) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            msg = f"output directory {root} is in use by another mlbox-bench run ({holder})"
            raise BenchError(msg + "; wait for it to end, or give this run its own --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        _adopt_orphans(root)
        yield
    finally:
        os.close(fd)  # closing frees the lock


def _adopt_orphans(root: Path) -> None:
    """Staging folders no run holds (we hold the lock): left by a run that was killed."""
    for staging in sorted(root.glob(STAGING_PREFIX + "*")):
        if staging.is_dir() and not staging.is_symlink():
            reason = "the run's process ended before the run finished (killed, or out of memory)"
            where = set_aside(root, staging, reason, "unknown", staging.stat().st_mtime)
            log.warning("a killed run's files were set aside in %s", where)
