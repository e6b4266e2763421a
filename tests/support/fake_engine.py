"""An in-memory container engine with mlbox's Engine interface, for unit tests of the
executors (build staging, push, run). It records every call, keeps images, tags and
containers as plain dicts, and fails where a test tells it to. Every capability is also
tested against the real engine in tests/integration/.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlbox.engine import ContainerSpec, LineSink
from mlbox.errors import EngineError


@dataclass
class FakeContainer:
    spec: ContainerSpec
    started: bool = False
    stopped: bool = False


@dataclass
class FakeEngine:
    name = "fake engine"
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # reference -> inspect data
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    # method name -> exception to raise when it is called (the engine refusing)
    fail: dict[str, BaseException] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=lambda: ["mlbox-bench: VALID"])
    interrupt_after: int | None = None  # raise KeyboardInterrupt after this many log lines
    exit_code: int = 0
    digest: str = "sha256:" + "d" * 64
    built_contexts: list[dict[str, bytes]] = field(default_factory=list)  # every file of each build context
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    # --- images ---------------------------------------------------------------------
    def api_version(self) -> str:
        self._call("api_version")
        return "1.41"

    def info(self) -> dict[str, Any]:
        self._call("info")
        return {"ServerVersion": "fake", "DockerRootDir": "/", "Runtimes": {"runc": {}}}

    def build(
        self, context: Path, *, tag: str, buildargs: Mapping[str, str], on_line: LineSink, nocache: bool = False
    ) -> str:
        self._call("build", tag, dict(buildargs))
        files = {str(p.relative_to(context)): p.read_bytes() for p in sorted(context.rglob("*")) if p.is_file()}
        self.built_contexts.append(files)
        image_id = f"sha256:{next(self._ids):064x}"
        on_line("Step 1/1 : FROM scratch")
        self.images[tag] = {"Id": image_id, "RepoDigests": [], "Config": {"Labels": {}}}
        return image_id

    def tag(self, source: str, repository: str, tag: str) -> None:
        self._call("tag", source, repository, tag)
        if source not in self.images:
            msg = f"image {source} not found"
            raise EngineError(msg)
        self.images[f"{repository}:{tag}"] = self.images[source]

    def untag(self, ref: str) -> None:
        self._call("untag", ref)
        self.images.pop(ref, None)

    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None, on_progress: LineSink) -> str:
        self._call("push", repository, tag)
        on_progress("layer: Pushed")
        return self.digest

    def image_exists(self, ref: str) -> bool:
        self._call("image_exists", ref)
        return ref in self.images

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self._call("inspect_image", ref)
        if ref not in self.images:
            msg = f"image {ref} not found"
            raise EngineError(msg, hint="build it first with `mlbox build`")
        return self.images[ref]

    def import_rootfs(self, tarball: Path, *, repository: str, tag: str, changes: list[str]) -> str:
        self._call("import_rootfs", repository, tag)
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[f"{repository}:{tag}"] = {"Id": image_id, "Config": {"Labels": {}}}
        return image_id

    # --- containers -----------------------------------------------------------------
    def create_container(self, spec: ContainerSpec) -> str:
        self._call("create_container", spec)
        cid = f"c{next(self._ids)}"
        self.containers[cid] = FakeContainer(spec)
        return cid

    def start_container(self, container: str) -> None:
        self._call("start_container", container)
        self.containers[container].started = True

    def container_logs(self, container: str) -> Iterator[str]:
        self._call("container_logs", container)
        for n, line in enumerate(self.log_lines):
            if self.interrupt_after is not None and n == self.interrupt_after:
                raise KeyboardInterrupt
            yield line

    def wait_container(self, container: str) -> int:
        self._call("wait_container", container)
        return 143 if self.containers[container].stopped else self.exit_code

    def stop_container(self, container: str, *, timeout: int) -> None:
        self._call("stop_container", container)
        self.containers[container].stopped = True

    def remove_container(self, container: str) -> None:
        self._call("remove_container", container)
        self.containers.pop(container, None)

    def close(self) -> None:
        self._call("close")

    def names(self) -> list[str]:
        """The methods called, in order."""
        return [name for name, _ in self.calls]


def use_fake_engine(
    monkeypatch: Any, engine: FakeEngine, kinds: list[str] | None = None
) -> Callable[[str], FakeEngine]:
    """Make `mlbox` CLI commands talk to ``engine``; ``kinds`` collects the engine each asked for."""
    import mlbox.engine

    def connect(kind: str = "docker") -> FakeEngine:
        if kinds is not None:
            kinds.append(kind)
        return engine

    monkeypatch.setattr(mlbox.engine, "connect", connect)
    return connect
