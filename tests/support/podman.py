"""Podman for the integration tests: private storage, a rootless service, and cleanup that
leaves nothing behind (no images, no containers, no service, no pause process, no user).

Every Podman the tests use keeps its images in a temporary directory (CONTAINERS_STORAGE_CONF),
never in the machine's own Podman storage, so removing that directory removes all it made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def write_configuration(root: Path, *, insecure: Iterable[str] = ()) -> dict[str, str]:
    """storage.conf and registries.conf under ``root``; returns the variables that make
    Podman use them. ``insecure``: HOST:PORT registries spoken to over plain HTTP."""
    storage = root / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "overlay"\n'  # native overlay, also rootless (kernel >= 5.13): no fuse-overlayfs needed
        f'graphroot = "{root / "storage"}"\n'
        f'runroot = "{root / "storage-run"}"\n'
    )
    registries = root / "registries.conf"
    registries.write_text("".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n\n' for r in insecure))
    return {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_REGISTRIES_CONF": str(registries)}


def unmount_under(root: Path) -> None:
    """Rootful Podman leaves its overlay home bind-mounted after the service stops."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", point], check=True)


def processes_of(uid: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue  # exited while we looked
        if int(fields["Uid"].split()[0]) == uid:
            pids.append(int(status.parent.name))
    return pids


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv and cmdline.parent.name != str(os.getpid()):
            found.append(argv.strip())
    return found


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class RootlessPodman:
    """`podman system service` run by a temporary unprivileged user with subordinate ids."""

    user: str
    uid: int
    gid: int
    root: Path  # owned by the user: home, runtime dir, storage, socket
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.root / 'podman.sock'}"

    @classmethod
    def start(cls, *, insecure: Iterable[str] = ()) -> RootlessPodman:
        user = "mlbox-rl-" + secrets.token_hex(4)
        root = Path(tempfile.mkdtemp(prefix="mlbox-rootless-"))
        # A normal (not --system) user gets subordinate uid/gid ranges from useradd
        # (SUB_UID_COUNT in login.defs): rootless Podman maps the image's users into them.
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(root / "home"),
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                user,
            ],
            check=True,
            capture_output=True,
        )
        uid, gid = int(_id(user, "-u")), int(_id(user, "-g"))
        for path in ("/etc/subuid", "/etc/subgid"):
            if not any(line.startswith(f"{user}:") for line in Path(path).read_text().splitlines()):
                subprocess.run(["userdel", user], check=False)
                shutil.rmtree(root)
                msg = f"useradd gave {user} no range in {path}: rootless Podman needs one (SUB_UID_COUNT)"
                raise RuntimeError(msg)
        env = write_configuration(root, insecure=insecure)
        for sub in ("home", "run"):
            (root / sub).mkdir(mode=0o700)
        for owned in [root, *root.rglob("*")]:
            os.chown(owned, uid, gid)
        env |= {
            "HOME": str(root / "home"),
            "XDG_RUNTIME_DIR": str(root / "run"),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        log = (root / "service.log").open("wb")
        process = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--init-groups",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in env.items()),
                "podman",
                "system",
                "service",
                "--time=0",
                f"unix://{root / 'podman.sock'}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        service = cls(user, uid, gid, root, process)
        deadline = time.monotonic() + 60
        while not (root / "podman.sock").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                text = (root / "service.log").read_text(errors="replace")
                service.stop()
                msg = f"the rootless Podman service did not start:\n{text}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        return service

    def stop(self) -> list[str]:
        """Stop the service and Podman's pause process (it holds the user namespace), then
        remove the user and everything under root. Returns what had to be killed besides."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        pause = self.root / "run" / "libpod" / "tmp" / "pause.pid"
        if pause.is_file():
            pid = int(pause.read_text().strip())
            if pid in processes_of(self.uid):
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)
        # Rootless Podman re-executes itself inside the user namespace: that child is the
        # service. Its parent forwards SIGTERM to it, but on a busy CI machine the child once
        # outlived it by more than 20 s. Stopping the service means asking every process of
        # it (only this test's temporary user runs any) to stop; what SIGTERM and a grace
        # period do not end is a stray.
        for attempt in range(2):
            deadline = time.monotonic() + 20
            while processes_of(self.uid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if attempt == 0:
                for pid in processes_of(self.uid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
        stray = []
        for pid in processes_of(self.uid):  # only this test's own temporary user runs these
            stray.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        subprocess.run(["userdel", self.user], check=True, capture_output=True)
        unmount_under(self.root)
        shutil.rmtree(self.root)
        return stray


def _id(user: str, flag: str) -> str:
    return subprocess.run(["id", flag, user], check=True, capture_output=True, text=True).stdout.strip()
