"""The MLPerf submission tree, as MLCommons' submission checker (v6.x) reads it:

    submission/<division>/<submitter>/
        results/<system>/<model>/<Scenario>/     <model>: the round's name (resnet, see mlperf.py)
            performance/run_1/   mlperf_log_summary.txt, mlperf_log_detail.txt
            accuracy/            the same two, mlperf_log_accuracy.json truncated as
                                 truncate_accuracy_log.py does, accuracy.txt with its hash= line
            TEST01/              verify_accuracy.txt, verify_performance.txt,
                                 performance/run_1/, accuracy/
            TEST04/              verify_performance.txt, performance/run_1/
            user.conf            reproduces the performance run (calibration included)
            measurements.json, README.md
        systems/<system>.json    what mlbox-bench knows of the host; FILL IN: marks the rest
        src/mlbox_bench/         the harness source that made the runs

Each run's own files (full logs, untruncated accuracy log, result.json) stay under
runs/ (see layout.py): the checker's file lists have no room for them. The tree is a
fixed point of truncate_accuracy_log.py: it finds every accuracy log truncated and hashed.
"""

from __future__ import annotations

import logging
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlbox_bench import __version__, fields, mlperf
from mlbox_bench.errors import BenchError
from mlbox_bench.files import copy_atomic, file_sha256, write_json_atomic, write_text_atomic
from mlbox_bench.layout import model_dir, runs_dir, scenario_dir, submitter_dir
from mlbox_bench.settings import Settings

if TYPE_CHECKING:
    from mlbox_bench.tasks import Task

log = logging.getLogger("mlbox-bench")

LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
VIEWABLE_SIZE = 4096  # truncate_accuracy_log.py: 4 KiB from the start and the end
FILL_IN = "FILL IN: "  # marks a field only a person can fill


def check_ready(s: Settings) -> None:
    """Refuse to start a run the tree cannot hold: a model the round's checker does not
    know, or a compliance run without the runs it is verified against (the performance
    run, and for TEST01 the accuracy run's full log)."""
    if mlperf.submission_name(s.model, s.submission_round) is None:
        raise BenchError(not_in_round(s.model, s.submission_round))
    if not s.compliance:
        return
    needed = [scenario_dir(s) / "performance" / "run_1" / "mlperf_log_detail.txt"]
    if s.compliance == "TEST01":
        needed.append(runs_dir(s, "accuracy") / "mlperf_log_accuracy.json")
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        msg = (
            f"--compliance {s.compliance} is verified against this scenario's performance"
            f"{' and accuracy runs' if s.compliance == 'TEST01' else ' run'}; missing {', '.join(missing)}: "
            "run them first with the same flags and --submission-layout (accuracy: --mode accuracy)"
        )
        raise BenchError(msg)


def not_in_round(model: str, round_: str) -> str:
    having = mlperf.rounds_having(model)
    writable = [r for r in having if r in mlperf.SUBMISSION_ROUNDS]
    if writable:
        hint = f": pass --submission-round {writable[-1]}"
    else:
        hint = f"; mlbox-bench writes the submission tree of {', '.join(mlperf.SUBMISSION_ROUNDS)} only"
    return f"{model} is not in MLPerf Inference {round_}'s menu; the rounds that have it: {', '.join(having)}{hint}"


def write(s: Settings, result: dict[str, Any], run_dir: Path, data: Any) -> dict[str, Any]:
    """Put this run into the submission tree; return what was written (for result.json)."""
    base = scenario_dir(s)
    if s.compliance:
        written = _compliance(s, base / s.compliance, run_dir, data)
    elif s.mode == "accuracy":
        written = _accuracy(base / "accuracy", run_dir, result)
    else:
        written = _logs(run_dir, base / "performance" / "run_1")
    if s.compliance is None and (s.mode == "performance" or not (base / "user.conf").exists()):
        # The performance run's user.conf has its calibration; an accuracy run keeps it.
        written.append(_user_conf(s, result, base / "user.conf"))
    written += _common(s, result, base)
    to_fill = _to_fill(submitter_dir(s) / "systems" / f"{s.system_name}.json") + _to_fill(base / "measurements.json")
    if to_fill:
        log.warning("submission tree: fields only a person can fill (marked %r): %s", FILL_IN, ", ".join(to_fill))
    return {"root": str(base), "written": [str(p) for p in written], "fill_in": to_fill}


