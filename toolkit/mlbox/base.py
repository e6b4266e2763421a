"""``mlbox base``: make a base image from Debian packages, for machines that cannot pull one.

debootstrap a minimal Debian with python3 (and venv, which the deps stage uses to get
pip), drop apt's caches, and ``docker import`` the tree. This is how Debian's official
images are made; pointing --mirror at a snapshot date makes it reproducible.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlbox.engine import Engine
from mlbox.errors import BaseImageError

log = logging.getLogger(__name__)

DEFAULT_SUITE = "bookworm"  # Debian 12: python3 is 3.11, as the catalog's default expects
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGE_CHANGES = ["ENV LANG=C.UTF-8", 'CMD ["python3"]']


@dataclass(frozen=True)
class BaseSpec:
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    repository: str = "mlbox-base"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.suite}"


def make_base(spec: BaseSpec, engine: Engine, *, force: bool = False) -> str:
    """Return the base image reference, bootstrapping it unless it exists already."""
    if not force and engine.image_exists(spec.ref):
        log.info("base image %s exists; --force rebuilds it", spec.ref)
        return spec.ref
    if shutil.which("debootstrap") is None:
        msg = "debootstrap is not installed"
        raise BaseImageError(
            msg, hint="install it (`apt-get install debootstrap`), or pass --base-image to use a pulled image"
        )
    if os.geteuid() != 0:
        msg = "mlbox base needs root: debootstrap creates device nodes and chroots"
        raise BaseImageError(msg, hint="run it with sudo, or use a pulled base image")
    with tempfile.TemporaryDirectory(prefix="mlbox-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            spec.suite,
            str(rootfs),
            spec.mirror,
        ]
        log.info("bootstrapping Debian %s from %s (about half a minute)", spec.suite, spec.mirror)
        _run(cmd, "debootstrap")
        _slim(rootfs)
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], "tar")
        repository, tag = spec.ref.rsplit(":", 1)
        image_id = engine.import_rootfs(tarball, repository=repository, tag=tag, changes=IMAGE_CHANGES)
    log.info("imported %s as %s", image_id, spec.ref)
    return spec.ref


def _slim(rootfs: Path) -> None:
    """Drop what an image never needs: downloaded .debs, apt lists, docs."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        target = rootfs / sub
        if target.is_dir():
            for child in target.iterdir():
                if child.is_symlink() or child.is_file():
                    child.unlink()
                elif child.is_dir() and child.name != "partial":  # apt expects partial/
                    shutil.rmtree(child)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-10:] + proc.stderr.splitlines()[-10:])
        msg = f"{what} failed (exit {proc.returncode}):\n{tail}"
        raise BaseImageError(msg, hint="check the mirror is reachable (--mirror) and there is free disk space")
