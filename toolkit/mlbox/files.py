"""Atomic files: a file appears under its name complete, or not at all. And the --out
directories mlbox writes into: it replaces only what it wrote there itself. And text files
read with a sentence, not a traceback, when they are not UTF-8."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import BinaryIO

from mlbox.errors import OutputError
from mlbox_bench.files import os_reason, undecodable

# In an --out directory: the names mlbox wrote there, one per line. A name not listed is the
# user's, and mlbox does not replace it without --force.
WRITTEN = ".mlbox-written"


class NotText(ValueError):
    """A file that is not UTF-8 text; the message names it and its first bad byte."""


def read_text(path: Path | Traversable) -> str:
    """The file's UTF-8 text; NotText when it is not UTF-8 (OSError as reading raises it)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_text(path, err) from None


def not_text(path: Path | Traversable, err: UnicodeDecodeError) -> NotText:
    """NotText for a file whose whole content failed to decode with ``err``."""
    msg = f"{path} is {undecodable(err)}"
    return NotText(msg)


def cannot_write(path: Path, err: OSError, *, option: str) -> OutputError:
    """The error for an output ``path`` (given as ``option``) the OS refused: the path it
    refused, which may be a parent of ``path``, and the reason in words."""
    where = err.filename if isinstance(err.filename, str | bytes) else path
    # mkdir(exist_ok=True) says "File exists" of a path on the way that is no directory: a
    # file, or a symlink that leads nowhere or in a loop
    reason = "it is not a directory" if isinstance(err, FileExistsError) else os_reason(err)
    return OutputError(f"cannot write {os.fsdecode(where)}: {reason}", hint=f"choose another {option}")


@contextmanager
def atomic_file(target: Path, *, mode: int = 0o644) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield (file, temp path) beside ``target``; on a clean exit the temp file becomes
    ``target`` with ``mode`` (mkstemp makes 0600: images run as a non-root user and must
    read what mlbox stages). On any exception, including a check the caller makes on the
    temp path before leaving the block, the temp file is removed and ``target`` untouched."""
    if target.exists() and not target.is_file():  # the rename would replace a device or a FIFO
        msg = f"{target} exists and is not a regular file"
        raise OutputError(msg, hint="give the path of a file to write (or to replace)")
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
    """Refuse (see refuse_to_replace) before anything is written, make OUT, then yield a
    callback the caller calls with each name it has written; on leaving, even by an error,
    those are recorded, in one write (a per-name record would rewrite the list once per
    file). The OS refusing OUT or a path in it (permissions, a file or a symlink loop on
    the way) is an OutputError; other errors (reading a cache, say) pass through."""
    refuse_to_replace(out, names, force=force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(out, err, option="--out") from None
    done: list[str] = []
    try:
        yield done.append
    except OSError as err:
        if not (isinstance(err.filename, str | bytes) and _within(Path(os.fsdecode(err.filename)), out)):
            raise
        raise cannot_write(out, err, option="--out") from None
    finally:
        if done:
            note_written(out, done)


def _within(path: Path, directory: Path) -> bool:
    return path.absolute().is_relative_to(directory.absolute())
