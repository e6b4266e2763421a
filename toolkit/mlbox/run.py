"""`mlbox run`: a benchmark container, run safely, its log streamed, its verdict returned.

The results directory is a bind mount created by (and so owned by) the calling user, and
the container runs as that user (--user uid:gid), so every file LoadGen writes is theirs.
No network by default: a benchmark needs none. cuda images get every GPU.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlbox.engine import DockerEngine, _engine_errors
from mlbox.errors import EngineError, RunError
from mlbox.files import atomic_file

log = logging.getLogger(__name__)
RUN_RECORD = "mlbox-run.json"


@dataclass(frozen=True)
class RunOptions:
    results: Path
    network: str = "none"
    shm_size: str = "2g"  # processpool shares samples through /dev/shm; Docker's default is 64 MB
    cpuset_cpus: str | None = None
    read_only: bool = False
    gpus: str = "auto"  # auto: all GPUs for cuda images; all; none


def default_results_dir(image: str) -> Path:
    name = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else image.rpartition("/")[2]
    return Path("results") / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def wants_gpus(choice: str, labels: dict[str, str]) -> bool:
    """--gpus auto gives every GPU to cuda images (their mlbox.device label), none to others."""
    return choice == "all" or (choice == "auto" and labels.get("mlbox.device") == "cuda")


def run_benchmark(
    engine: DockerEngine, image: str, bench_args: Sequence[str], opts: RunOptions, *, on_line: Callable[[str], None]
) -> int:
    """Run the image to completion; return the benchmark's exit code."""
    try:
        inspected = engine.inspect_image(image)
    except EngineError as err:
        raise RunError(str(err), hint=err.hint) from None
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    gpus = wants_gpus(opts.gpus, labels)
    try:
        opts.results.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"cannot create the results directory {opts.results}: {err.strerror}"
        raise RunError(msg) from None
    kwargs: dict[str, Any] = {
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": opts.network,
        "shm_size": opts.shm_size,
        "read_only": opts.read_only,
        "volumes": {str(opts.results.resolve()): {"bind": "/results", "mode": "rw"}},
    }
    if opts.cpuset_cpus:
        kwargs["cpuset_cpus"] = opts.cpuset_cpus
    if gpus:
        from docker.types import DeviceRequest

        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    started = datetime.now(UTC)
    with _engine_errors(f"create a container from {image}"):
        container = engine.client.containers.create(image, list(bench_args), **kwargs)
    try:
        with _engine_errors(f"start a container from {image}"):
            container.start()
    except EngineError as err:
        with _engine_errors("remove the container that did not start"):
            container.remove(force=True)  # a refused start must not leave a container behind
        if gpus and "gpu" in str(err).lower():
            msg = f"the engine cannot give GPUs to {image}: {err}"
            hint = "this engine has no NVIDIA runtime: install the driver and nvidia-container-toolkit on a GPU host"
            raise RunError(msg, hint=hint + " (or pass --gpus none to try without)") from None
        raise
    code = 1
    try:
        for chunk in container.logs(stream=True, follow=True):
            for line in chunk.decode(errors="replace").splitlines():
                on_line(line)
        code = int(container.wait()["StatusCode"])
    except KeyboardInterrupt:
        log.warning("interrupted: stopping the container (the benchmark gets SIGTERM)")
        container.stop(timeout=15)
        code = int(container.wait()["StatusCode"]) or 130
        raise SystemExit(code) from None
    finally:
        _record(opts, image, inspected, bench_args, started, code, gpus)
        with _engine_errors("remove the container"):
            container.remove(force=True)
    return code


def _record(
    opts: RunOptions,
    image: str,
    inspected: dict[str, Any],
    bench_args: Sequence[str],
    started: datetime,
    code: int,
    gpus: bool,
) -> None:
    """mlbox-run.json beside result.json: which image (id and digests) ran, and how."""
    record = {
        "image": image,
        "image_id": inspected.get("Id"),
        "repo_digests": inspected.get("RepoDigests") or [],
        "args": list(bench_args),
        "network": opts.network,
        "gpus": gpus,
        "read_only": opts.read_only,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exit_code": code,
    }
    with atomic_file(opts.results / RUN_RECORD) as (out, _):
        out.write((json.dumps(record, indent=2) + "\n").encode())
