"""Where mlbox keeps files on the host."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$MLBOX_CACHE_DIR, else $XDG_CACHE_HOME/mlbox, else ~/.cache/mlbox."""
    explicit = os.environ.get("MLBOX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlbox"


def state_dir() -> Path:
    """$MLBOX_STATE_DIR, else $XDG_STATE_HOME/mlbox, else ~/.local/state/mlbox: records
    that are not a cache (what was published, with digests)."""
    explicit = os.environ.get("MLBOX_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "mlbox"


def publish_records() -> Path:
    return state_dir() / "published.jsonl"


def repo_root() -> Path:
    """The source tree (catalog and templates live beside the package in a checkout)."""
    return Path(__file__).resolve().parents[2]


def default_catalog() -> Path:
    return repo_root() / "images.yaml"


def templates_dir() -> Path:
    return repo_root() / "dockerfiles"


def bench_source() -> Path:
    return repo_root() / "entrypoints" / "mlbox_bench"
