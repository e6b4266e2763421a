"""The one seam between mlbox and the container engine.

Every Docker SDK call lives here. The client is made on first use (never at import),
negotiating the API version: engines on many machines are older than the SDK's default.
Build streams are read chunk by chunk: lines go to the caller as they arrive and every
``error``/``errorDetail`` chunk becomes a typed exception (the SDK's high-level calls
either buffer the log until the end or, for push, do not raise at all).
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlbox.errors import BuildError, EngineError, PushError

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class Mount:
    """A host directory bind-mounted into a container."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """How to run one container: what `mlbox run` decides, engine-neutral."""

    image: str
    command: tuple[str, ...]
    user: str
    network: str = "none"
    shm_size: str | None = None
    read_only: bool = False
    mounts: tuple[Mount, ...] = ()
    cpuset_cpus: str | None = None
    gpus: bool = False  # every GPU, through the engine's NVIDIA runtime
    tmpfs: tuple[str, ...] = ()  # writable in-memory directories (a read-only root still has a /tmp)


class Engine(Protocol):
    """What mlbox needs from a container engine; unit tests substitute a fake
    (tests/support/fake_engine.py)."""

    def api_version(self) -> str: ...

    def info(self) -> dict[str, Any]: ...

    def build(
        self, context: Path, *, tag: str, buildargs: Mapping[str, str], on_line: LineSink, nocache: bool = False
    ) -> str: ...

    def tag(self, source: str, repository: str, tag: str) -> None: ...

    def untag(self, ref: str) -> None: ...

    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None, on_progress: LineSink) -> str: ...

    def image_exists(self, ref: str) -> bool: ...

    def inspect_image(self, ref: str) -> dict[str, Any]: ...

    def import_rootfs(self, tarball: Path, *, repository: str, tag: str, changes: list[str]) -> str: ...

    def create_container(self, spec: ContainerSpec) -> str: ...

    def start_container(self, container: str) -> None: ...

    def container_logs(self, container: str) -> Iterator[str]:
        """The container's output, line by line, until it exits."""
        ...

    def wait_container(self, container: str) -> int: ...

    def stop_container(self, container: str, *, timeout: int) -> None: ...

    def remove_container(self, container: str) -> None: ...


def connect() -> Engine:
    """The engine mlbox talks to (DOCKER_HOST or the local socket). Made lazily: nothing
    is contacted until the first call."""
    return DockerEngine()