def _fresh(directory: Path) -> Path:
    """The directory, emptied of files: the checker wants exactly its file list there."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if old.is_file():
            old.unlink()
    return directory


def _logs(run_dir: Path, target: Path) -> list[Path]:
    _fresh(target)
    written = []
    for name in LOGS:
        copy_atomic(run_dir / name, target / name)
        written.append(target / name)
    return written


def truncated(text: str) -> str:
    """truncate_accuracy_log.py's truncate_file: 4 KiB from the start and from the end."""
    if len(text.encode()) < VIEWABLE_SIZE:
        return text
    raw = text.encode()
    return raw[:VIEWABLE_SIZE].decode(errors="replace") + "\n\n...\n\n" + raw[-VIEWABLE_SIZE:].decode(errors="replace")


def _hashed_accuracy(run_log: Path, target_dir: Path, score_line: str | None) -> list[Path]:
    """accuracy.txt (score, then the full log's hash= line, as truncate_accuracy_log.py
    appends it) and the truncated log."""
    digest = file_sha256(run_log)
    lines = (score_line + "\n" if score_line else "") + f"\nhash={digest}\n"
    write_text_atomic(target_dir / "accuracy.txt", lines)
    write_text_atomic(target_dir / "mlperf_log_accuracy.json", truncated(run_log.read_text(encoding="utf-8")))
    return [target_dir / "accuracy.txt", target_dir / "mlperf_log_accuracy.json"]


def _accuracy(target: Path, run_dir: Path, result: dict[str, Any]) -> list[Path]:
    written = _logs(run_dir, target)
    scored = run_dir / "accuracy.txt"
    line = scored.read_text(encoding="utf-8").strip() if scored.is_file() else None
    if line is None:
        log.warning(
            "submission tree: no accuracy.txt score without ground truth; run the accuracy mode with --dataset DIR"
        )
    return written + _hashed_accuracy(run_dir / "mlperf_log_accuracy.json", target, line)


def _compliance(s: Settings, target: Path, run_dir: Path, data: Any) -> list[Path]:
    from mlbox_bench import tasks
    from mlbox_bench.compliance import verify_accuracy, verify_performance

    target.mkdir(parents=True, exist_ok=True)
    reference = scenario_dir(s) / "performance" / "run_1" / "mlperf_log_detail.txt"
    written = _logs(run_dir, target / "performance" / "run_1")
    perf = verify_performance(s.compliance or "", reference, run_dir / "mlperf_log_detail.txt")
    write_text_atomic(target / "verify_performance.txt", perf.text)
    written.append(target / "verify_performance.txt")
    verdicts = [perf.passed]
    if s.compliance == "TEST01":
        reference_log = runs_dir(s, "accuracy") / "mlperf_log_accuracy.json"
        test_log = run_dir / "mlperf_log_accuracy.json"
        acc = verify_accuracy(reference_log, test_log)
        write_text_atomic(target / "verify_accuracy.txt", acc.text)
        verdicts.append(acc.passed)
        acc_dir = _fresh(target / "accuracy")
        line = None
        task = tasks.get(s.task)
        scored = task.score(test_log, data)
        if scored is not None:
            # Part III of TEST01 (non-deterministic results): both scores over the same samples.
            line = scored.line
            write_text_atomic(acc_dir / "compliance_accuracy.txt", line + "\n")
            write_text_atomic(acc_dir / "baseline_accuracy.txt", _baseline(reference_log, test_log, task, data) + "\n")
            written += [acc_dir / "compliance_accuracy.txt", acc_dir / "baseline_accuracy.txt"]
        written += [target / "verify_accuracy.txt", *_hashed_accuracy(test_log, acc_dir, line)]
    log.info("%s verification: %s", s.compliance, "TEST PASS" if all(verdicts) else "TEST FAIL")
    return written


