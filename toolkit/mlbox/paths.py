"""Where mlbox keeps files on the host, and where it finds its own data.

The catalog, the templates and the harness source travel inside the package (a wheel
works as well as a checkout): they are read with importlib.resources. In the source tree
`mlbox/data/` holds symlinks to the top-level `images.yaml` and `dockerfiles/`, which
stay the one source; building a wheel copies what they point at.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
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


def config_file() -> Path:
    """$MLBOX_CONFIG, else $XDG_CONFIG_HOME/mlbox/config.yaml, else ~/.config/mlbox/config.yaml."""
    explicit = os.environ.get("MLBOX_CONFIG")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "mlbox" / "config.yaml"


def packaged_catalog() -> Traversable:
    """The catalog shipped with mlbox (images.yaml); --catalog picks another."""
    return files("mlbox") / "data" / "images.yaml"


def templates() -> Traversable:
    """The Dockerfile templates shipped with mlbox (dockerfiles/)."""
    return files("mlbox") / "data" / "dockerfiles"


def harness_package() -> Traversable:
    """The in-image harness (mlbox_bench): installed beside mlbox, copied into images."""
    return files("mlbox_bench")
