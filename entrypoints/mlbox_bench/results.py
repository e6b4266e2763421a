"""result.json: parsed from LoadGen's detail log (every line ``:::MLLOG {json}``)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# The headline metric of each scenario, as LoadGen's detail log names it.
METRIC_KEYS = {
    "Offline": ("result_samples_per_second", "samples/s"),
    "Server": ("result_completed_samples_per_sec", "samples/s"),
    "SingleStream": ("result_90.00_percentile_latency_ns", "ns"),
    "MultiStream": ("result_99.00_percentile_per_query_latency_ns", "ns"),
}
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
    """Map each MLLOG key to its (last) value; a find-peak search logs many runs, the
    last is the run at the peak."""
    values: dict[str, Any] = {}
    for record in read_detail_log(path):
        values[str(record["key"])] = record.get("value")
    return values


def find_peak(path: Path) -> float | None:
    for record in read_detail_log(path):
        if record["key"] == "generic_message" and (m := PEAK_MESSAGE.search(str(record.get("value")))):
            return float(m.group(1))
    return None


def logged_errors(path: Path) -> list[str]:
    return [str(r.get("value")) for r in read_detail_log(path) if (r.get("metadata") or {}).get("is_error")]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
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


def build_result(log: dict[str, Any], scenario: str) -> dict[str, Any]:
    metric_key, unit = METRIC_KEYS[scenario]
    percentiles = {
        k.removeprefix("result_").removesuffix("_latency_ns"): v
        for k, v in log.items()
        if k.startswith("result_") and k.endswith("percentile_latency_ns")
    }
    return {
        "validity": log.get("result_validity", "UNKNOWN"),
        "scenario": scenario,
        "metric": {"name": metric_key, "value": log.get(metric_key), "unit": unit},
        "latency_ns": {
            "min": log.get("result_min_latency_ns"),
            "mean": log.get("result_mean_latency_ns"),
            "max": log.get("result_max_latency_ns"),
            "percentiles": percentiles,
        },
        "early_stopping": log.get("early_stopping_result"),
        "qsl": {"total": log.get("qsl_reported_total_count"), "performance": log.get("qsl_reported_performance_count")},
        "effective_settings": {k.removeprefix("effective_"): v for k, v in log.items() if k.startswith("effective_")},
        "loadgen_version": log.get("loadgen_version"),
    }


def write_atomic(path: Path, write: Callable[[BinaryIO], object], *, mode: int = 0o644) -> None:
    """Write through a temp file beside ``path`` and rename it into place: a reader sees
    the whole file or none. mkstemp makes 0600; results are for the user to read (0644)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        Path(tmp).chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda out: out.write(text.encode()))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