def _baseline(reference_log: Path, test_log: Path, task: Task, data: Any) -> str:
    """The accuracy run's score over the samples the compliance run logged
    (compliance/TEST01/create_accuracy_baseline.sh, then the accuracy script)."""
    import json

    sampled = {int(e["qsl_idx"]) for e in json.loads(test_log.read_text(encoding="utf-8"))}
    entries = [e for e in json.loads(reference_log.read_text(encoding="utf-8")) if int(e["qsl_idx"]) in sampled]
    subset = test_log.parent / ".baseline.json"
    subset.write_text(json.dumps(entries), encoding="utf-8")
    try:
        scored = task.score(subset, data)
        return scored.line if scored is not None else ""
    finally:
        subset.unlink(missing_ok=True)


def user_conf_text(s: Settings, applied: dict[str, Any]) -> str:
    """The user.conf that reproduces the run: the user's file, then what mlbox-bench set
    on top of it (flags, variables, calibration), as exact model.Scenario keys. Its keys
    name the model as mlperf.conf does (resnet50), as LoadGen matches them: the
    reference app, or LoadGen given the file directly, finds every line."""
    lines = ["# user.conf of this run, written by mlbox-bench " + __version__]
    if s.user_conf and not s.source("user_conf").startswith("submission"):
        text = mlperf.user_conf_for_loadgen(Path(s.user_conf).read_text(encoding="utf-8"), s.model)
        lines += [f"# from {s.user_conf}:", text.rstrip()]
    lines.append("# set by mlbox-bench (flags, variables, calibration):")
    try:
        lines += fields.user_conf_lines(applied, mlperf.conf_name(s.model), s.scenario)
    except ValueError as err:
        msg = f"cannot write a user.conf that reproduces this run: {err}"
        raise BenchError(msg) from None
    return "\n".join(lines) + "\n"


def _user_conf(s: Settings, result: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, user_conf_text(s, result["harness"]["applied"]))
    return path


