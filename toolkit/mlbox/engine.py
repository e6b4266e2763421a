"""The one seam between mlbox and the container engine.

Every Docker SDK call lives here. The client is made on first use (never at import),
negotiating the API version: engines on many machines are older than the SDK's default.
Build streams are read chunk by chunk: lines go to the caller as they arrive and every
``error``/``errorDetail`` chunk becomes a typed exception (the SDK's high-level calls
either buffer the log until the end or, for push, do not raise at all).

Two engines stand behind the seam: Docker, and Podman through its Docker-compatible API
service (the same SDK, pointed at Podman's socket). Where Podman 4.3 answers that API
differently, the difference is handled here and named where it is handled.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlbox.errors import BuildError, EngineError, PushError, RunError

LineSink = Callable[[str], None]
ENGINES = ("docker", "podman")


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

    name: str  # how messages name it: "Docker engine", "Podman service"

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

    def close(self) -> None:
        """Let go of the engine (and stop what mlbox started for it); safe to call twice."""
        ...


def connect(kind: str = "docker") -> Engine:
    """The engine mlbox talks to. docker: DOCKER_HOST or the local socket. podman: the
    service CONTAINER_HOST names, else one mlbox starts for this command. Made lazily:
    nothing is contacted (or started) until the first call."""
    if kind == "podman":
        return PodmanEngine.from_env()
    if kind != "docker":
        msg = f"unknown engine {kind!r}"
        raise EngineError(msg, hint=f"pick one of {', '.join(ENGINES)}")
    return DockerEngine()


class DockerEngine:
    """The Docker Engine API through docker-py."""

    name = "Docker engine"  # how messages name it

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import docker  # heavy import, only when an engine is really needed
        from docker.errors import DockerException

        try:
            if self._base_url:
                return docker.DockerClient(base_url=self._base_url, version="auto")
            return docker.from_env(version="auto")
        except DockerException as err:
            msg = f"cannot reach the Docker engine: {_short(err)}"
            raise EngineError(
                msg,
                hint="start it (`sudo dockerd &` or `sudo systemctl start docker`), "
                "or point DOCKER_HOST at a running engine",
            ) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _engine_errors(action, self.name)

    def api_version(self) -> str:
        with self._errors("query the engine version"):
            return str(self.client.api.version()["ApiVersion"])

    def info(self) -> dict[str, Any]:
        with self._errors("query the engine"):
            return dict(self.client.info())

    def build(
        self, context: Path, *, tag: str, buildargs: Mapping[str, str], on_line: LineSink, nocache: bool = False
    ) -> str:
        with self._errors("build the image"):
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

        with self._errors(f"tag {source} as {repository}:{tag}"):
            try:
                self.client.api.tag(source, repository, tag)
            except ImageNotFound:
                msg = f"image {source} not found"
                raise EngineError(
                    msg, hint="build it first with `mlbox build` (or push --all only what exists)"
                ) from None

    def untag(self, ref: str) -> None:
        from docker.errors import ImageNotFound

        with self._errors(f"remove the tag {ref}"), contextlib.suppress(ImageNotFound):
            self.client.api.remove_image(ref, noprune=True)

    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None, on_progress: LineSink) -> str:
        """Push and return the manifest digest. docker-py does not raise when the registry
        refuses: the error is a chunk in the stream, so every chunk is checked."""
        with self._errors(f"push {repository}:{tag}"):
            stream = self.client.api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=dict(auth) if auth else None
            )
            return follow_push(stream, f"{repository}:{tag}", on_progress)

    def image_exists(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        with self._errors(f"look up image {ref}"):
            try:
                self.client.api.inspect_image(ref)
            except ImageNotFound:
                return False
            return True

    def inspect_image(self, ref: str) -> dict[str, Any]:
        from docker.errors import ImageNotFound

        with self._errors(f"inspect image {ref}"):
            try:
                return dict(self.client.api.inspect_image(ref))
            except ImageNotFound:
                msg = f"image {ref} not found"
                raise EngineError(msg, hint="build it first with `mlbox build`") from None

    def import_rootfs(self, tarball: Path, *, repository: str, tag: str, changes: list[str]) -> str:
        with self._errors("import the base image"):
            # The reference goes whole in `repo` (the API allows a tag there): Podman 4.3
            # ignores the separate `tag` parameter and would name the image REPO:latest.
            ref = f"{repository}:{tag}"
            out = self.client.api.import_image_from_file(str(tarball), repository=ref, changes=changes)
            # The engine answers with a JSON status line holding the new image id.
            match = re.search(r"sha256:[0-9a-f]{64}", str(out))
            if match is None:
                msg = f"the engine did not return an image id for the import: {out!r}"
                raise EngineError(msg)
            return match.group(0)

    def create_container(self, spec: ContainerSpec) -> str:
        kwargs = self._create_options(spec)
        with self._errors(f"create a container from {spec.image}"):
            return str(self.client.containers.create(spec.image, list(spec.command), **kwargs).id)

    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
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
        return kwargs

    def start_container(self, container: str) -> None:
        with self._errors("start the container"):
            self.client.api.start(container)

    def container_logs(self, container: str) -> Iterator[str]:
        with self._errors("read the container's log"):
            yield from _lines(self.client.api.logs(container, stream=True, follow=True))

    def wait_container(self, container: str) -> int:
        with self._errors("wait for the container"):
            return int(self.client.api.wait(container)["StatusCode"])

    def stop_container(self, container: str, *, timeout: int) -> None:
        with self._errors("stop the container"):
            self.client.api.stop(container, timeout=timeout)

    def remove_container(self, container: str) -> None:
        from docker.errors import NotFound

        with self._errors("remove the container"), contextlib.suppress(NotFound):
            self.client.api.remove_container(container, force=True)


class PodmanEngine(DockerEngine):
    """Podman through its Docker-compatible API service, with the same SDK calls as Docker.

    CONTAINER_HOST (Podman's own variable, `unix://PATH` or `tcp://HOST:PORT`) names a
    running service, as `podman --remote` uses it. Without it, mlbox starts
    `podman system service` for the command on a private socket and stops it in close():
    Podman has no daemon to rely on. Run as root, that is rootful Podman; run as a user,
    rootless Podman, with that user's storage.
    """

    name = "Podman service"

    def __init__(self, base_url: str | None = None) -> None:
        super().__init__(base_url)
        self._service: PodmanService | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PodmanEngine:
        url = (os.environ if environ is None else environ).get("CONTAINER_HOST") or None
        if url is not None and not url.startswith(("unix://", "tcp://")):
            msg = f"CONTAINER_HOST={url}: mlbox reaches a Podman service over unix:// or tcp:// only"
            hint = "forward the remote socket (ssh -L /tmp/podman.sock:/run/podman/podman.sock HOST) and use unix://"
            raise EngineError(msg, hint=hint)
        return cls(url)

    def _connect(self) -> Any:
        import docker
        from docker.errors import DockerException

        url = self._base_url
        if url is None:
            self._service = PodmanService.start()
            url = self._service.url
        try:
            return docker.DockerClient(base_url=url, version="auto")
        except DockerException as err:
            self.close()
            msg = f"cannot reach the Podman service at {url}: {_short(err)}"
            hint = "start one (`podman system service --time=0 unix:///PATH`) or unset CONTAINER_HOST"
            raise EngineError(msg, hint=hint) from None

    def close(self) -> None:
        super().close()
        if self._service is not None:
            self._service.stop()
            self._service = None

    # Podman 4.3.1 ends a followed log when it records the container's exit (its "died"
    # event), and it records the exit when something reads the container's state. Twice on
    # a busy 2-core machine it had not: the container had exited, the log stream and
    # /wait stayed open (docker-py sets no timeout on either), and the test suite stalled
    # for 11 and 17 minutes; the first `podman ps` ended the stall. So the Podman engine
    # reads the state itself, every WAIT_POLL_S, while it follows the log and instead of
    # /wait; and should the stream stay open LOG_GRACE_S after the exit, the rest of the
    # finished log is read in one piece.
    WAIT_POLL_S = 0.2
    LOG_GRACE_S = 5.0

    def _state(self, container: str) -> dict[str, Any]:
        with self._errors("inspect the container"):
            return dict(self.client.api.inspect_container(container)["State"])

    def container_logs(self, container: str) -> Iterator[str]:
        lines: queue.SimpleQueue[str | BaseException | None] = queue.SimpleQueue()

        def follow() -> None:
            try:
                for line in DockerEngine.container_logs(self, container):
                    lines.put(line)
            except BaseException as err:  # handed to the reader, which raises it
                lines.put(err)
            lines.put(None)

        # A daemon thread: should the stream never end, closing the service ends it (or the
        # process does).
        threading.Thread(target=follow, name="mlbox-podman-log", daemon=True).start()
        seen = 0
        exited_at: float | None = None
        while True:
            try:
                item = lines.get(timeout=self.WAIT_POLL_S)
            except queue.Empty:
                if exited_at is None:
                    if not self._state(container)["Running"]:
                        exited_at = time.monotonic()
                elif time.monotonic() - exited_at > self.LOG_GRACE_S:
                    break
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            seen += 1
            yield item
        with self._errors("read the container's log"):
            rest = list(_lines([self.client.api.logs(container, stream=False, follow=False)]))
        yield from rest[seen:]

    def wait_container(self, container: str) -> int:
        while True:
            state = self._state(container)
            if not state["Running"]:  # exited, or never started (Docker's "not-running")
                return int(state["ExitCode"])
            time.sleep(self.WAIT_POLL_S)

    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
        if spec.gpus:
            # Podman's Docker-compatible API accepts DeviceRequests and ignores them (the
            # container would start without a GPU); Podman gives GPUs through CDI devices.
            msg = f"the Podman service cannot give GPUs to {spec.image} through the Docker API mlbox uses"
            hint = (
                "run it with `podman run --device nvidia.com/gpu=all` (CDI: `nvidia-ctk cdi generate`), "
                "use --engine docker, or pass --gpus none to run without"
            )
            raise RunError(msg, hint=hint)
        kwargs = super()._create_options(spec)
        if self._service is not None:
            kwargs["ulimits"] = self._service.ulimits()
        return kwargs


@dataclass
class PodmanService:
    """`podman system service` on a private socket, for one mlbox command."""

    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"unix://{self.directory / 'podman.sock'}"

    @classmethod
    def start(cls, timeout: float = 60) -> PodmanService:
        podman = shutil.which("podman")
        if podman is None:
            msg = "--engine podman: the podman program is not installed"
            raise EngineError(msg, hint="install it (Debian 12: `apt-get install podman`), or use --engine docker")
        directory = Path(tempfile.mkdtemp(prefix="mlbox-podman-", dir=_socket_parent()))
        log = (directory / "service.log").open("wb")
        process = subprocess.Popen(
            [podman, "system", "service", "--time=0", f"unix://{directory / 'podman.sock'}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Its own session: Ctrl-C reaches mlbox, which still needs the service to stop
            # the benchmark's container; close() stops the service afterwards. Should mlbox
            # die without closing it (SIGKILL), the kernel stops it too.
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
        log.close()
        service = cls(process, directory)
        deadline = time.monotonic() + timeout
        while not service._answers():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = service.log_tail()
                service.stop()
                msg = f"`podman system service` did not start: {tail or 'no output'}"
                raise EngineError(msg, hint="run `podman info` to see what Podman needs on this machine")
            time.sleep(0.1)
        return service

    def _answers(self) -> bool:
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.directory / "podman.sock"))
            except OSError:
                return False
        return True

    def ulimits(self) -> list[Any]:
        """The service's own open-file and process limits, for each container it runs.

        Podman 4.3 asks the runtime for nofile=1048576 and nproc=4194304 in rootful
        containers unless told otherwise; a root without CAP_SYS_RESOURCE (in a container,
        in many CI sandboxes and VMs) cannot raise its limits, and runc then fails with
        "error setting rlimit". The service's own limits are always grantable, and are what
        rootless Podman (and Docker, through dockerd's) give containers anyway.
        """
        import resource

        from docker.types import Ulimit

        pid = self.process.pid
        return [
            Ulimit(name=name, soft=soft, hard=hard)
            for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))
            for soft, hard in [resource.prlimit(pid, which)]
        ]

    def log_tail(self) -> str:
        try:
            lines = (self.directory / "service.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-5:])

    def stop(self) -> None:
        """Stop the service, wait for it, and remove its socket directory.

        The whole process group is signalled: rootless Podman re-executes itself inside a
        user namespace, and that child (the service proper) shares the group its own session
        started; it must not outlive mlbox when the parent fails to pass SIGTERM on."""
        import signal

        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # start_new_session: the group's id is the pid


def _socket_parent() -> str:
    """Where the private socket goes: the user's runtime directory (as Podman's own), else
    the temporary directory; /tmp when either is too deep for a socket path (108 bytes)."""
    parent = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return parent if len(parent) < 60 else "/tmp"  # the socket gets a mkdtemp (0700) of its own there


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _chunk_error(chunk: Mapping[str, Any]) -> str | None:
    """The engine's message when a build or push stream chunk reports an error, else None.
    docker-py raises for neither: the error arrives as an ordinary chunk."""
    if "error" not in chunk and "errorDetail" not in chunk:
        return None
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error").strip()


# `TAG: digest: sha256:... size: N`: the status line both engines send when the registry
# accepted the manifest. Docker also sends the digest in an `aux` chunk; Podman 4.3 does not.
_PUSHED = re.compile(r": digest: (sha256:[0-9a-f]{64}) size: \d+$")


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
            lowered = message.lower()
            if "unauthorized" in lowered or "authentication" in lowered:
                hint = "log in: `docker login`, --username with --password-stdin, or MLBOX_REGISTRY_USERNAME/PASSWORD"
            elif "connection refused" in lowered or "no such host" in lowered:
                hint = "is the registry running and its address right (HOST[:PORT]/NAMESPACE)?"
            elif "http response to https client" in lowered:
                hint = (
                    "the registry speaks plain HTTP: Docker allows that for 127.0.0.0/8 and `insecure-registries`; "
                    'Podman needs [[registry]] location="HOST:PORT" insecure=true in registries.conf'
                )
            raise PushError(msg, hint=hint)
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and "Digest" in aux:
            digest = str(aux["Digest"])
        layer, status = chunk.get("id"), chunk.get("status")
        if not isinstance(status, str):
            continue
        pushed = _PUSHED.search(status)
        if pushed and not digest:
            digest = pushed.group(1)
        if isinstance(layer, str) and last.get(layer) != status:
            last[layer] = status  # one line per layer per state, not per progress tick
            on_progress(f"{layer}: {status}")
    if not digest.startswith("sha256:"):
        msg = f"the push of {ref} ended without a digest from the registry"
        raise PushError(msg, hint="see the push output above")
    return digest


# A new Dockerfile step: Docker's classic builder says `Step 3/9 : RUN ...`, Podman's
# (Buildah) `STEP 3/9: RUN ...`, with `[2/3] ` before it in a multi-stage build.
_STEP = re.compile(r"^(?:Step (\d+)/(\d+) : |(?:\[\d+/\d+\] )?STEP (\d+)/(\d+): )(.*)")


@dataclass(frozen=True)
class BuildStep:
    """A build output line that starts a Dockerfile step: step ``number`` of ``total`` (of its
    stage, for Buildah), running ``instruction``."""

    number: int
    total: int
    instruction: str


def build_step(line: str) -> BuildStep | None:
    """The step a build output line starts, from either engine's builder; None for other lines.
    The one parser of step lines: the executor names a failed step with it, and the terminal
    display shows progress with it."""
    match = _STEP.match(line)
    if match is None:
        return None
    docker_n, docker_total, buildah_n, buildah_total, instruction = match.groups()
    return BuildStep(int(docker_n or buildah_n), int(docker_total or buildah_total), instruction)


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
            msg = f"the image build failed{where}: {message}" + (f"\n  last output:\n{tail}" if tail else "")
            raise BuildError(msg, hint="fix the step above; `mlbox render` shows the Dockerfile")
        text = chunk.get("stream")
        if isinstance(text, str):
            for line in text.splitlines():
                if not line.strip():
                    continue
                if build_step(line) is not None:
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


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """A log's text, line by line, from the chunks the engine sends.

    A line may span two chunks, and so may one character: the engine cuts its frames by
    size, not at UTF-8 boundaries, so bytes are decoded incrementally (a chunk decoded on
    its own would turn a split character into two replacement marks).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        yield from lines
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


@contextmanager
def _engine_errors(action: str, engine: str = "Docker engine") -> Iterator[None]:
    """Turn SDK and transport failures into EngineError, keeping our own errors as they are."""
    from docker.errors import APIError, DockerException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    try:
        yield
    except (BuildError, EngineError, PushError, RunError):
        raise
    except RequestsConnectionError as err:
        msg = f"lost the {engine} while trying to {action}: {_short(err)}"
        raise EngineError(msg, hint=f"is the {engine} still running?") from None
    except APIError as err:
        explanation = str(err.explanation or err)
        msg = f"the {engine} refused to {action}: {explanation}"
        hint = None
        if "error setting rlimit" in explanation:
            # Podman asks the runtime for nofile/nproc limits above the service's own, which
            # only a root with CAP_SYS_RESOURCE may grant (not one inside a container or VM sandbox).
            hint = (
                "the Podman service cannot raise resource limits here: set default_ulimits "
                '(e.g. ["nofile=N:N", "nproc=N:N"], N at most `ulimit -Hn`/`-Hu`) in containers.conf, '
                "or unset CONTAINER_HOST and let mlbox start its own service"
            )
        raise EngineError(msg, hint=hint) from None
    except DockerException as err:
        msg = f"could not {action}: {_short(err)}"
        raise EngineError(msg) from None


def _short(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 300 else text[:300] + "..."
