"""Atomic files: a file appears under its name complete, or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(target: Path, *, mode: int = 0o644) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield (file, temp path) beside ``target``; on a clean exit the temp file becomes
    ``target`` with ``mode`` (mkstemp makes 0600: images run as a non-root user and must
    read what mlbox stages). On any exception, including a check the caller makes on the
    temp path before leaving the block, the temp file is removed and ``target`` untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
        tmp.chmod(mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
