"""Host-side wheelhouse: resolve the image's Python packages with pip on the host.

Builds then install with ``--no-index --require-hashes`` and need no network inside
the build (ENVIRONMENT.md: containers here cannot verify PyPI's certificate, and
air-gapped sites have no PyPI at all). A wheelhouse is cached per (python version,
platform, requirements) and enters the cache only once complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlbox.errors import WheelhouseError

LOCK_FILE = "requirements.lock"
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")


def platform_tags(newest: str) -> list[str]:
    """pip matches --platform exactly, so list every manylinux tag the base can run:
    ``manylinux_2_36_x86_64`` -> 2_36 down to 2_5, plus the legacy aliases."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", newest)
    if match is None:
        msg = f"unsupported wheel platform {newest!r}"
        raise WheelhouseError(msg, hint="use a manylinux_2_N_<arch> tag")
    minor, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{arch}" for m, alias in aliases.items() if m <= minor]
    return tags


def wheelhouse(
    requirements: tuple[str, ...], *, python: str, platform: str, cache: Path, no_deps: bool = False
) -> Path:
    """Return a directory of wheels plus a hash-pinned ``requirements.lock``."""
    key_src = "\n".join([python, platform, str(no_deps), *sorted(requirements)])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    target = cache / "wheels" / f"py{python}-{key}"
    if (target / LOCK_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _pip_download(requirements, tmp, python=python, platform=platform, no_deps=no_deps)
        (tmp / LOCK_FILE).write_text(lock_text(tmp))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: theirs is as good as ours
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _pip_download(requirements: tuple[str, ...], dest: Path, *, python: str, platform: str, no_deps: bool) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
    ]
    for tag in platform_tags(platform):
        cmd += ["--platform", tag]
    if no_deps:
        cmd.append("--no-deps")
    cmd += list(requirements)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = "\n".join(line for line in proc.stderr.splitlines() if "ERROR" in line)
        wanted = " ".join(requirements)
        msg = f"pip could not resolve {wanted} for Python {python} on {platform}:\n{detail or proc.stderr[-2000:]}"
        raise WheelhouseError(msg, hint="check the pins in images.yaml and that PyPI (or your index) is reachable")


def lock_text(directory: Path) -> str:
    """``name==version --hash=sha256:...`` for every wheel: pip verifies each in the image."""
    lines = []
    for wheel in sorted(directory.glob("*.whl")):
        match = _WHEEL_NAME.match(wheel.name)
        if match is None:
            continue
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{match['name']}=={match['version']} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"