class DockerEngine:
    """The Docker Engine API through docker-py."""

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker  # heavy import, only when an engine is really needed
            from docker.errors import DockerException

            try:
                if self._base_url:
                    self._client = docker.DockerClient(base_url=self._base_url, version="auto")
                else:
                    self._client = docker.from_env(version="auto")
            except DockerException as err:
                msg = f"cannot reach the Docker engine: {_short(err)}"
                raise EngineError(
                    msg,
                    hint="start it (`sudo dockerd &` or `sudo systemctl start docker`), "
                    "or point DOCKER_HOST at a running engine",
                ) from None
        return self._client

    def api_version(self) -> str:
        with _engine_errors("query the engine version"):
            return str(self.client.api.version()["ApiVersion"])

    def info(self) -> dict[str, Any]:
        with _engine_errors("query the engine"):
            return dict(self.client.info())

    def build(
        self, context: Path, *, tag: str, buildargs: Mapping[str, str], on_line: LineSink, nocache: bool = False
    ) -> str:
        with _engine_errors("build the image"):
            stream = self.client.api.build(
                path=str(context),
                tag=tag,
                buildargs=dict(buildargs),
                decode=True,
                nocache=nocache,
                rm=True,
                forcerm=True,  # remove intermediate containers of failed steps too
                pull=False,
            )
            return follow_build(stream, on_line)

    def tag(self, source: str, repository: str, tag: str) -> None:
        from docker.errors import ImageNotFound

        with _engine_errors(f"tag {source} as {repository}:{tag}"):
            try:
                self.client.api.tag(source, repository, tag)
            except ImageNotFound:
                msg = f"image {source} not found"
                raise EngineError(
                    msg, hint="build it first with `mlbox build` (or push --all only what exists)"
                ) from None

    def untag(self, ref: str) -> None:
        from docker.errors import ImageNotFound

        with _engine_errors(f"remove the tag {ref}"), contextlib.suppress(ImageNotFound):
            self.client.api.remove_image(ref, noprune=True)

    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None, on_progress: LineSink) -> str:
        """Push and return the manifest digest. docker-py does not raise when the registry
        refuses: the error is a chunk in the stream, so every chunk is checked."""
        with _engine_errors(f"push {repository}:{tag}"):
            stream = self.client.api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=dict(auth) if auth else None
            )
            return follow_push(stream, f"{repository}:{tag}", on_progress)

    def image_exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        with _engine_errors(f"look up image {ref}"):
            try:
                self.client.api.inspect_image(ref)
            except ImageNotFound:
                return False
            return True

    def inspect_image(self, ref: str) -> dict[str, Any]:
        from docker.errors import ImageNotFound

        with _engine_errors(f"inspect image {ref}"):
            try:
                return dict(self.client.api.inspect_image(ref))
            except ImageNotFound:
                msg = f"image {ref} not found"
                raise EngineError(msg, hint="build it first with `mlbox build`") from None

    def import_rootfs(self, tarball: Path, *, repository: str, tag: str, changes: list[str]) -> str:
        with _engine_errors("import the base image"):
            out = self.client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
            # The engine answers with a JSON status line holding the new image id.
            match = re.search(r"sha256:[0-9a-f]{64}", str(out))
            if match is None:
                msg = f"the engine did not return an image id for the import: {out!r}"
                raise EngineError(msg)
            return match.group(0)

    def create_container(self, spec: ContainerSpec) -> str:
        kwargs: dict[str, Any] = {
            "user": spec.user,
            "network_mode": spec.network,
            "read_only": spec.read_only,
            "volumes": {str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
        }
        if spec.shm_size:
            kwargs["shm_size"] = spec.shm_size
        if spec.cpuset_cpus:
            kwargs["cpuset_cpus"] = spec.cpuset_cpus
        if spec.tmpfs:
            kwargs["tmpfs"] = dict.fromkeys(spec.tmpfs, "")
        if spec.gpus:
            from docker.types import DeviceRequest

            kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        with _engine_errors(f"create a container from {spec.image}"):
            return str(self.client.containers.create(spec.image, list(spec.command), **kwargs).id)

    def start_container(self, container: str) -> None:
        with _engine_errors("start the container"):
            self.client.api.start(container)

    def container_logs(self, container: str) -> Iterator[str]:
        with _engine_errors("read the container's log"):
            pending = ""
            for chunk in self.client.api.logs(container, stream=True, follow=True):
                pending += chunk.decode(errors="replace")
                *lines, pending = pending.split("\n")
                yield from lines
            if pending:
                yield pending

    def wait_container(self, container: str) -> int:
        with _engine_errors("wait for the container"):
            return int(self.client.api.wait(container)["StatusCode"])

    def stop_container(self, container: str, *, timeout: int) -> None:
        with _engine_errors("stop the container"):
            self.client.api.stop(container, timeout=timeout)

    def remove_container(self, container: str) -> None:
        from docker.errors import NotFound

        with _engine_errors("remove the container"), contextlib.suppress(NotFound):
            self.client.api.remove_container(container, force=True)


def _chunk_error(chunk: Mapping[str, Any]) -> str | None:
    """The engine's message when a build or push stream chunk reports an error, else None.
    docker-py raises for neither: the error arrives as an ordinary chunk."""
    if "error" not in chunk and "errorDetail" not in chunk:
        return None
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error").strip()


def follow_push(stream: Iterator[Mapping[str, Any]], ref: str, on_progress: LineSink) -> str:
    """Walk a decoded push stream; return the digest or raise PushError with the
    registry's own message."""
    digest = ""
    last: dict[str, str] = {}
    for chunk in stream:
        message = _chunk_error(chunk)
        if message is not None:
            msg = f"the registry refused the push of {ref}: {message}"
            hint = "check the registry address and your login (docker login, --username/--password-stdin)"
            if "unauthorized" in message.lower() or "authentication" in message.lower():
                hint = "log in: `docker login`, --username with --password-stdin, or MLBOX_REGISTRY_USERNAME/PASSWORD"
            elif "connection refused" in message.lower() or "no such host" in message.lower():
                hint = "is the registry running and its address right (HOST[:PORT]/NAMESPACE)?"
            raise PushError(msg, hint=hint)
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and "Digest" in aux:
            digest = str(aux["Digest"])
        layer, status = chunk.get("id"), chunk.get("status")
        if isinstance(layer, str) and isinstance(status, str) and last.get(layer) != status:
            last[layer] = status  # one line per layer per state, not per progress tick
            on_progress(f"{layer}: {status}")
    if not digest.startswith("sha256:"):
        msg = f"the push of {ref} ended without a digest from the registry"
        raise PushError(msg, hint="see the push output above")
    return digest


_STEP = re.compile(r"^Step \d+/\d+ : ")


def follow_build(stream: Iterator[Mapping[str, Any]], on_line: LineSink) -> str:
    """Walk a decoded build stream; return the image id or raise BuildError with context."""
    step = ""
    recent: deque[str] = deque(maxlen=20)
    image_id = ""
    for chunk in stream:
        message = _chunk_error(chunk)
        if message is not None:
            where = f" at {step}" if step else ""
            tail = "\n".join(f"    {line}" for line in recent)
            msg = f"docker build failed{where}: {message}" + (f"\n  last output:\n{tail}" if tail else "")
            raise BuildError(msg, hint="fix the step above; `mlbox render` shows the Dockerfile")
        text = chunk.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                if not line.strip():
                    continue
                if _STEP.match(line):
                    step = line
                recent.append(line)
                on_line(line)
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and "ID" in aux:
            image_id = str(aux["ID"])
    if not image_id:
        msg = "docker build ended without producing an image"
        raise BuildError(msg, hint="see the build output above")
    return image_id


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """Turn SDK and transport failures into EngineError, keeping our own errors as they are."""
    from docker.errors import APIError, DockerException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    try:
        yield
    except (BuildError, EngineError, PushError):
        raise
    except RequestsConnectionError as err:
        msg = f"lost the Docker engine while trying to {action}: {_short(err)}"
        raise EngineError(msg, hint="is dockerd still running?") from None
    except APIError as err:
        msg = f"the Docker engine refused to {action}: {err.explanation or err}"
        raise EngineError(msg) from None
    except DockerException as err:
        msg = f"could not {action}: {_short(err)}"
        raise EngineError(msg) from None


def _short(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 300 else text[:300] + "..."
