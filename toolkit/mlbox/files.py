"""Atomic files: a file appears under its name complete, or not at all. And the --out
directories mlbox writes into: it replaces only what it wrote there itself."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mlbox.errors import OutputError

# In an --out directory: the names mlbox wrote there, one per line. A name not listed is the
# user's, and mlbox does not replace it without --force.
WRITTEN = ".mlbox-written"


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


def refuse_to_replace(out: Path, names: Iterable[str], *, force: bool) -> None:
    """OutputError when OUT holds one of ``names`` that mlbox did not write there (one
    not listed in OUT/.mlbox-written), unless ``force``. Nothing is written or removed."""
    if force or not out.is_dir():
        return
    theirs = sorted(n for n in set(names) - written(out) if os.path.lexists(out / n))
    if theirs:
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        msg = f"{out} already holds {shown}, which mlbox did not write there"
        raise OutputError(msg, hint="choose another --out, or pass --force to replace them")


def written(out: Path) -> set[str]:
    """The names mlbox recorded writing in OUT."""
    try:
        text = (out / WRITTEN).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line for line in text.splitlines() if line}


def note_written(out: Path, names: Iterable[str]) -> None:
    """Record ``names`` as mlbox's in OUT (with what it recorded before)."""
    with atomic_file(out / WRITTEN) as (f, _):
        f.write("".join(f"{n}\n" for n in sorted(written(out) | set(names))).encode())


@contextmanager
def writing_into(out: Path, names: Iterable[str], *, force: bool) -> Iterator[Callable[[str], None]]:
    """Refuse (see refuse_to_replace) before anything is written, then yield a callback the
    caller calls with each name it has written; on leaving, even by an error, those are
    recorded, in one write (a per-name record would rewrite the list once per file)."""
    refuse_to_replace(out, names, force=force)
    done: list[str] = []
    try:
        yield done.append
    finally:
        if done:
            note_written(out, done)