def _common(s: Settings, result: dict[str, Any], base: Path) -> list[Path]:
    """measurements.json, README.md, systems/<system>.json (kept once a person edits it),
    and src/ (the harness source)."""
    written = []
    measurements = base / "measurements.json"
    if not measurements.exists():
        write_json_atomic(measurements, _measurements(s, result))
        written.append(measurements)
    readme = base / "README.md"
    write_text_atomic(readme, _readme(s, result))
    written.append(readme)
    system = submitter_dir(s) / "systems" / f"{s.system_name}.json"
    if not system.exists():
        system.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(system, system_description(s, result))
        written.append(system)
    src = submitter_dir(s) / "src" / "mlbox_bench"
    shutil.copytree(Path(__file__).parent, src, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return written


def _measurements(s: Settings, result: dict[str, Any]) -> dict[str, Any]:
    dtype = str(result["model"]["input_dtype"])
    input_type = {"float32": "fp32", "float16": "fp16"}.get(dtype, dtype)
    return {
        "starting_weights_filename": Path(s.modelpath or "").name,
        "retraining": "no",
        "input_data_types": input_type,
        "weight_data_types": FILL_IN + "the weights' data types (e.g. fp32)",
        "weight_transformations": "none (mlbox-bench runs the model file as given)",
        "starting_weights_sha256": result["model"]["sha256"],
    }


def _readme(s: Settings, result: dict[str, Any]) -> str:
    runs = Path(s.output_dir) / "runs" / s.system_name / model_dir(s) / s.scenario
    return (
        f"# {s.model} {s.scenario} on {s.system_name}\n\n"
        f"Made with mlbox-bench {__version__} (MLPerf LoadGen {result.get('loadgen_version')}, "
        f"{result['backend']['name']} {result['backend']['version']} on {result['backend']['provider']}).\n\n"
        f"Each run as it happened (full LoadGen logs, the untruncated accuracy log, result.json): `{runs}`.\n"
        "Keep the untruncated accuracy log: MLCommons may ask for it.\n\n"
        "To reproduce (user.conf holds the calibrated settings):\n\n"
        f"    mlbox-bench --scenario {s.scenario} --model {s.model} --modelpath MODEL --user-conf user.conf "
        f"--submission-layout --submission-round {s.submission_round}\n"
        "    (then again with --mode accuracy --dataset DIR, --compliance TEST01, --compliance TEST04)\n"
    )


def system_description(s: Settings, result: dict[str, Any]) -> dict[str, Any]:
    """systems/<system>.json: MLCommons' required fields (submission_checker constants
    SYSTEM_DESC_REQUIRED_FIELDS), filled with what mlbox-bench knows of the host."""
    host = result["host"]
    gpus = host.get("gpus") or []
    on_gpu = s.device != "cpu" and bool(gpus)
    cores = int(host.get("cores") or 0) // max(1, int(host.get("sockets") or 1))
    memory = host.get("memory_bytes")
    software = (
        f"Python {platform.python_version()}, MLPerf LoadGen {result.get('loadgen_version')}, mlbox-bench {__version__}"
    )
    fill = FILL_IN
    return {
        "division": s.division,
        "submitter": s.submitter,
        "status": fill + "available, preview or rdi",
        "system_name": s.system_name,
        "system_type": "datacenter,edge",  # a valid value keeps the checker running; a person decides
        "system_type_detail": fill + "e.g. workstation, edge server",
        "number_of_nodes": "1",
        "host_processor_model_name": host.get("cpu", ""),
        "host_processors_per_node": str(host.get("sockets") or 1),
        "host_processor_core_count": str(cores or host.get("cpus")),
        "host_processor_frequency": fill + "base/boost frequency",
        "host_processor_caches": fill + "L1/L2/L3 sizes",
        "host_processor_interconnect": fill + "e.g. N/A for one socket",
        "host_memory_capacity": f"{round(memory / 2**30)} GB" if memory else fill + "memory size",
        "host_memory_configuration": fill + "DIMMs, type and speed",
        "host_storage_capacity": fill + "storage size",
        "host_storage_type": fill + "e.g. NVMe SSD",
        "host_networking": fill + "e.g. N/A",
        "host_networking_topology": fill + "e.g. N/A",
        "host_network_card_count": fill + "number of NICs",
        "accelerators_per_node": str(len(gpus)) if on_gpu else "0",
        "accelerator_model_name": gpus[0]["name"] if on_gpu else "N/A",
        "accelerator_memory_capacity": gpus[0]["memory"] if on_gpu else "N/A",
        "accelerator_frequency": fill + "clock" if on_gpu else "N/A",
        "accelerator_host_interconnect": fill + "e.g. PCIe Gen4 x16" if on_gpu else "N/A",
        "accelerator_interconnect": fill + "e.g. NVLink" if on_gpu else "N/A",
        "accelerator_interconnect_topology": fill + "topology" if on_gpu else "N/A",
        "accelerator_memory_configuration": fill + "e.g. HBM3" if on_gpu else "N/A",
        "accelerator_on-chip_memories": fill + "on-chip memories" if on_gpu else "N/A",
        "cooling": fill + "e.g. air",
        "framework": f"{result['backend']['name']} {result['backend']['version']}",
        "operating_system": f"{host.get('os')} (Linux {host.get('kernel')})",
        "other_software_stack": software + (f", CUDA {gpus[0]['cuda']}" if on_gpu and gpus[0].get("cuda") else ""),
        "hw_notes": "",
        "sw_notes": f"Runs made with mlbox-bench {__version__} ({s.runner} runner).",
    }


def _to_fill(path: Path) -> list[str]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [f"{path.name}:{k}" for k, v in data.items() if isinstance(v, str) and v.startswith(FILL_IN)]
