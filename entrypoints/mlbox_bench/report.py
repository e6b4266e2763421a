"""result.json: what LoadGen logged, read as MLCommons' tools read it, plus what
mlbox-bench knows of the run (model, backend, host, settings and their sources).

The detail log has one ``:::MLLOG {json}`` record per line. When a key repeats (a
find-peak search logs several runs), the first record wins, as in the submission
checker's parser (tools/submission/log_parser.py, MLPerfLog.__getitem__).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench import __version__
from mlbox_bench.errors import BenchError
from mlbox_bench.files import model_sha256
from mlbox_bench.settings import Settings

if TYPE_CHECKING:
    from mlbox_bench.backends import Backend
    from mlbox_bench.data import SampleLibrary
    from mlbox_bench.responses import Answer
    from mlbox_bench.tasks import Task

# The headline metric the submission checker reads per scenario: RESULT_FIELD_NEW in
# tools/submission/submission_checker/constants.py, the same from v5.0 to v6.1 (v6.1 is the
# checker whose seeds match LoadGen 6.0's mlperf.conf). SingleStream and MultiStream read
# the early-stopping estimates, not the plain percentiles.
CHECKER_METRIC = {
    "Offline": ("result_samples_per_second", "samples/s"),
    "Server": ("result_completed_samples_per_sec", "samples/s"),
    "SingleStream": ("early_stopping_latency_ss", "ns"),
    "MultiStream": ("early_stopping_latency_ms", "ns"),
}
PLAIN_METRIC = {
    "SingleStream": "result_90.00_percentile_latency_ns",
    "MultiStream": "result_99.00_percentile_per_query_latency_ns",
}
CHECKER_VERSION = "v6.1"
PEAK_MESSAGE = re.compile(r"FindPeakPerformance: Found peak performance field: ([0-9.eE+-]+)")


def read_detail_log(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            _, sep, payload = line.partition(":::MLLOG ")
            if not sep:
                continue
            try:
                record = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                records.append(record)
    return records


def parse_detail_log(path: Path) -> dict[str, Any]:
    """Each MLLOG key to its value; the first record wins when a key repeats."""
    values: dict[str, Any] = {}
    for record in read_detail_log(path):
        values.setdefault(str(record["key"]), record.get("value"))
    return values


def find_peak(path: Path) -> float | None:
    for record in read_detail_log(path):
        if record["key"] == "generic_message" and (m := PEAK_MESSAGE.search(str(record.get("value")))):
            return float(m.group(1))
    return None


def logged_errors(path: Path) -> list[str]:
    return [str(r.get("value")) for r in read_detail_log(path) if (r.get("metadata") or {}).get("is_error")]


def performance(log: dict[str, Any], scenario: str) -> dict[str, Any]:
    """The performance part of result.json: the checker's metric, the plain one beside it."""
    metric_key, unit = CHECKER_METRIC[scenario]
    percentiles = {
        k.removeprefix("result_").removesuffix("_latency_ns"): v
        for k, v in log.items()
        if k.startswith("result_") and k.endswith("percentile_latency_ns")
    }
    plain = PLAIN_METRIC.get(scenario, metric_key)
    return {
        "validity": log.get("result_validity", "UNKNOWN"),
        "metric": {
            "name": metric_key,
            "value": log.get(metric_key),
            "unit": unit,
            "read_as": f"submission checker {CHECKER_VERSION}",
        },
        "plain_metric": {"name": plain, "value": log.get(plain), "unit": unit},
        "latency_ns": {
            "min": log.get("result_min_latency_ns"),
            "mean": log.get("result_mean_latency_ns"),
            "max": log.get("result_max_latency_ns"),
            "percentiles": percentiles,
        },
        "early_stopping": log.get("early_stopping_result"),
        # LoadGen's own words on what an INVALID run lacked (min duration, latency bound,
        # query count), the same text its summary prints; None for a VALID run.
        "invalid_reason": str(log.get("result_invalid_reason") or "").strip() or None,
    }


