"""The user's configuration file: defaults for any `mlbox` option, by its name.

    # ~/.config/mlbox/config.yaml (or $XDG_CONFIG_HOME/mlbox/, or $MLBOX_CONFIG)
    base_image: mlbox-base:bookworm
    registry: registry.example.com/ml

A value here is the option's default in every command that has the option; a flag or
an MLBOX_* variable still wins. `mlbox base --set-default` writes `base_image`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from mlbox import yamlfile
from mlbox.errors import ConfigError
from mlbox.files import NotText, atomic_file, read_text
from mlbox_bench.errors import did_you_mean

Scalar = str | int | float | bool


def read_config(path: Path, known: Collection[str]) -> dict[str, Scalar]:
    """The file's settings ({} when there is none), each checked to name a known option."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        return {}
    except OSError as err:
        msg = f"cannot read the configuration file {path}: {err.strerror}"
        raise ConfigError(msg, hint="fix its permissions, or point MLBOX_CONFIG elsewhere") from None
    except NotText as err:
        raise ConfigError(str(err), hint="save it as UTF-8, or remove it") from None
    try:
        data = yamlfile.load(text) or {}
    except yamlfile.YamlProblem as err:
        msg = f"{path}: {err}"
        raise ConfigError(msg, hint="fix the file, or remove it") from None
    if not isinstance(data, dict):
        msg = f"{path} must be a mapping of option names to values"
        raise ConfigError(msg, hint="for example `base_image: mlbox-base:bookworm`")
    for key, value in data.items():
        if key not in known:
            msg = f"{path}: unknown option {key!r}{did_you_mean(key, sorted(known))}"
            raise ConfigError(msg, hint="keys are option names with '_' for '-', as in `base_image`")
        if not isinstance(value, Scalar):
            msg = f"{path}: {key} must be a single value, not {type(value).__name__}"
            raise ConfigError(msg)
    return data


def set_value(path: Path, key: str, value: Scalar, known: Collection[str]) -> None:
    """Set one key, keeping the others; the file is replaced whole (atomically)."""
    data: dict[str, Any] = dict(read_config(path, known))
    data[key] = value
    with atomic_file(path) as (out, _):
        out.write(yaml.safe_dump(data, sort_keys=True).encode())
