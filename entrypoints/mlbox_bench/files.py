"""Files mlbox-bench writes: whole or not at all (a reader never sees half a file)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mlbox_bench.errors import BenchError


def os_reason(err: OSError) -> str:
    """The OS's words for an error ("Too many levels of symbolic links"), not its number."""
    return err.strerror or (os.strerror(err.errno) if err.errno else str(err))


def undecodable(err: UnicodeDecodeError) -> str:
    """What is wrong with a file that failed to decode as UTF-8, and where."""
    return f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"


def read_user_text(path: Path, what: str) -> str:
    """A text file the user named (``what`` names the flag), or a BenchError in words."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        msg = f"{what} {path}: cannot read it ({os_reason(err)})"
        raise BenchError(msg) from None
    except UnicodeDecodeError as err:
        msg = f"{what} {path}: {undecodable(err)}"
        raise BenchError(msg) from None


def write_atomic(path: Path, write: Callable[[BinaryIO], object], *, mode: int = 0o644) -> None:
    """Write through a temp file beside ``path`` and rename it into place: a reader sees
    the whole file or none. mkstemp makes 0600; results are for the user to read (0644)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        Path(tmp).chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda out: out.write(text.encode()))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def copy_atomic(source: Path, target: Path) -> None:
    with source.open("rb") as src:
        write_atomic(target, lambda out: _copy(src, out))


def _copy(src: BinaryIO, out: BinaryIO) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha256(path: Path) -> str:
    """A model file's sha256; for a directory (a TensorFlow SavedModel), the sha256 of its
    listing: one `<sha256>  <relative path>` line per file, sorted, as `sha256sum` writes it."""
    if not path.is_dir():
        return file_sha256(path)
    lines = [f"{file_sha256(f)}  {f.relative_to(path).as_posix()}\n" for f in sorted(path.rglob("*")) if f.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()
