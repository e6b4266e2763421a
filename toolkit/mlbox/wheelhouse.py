"""Host-side wheelhouse: resolve the image's Python packages with pip on the host.

Builds then install with ``--no-index --require-hashes`` and need no network inside
the build (ENVIRONMENT.md: containers here cannot verify PyPI's certificate, and
air-gapped sites have no PyPI at all). A wheelhouse is cached per (python version,
platform, requirements) and enters the cache only once complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlbox.errors import WheelhouseError

log = logging.getLogger(__name__)

LOCK_FILE = "requirements.lock"
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")
_SDIST_NAME = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)\.tar\.gz$")


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
    requirements: tuple[str, ...],
    *,
    python: str,
    platform: str,
    cache: Path,
    no_deps: bool = False,
    sdist: str | None = None,
    index: str | None = None,
) -> Path:
    """Return a directory of wheels plus a hash-pinned ``requirements.lock``.

    With ``sdist``, that requirement is fetched as PyPI's source distribution (for a
    builder stage to compile) and ``requirements`` are its build requirements. ``index``
    is an extra package index (PyTorch's CPU wheels live only there); the lock file names it.
    """
    key_src = "\n".join([python, platform, str(no_deps), f"sdist={sdist}", f"index={index}", *sorted(requirements)])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    target = cache / "wheels" / f"py{python}-{key}"
    if (target / LOCK_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if requirements:
            _pip_download(requirements, tmp, python=python, platform=platform, no_deps=no_deps, index=index)
        if sdist is not None:
            _pip_download_sdist(sdist, tmp)
        header = f"# resolved with pip's default index and the extra index {index}\n" if index else ""
        (tmp / LOCK_FILE).write_text(header + lock_text(tmp, only=sdist))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: theirs is as good as ours
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _pip_download(
    requirements: tuple[str, ...], dest: Path, *, python: str, platform: str, no_deps: bool, index: str | None
) -> None:
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
    if index is not None:
        cmd += ["--extra-index-url", index]
        if not _reachable(index):
            # pip would retry every package against it, for minutes; its other sources
            # (the default index, pip.conf's find-links) still decide, and hashes pin the result.
            log.warning("package index %s is unreachable: resolving from pip's other sources", index)
            cmd += ["--retries", "0"]
    cmd += list(requirements)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        wanted = " ".join(requirements)
        msg = f"pip could not resolve {wanted} for Python {python} on {platform}:\n{_pip_failure(proc.stderr)}"
        raise WheelhouseError(msg, hint="check the pins in images.yaml and that PyPI (or your index) is reachable")


def _pip_download_sdist(requirement: str, dest: Path) -> None:
    name = requirement.split("==")[0]
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--dest", str(dest)]
    cmd += ["--no-deps", "--no-binary", name, requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"pip could not fetch the source distribution of {requirement}:\n{_pip_failure(proc.stderr)}"
        raise WheelhouseError(msg, hint="check that PyPI (or your index) is reachable and has the sdist")


def _reachable(url: str) -> bool:
    import requests

    try:
        requests.head(url, timeout=10, allow_redirects=True)
    except requests.RequestException:
        return False
    return True


def _pip_failure(stderr: str) -> str:
    """pip's ERROR lines, and its last line (a crash ends in a traceback, whose last line
    is the only one that says what happened)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    picked = [line for line in lines if "ERROR" in line]
    if lines and lines[-1] not in picked:
        picked.append(lines[-1])
    return "\n".join(picked)[-2000:]


def lock_text(directory: Path, *, only: str | None = None) -> str:
    """``name==version --hash=sha256:...`` for every wheel and sdist: pip verifies each in
    the image. With ``only`` (a source build), just that sdist: the builder installs its
    build requirements itself (pip does not hash-check those), from the same directory."""
    lines = []
    for path in sorted([*directory.glob("*.whl"), *directory.glob("*.tar.gz")]):
        match = _WHEEL_NAME.match(path.name) or _SDIST_NAME.match(path.name)
        if match is None:
            continue
        if only is not None and _normal(match["name"]) != _normal(only.split("==")[0]):
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{match['name']}=={match['version']} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
