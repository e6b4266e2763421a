"""result.json: parsed from LoadGen's detail log (every line ``:::MLLOG {json}``)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

# The headline metric of each scenario, as LoadGen's detail log names it.
METRIC_KEYS = {
    "Offline": ("result_samples_per_second", "samples/s"),
    "Server": ("result_completed_samples_per_sec", "samples/s"),
    "SingleStream": ("result_90.00_percentile_latency_ns", "ns"),
    "MultiStream": ("result_99.00_percentile_per_query_latency_ns", "ns"),
}


def parse_detail_log(path: Path) -> dict[str, Any]:
    """Map each MLLOG key to its (last) value."""
    values: dict[str, Any] = {}
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
                values[str(record["key"])] = record.get("value")
    return values


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
    return {"cpu": cpu, "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}


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
        "effective_settings": {k.removeprefix("effective_"): v for k, v in log.items() if k.startswith("effective_")},
        "loadgen_version": log.get("loadgen_version"),
        "errors": log.get("error_invalid_config") or log.get("error_runtime"),
    }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=False)
            out.write("\n")
        Path(tmp).chmod(0o644)  # mkstemp makes 0600; results are for the user to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