def build(
    s: Settings,
    model: tuple[Backend, Task, Answer],
    facts: dict[str, Any],
    run_dir: Path,
    data: SampleLibrary,
    *,
    final: Path,
) -> dict[str, Any]:
    """result.json's content, from the logs in ``run_dir`` (the run's staging folder);
    paths in it are where the files will be once the run is moved into place, ``final``."""
    backend, task, answer = model
    detail = run_dir / "mlperf_log_detail.txt"
    if not detail.is_file():
        msg = f"LoadGen wrote no {detail}"
        raise BenchError(msg)
    log = parse_detail_log(detail)
    result: dict[str, Any] = {"scenario": s.scenario, "mode": s.mode, "compliance": s.compliance}
    if s.mode == "accuracy":
        # LoadGen's verdict on an accuracy run is about its length, not its answers: no
        # performance validity here. VALID means every sample was answered and logged.
        result["accuracy"] = acc = accuracy(task, data, run_dir, final)
        errors = logged_errors(detail)
        result["validity"] = "VALID" if acc["logged_samples"] == data.count and not errors else "INVALID"
        result["metric"] = {"name": task.metric, "value": acc["value"], "unit": "fraction"}
    else:
        result.update(performance(log, s.scenario))
    result["loadgen_errors"] = logged_errors(detail)
    if s.mode == "find-peak":
        peak = find_peak(detail)
        result["metric"] = {"name": "peak_server_target_qps", "value": peak, "unit": "queries/s"}
        if peak is None:
            result["validity"] = "INVALID"  # the search found no VALID rate
    if s.modelpath is None:  # the backend refused to start without one
        msg = "no model path"
        raise BenchError(msg)
    result.update(
        {
            "output_dir": str(final),
            "qsl": {
                "total": log.get("qsl_reported_total_count"),
                "performance": log.get("qsl_reported_performance_count"),
            },
            "effective_settings": {
                k.removeprefix("effective_"): v for k, v in log.items() if k.startswith("effective_")
            },
            "loadgen_version": log.get("loadgen_version"),
            "model": {
                "name": s.model,
                "path": s.modelpath,
                "sha256": model_sha256(Path(s.modelpath)),
                "weights": s.weights,
                "task": task.name,
                "input_dtype": np.dtype(backend.io.input_dtype).name,
                "outputs": [asdict(o) for o in backend.io.outputs],
                **answer.facts(),
            },
            "data": {"kind": data.kind, "path": s.dataset, "preprocessing": data.profile},
            "backend": {**backend.facts(), "model_format": s.model_format, "preprocessing": data.profile},
            "harness": {"name": "mlbox-bench", "version": __version__, **facts},
            "host": host_info(),
            "settings": {k: v["value"] for k, v in s.describe().items()},
            "sources": {k: v["source"] for k, v in s.describe().items()},
        }
    )
    return result


def accuracy(task: Task, data: SampleLibrary, run_dir: Path, final: Path) -> dict[str, Any]:
    """Score the accuracy log as the task's official accuracy script does and write
    accuracy.txt with its line."""
    from mlbox_bench.accuracy import logged_indices
    from mlbox_bench.files import write_text_atomic

    log_path = run_dir / "mlperf_log_accuracy.json"
    try:
        logged = logged_indices(log_path)
    except (OSError, ValueError, KeyError) as err:
        msg = f"cannot read LoadGen's accuracy log {log_path}: {err}"
        raise BenchError(msg) from None
    facts: dict[str, Any] = {"log": str(final / log_path.name), "dtype": "float32", "logged_samples": len(logged)}
    score = task.score(log_path, data)
    if score is None:
        return {
            **facts,
            "metric": task.metric,
            "value": None,
            "reason": "synthetic inputs have no ground truth: pass --dataset DIR",
        }
    write_text_atomic(run_dir / "accuracy.txt", score.line + "\n")
    return {**facts, "metric": task.metric, "value": score.value, "line": score.line, **score.facts}


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    sockets: set[str] = set()
    core_ids: set[tuple[str, str]] = set()
    physical = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name":
                cpu = value
            elif key == "physical id":
                physical = value
                sockets.add(value)
            elif key == "core id":
                core_ids.add((physical, value))
    except OSError:
        pass
    cores = len(core_ids) or os.cpu_count()
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "sockets": len(sockets) or 1,
        "cores": cores,
        "memory_bytes": memory,
        "os": os_name(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "gpus": gpu_info(),
    }


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi reports them (name, driver, CUDA); [] when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        query = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    gpus = []
    for line in query.strip().splitlines():
        name, driver, memory = (part.strip() for part in [*line.split(","), "", ""][:3])
        gpus.append({"name": name, "driver": driver, "memory": memory, "cuda": cuda.group(1) if cuda else ""})
    return gpus
