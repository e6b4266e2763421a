"""`mlbox run`: a benchmark container, run safely, its log streamed, its verdict returned.

The results directory is a bind mount created by (and so owned by) the calling user, and
the container runs as that user (--user uid:gid), so every file LoadGen writes is theirs.
No network by default: a benchmark needs none. cuda images get every GPU. The container
is removed on every path out, and once it started, mlbox-run.json records what ran.
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

from mlbox import layout
from mlbox.engine import ContainerSpec, Engine, Mount
from mlbox.errors import EngineError, RunError
from mlbox.files import atomic_file

log = logging.getLogger(__name__)
RUN_RECORD = "mlbox-run.json"
STOP_TIMEOUT_S = 15  # after Ctrl-C the harness gets SIGTERM and this long to stop its workers


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


def container_spec(image: str, bench_args: Sequence[str], opts: RunOptions, *, gpus: bool) -> ContainerSpec:
    return ContainerSpec(
        image=image,
        command=tuple(bench_args),
        user=f"{os.getuid()}:{os.getgid()}",
        network=opts.network,
        shm_size=opts.shm_size,
        read_only=opts.read_only,
        mounts=(Mount(opts.results.resolve(), layout.RESULTS_DIR),),
        cpuset_cpus=opts.cpuset_cpus,
        gpus=gpus,
        # A read-only root still gives the benchmark a writable /tmp (processpool's sample
        # file when /dev/shm is small, PyTorch's compile caches), in memory and gone after.
        tmpfs=("/tmp",) if opts.read_only else (),
    )


def run_benchmark(
    engine: Engine, image: str, bench_args: Sequence[str], opts: RunOptions, *, on_line: Callable[[str], None]
) -> int:
    """Run the image to completion; return the benchmark's exit code. Ctrl-C stops the
    container (the harness gets SIGTERM) and re-raises KeyboardInterrupt."""
    inspected = engine.inspect_image(image)  # an absent image or engine is an EngineError (14)
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    gpus = wants_gpus(opts.gpus, labels)
    try:
        opts.results.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"cannot create the results directory {opts.results}: {err.strerror}"
        raise RunError(msg, hint="pass --results DIR somewhere you can write") from None
    started = datetime.now(UTC)
    container = engine.create_container(container_spec(image, bench_args, opts, gpus=gpus))
    try:
        try:
            engine.start_container(container)
        except EngineError as err:
            if gpus and "gpu" in str(err).lower():
                msg = f"the engine cannot give GPUs to {image}: {err}"
                hint = "this engine has no NVIDIA runtime: install the driver and nvidia-container-toolkit"
                raise RunError(msg, hint=hint + " (or pass --gpus none to try without)") from None
            raise
        code: list[int] = []  # the exit code, once the engine reported one
        try:
            for line in engine.container_logs(container):
                on_line(line)
            code.append(engine.wait_container(container))
        except KeyboardInterrupt:
            log.warning("interrupted: stopping the container (the benchmark gets SIGTERM)")
            engine.stop_container(container, timeout=STOP_TIMEOUT_S)
            code.append(engine.wait_container(container))
            raise
        finally:
            _record(opts, image, inspected, bench_args, started, code[0] if code else None, gpus)
    finally:
        engine.remove_container(container)  # a refused start leaves no container behind either
    return code[0]


def _record(
    opts: RunOptions,
    image: str,
    inspected: dict[str, Any],
    bench_args: Sequence[str],
    started: datetime,
    code: int | None,
    gpus: bool,
) -> None:
    """mlbox-run.json beside result.json: which image (id and digests) ran, and how.
    ``exit_code`` is null when mlbox lost track of the container (the engine failed)."""
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
