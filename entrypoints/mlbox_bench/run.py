"""One benchmark run: settings -> backend, the task bound to its outputs, and samples ->
TestSettings (mlperf.conf, user.conf, what mlbox-bench sets, calibration) -> LoadGen ->
the reports."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mlbox_bench import fields, rundir, tasks, threads, tune
from mlbox_bench.backends import Backend, from_settings
from mlbox_bench.calibrate import calibrate, responses_only
from mlbox_bench.compliance import audit_text
from mlbox_bench.data import SampleLibrary
from mlbox_bench.errors import EXIT_INVALID, EXIT_VALID, BenchError, Interrupted
from mlbox_bench.files import os_reason
from mlbox_bench.layout import run_dir as layout_run_dir
from mlbox_bench.layout import run_kind
from mlbox_bench.responses import Answer, Complete, Ids, Responses, loadgen_responses
from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

# Queries LoadGen's early stopping needs before it can call a short run VALID.
EARLY_STOPPING_MIN_QUERIES = {"SingleStream": 64, "MultiStream": 662, "Server": 459, "Offline": 1}
# Samples of one query prepared at a time (see issue in run_loadgen): 64k samples take
# ~10 ms to order into batches, and a part still repeats each of the 1,024 loaded samples
# ~64 times, so its batches are as contiguous as the whole query's.
ISSUE_PART = 1 << 16
MODE_NAMES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly", "find-peak": "FindPeakPerformance"}

_from_config_calls = 0  # LoadGen loads mlperf.conf once per process: see load_test_settings


def run(s: Settings) -> int:
    """Run one benchmark and write its reports; return the exit code.

    The run writes into a staging folder and is moved into place only when it is done: a
    run that fails or is stopped is set aside in incomplete/ (see rundir.py)."""
    from mlbox_bench import submission

    if s.compliance:
        audit_text(s.compliance, s.model)  # refuse a test MLPerf does not define for this model
    if s.submission_layout:
        submission.check_ready(s)  # before the run: a compliance run needs its reference runs
    root = Path(s.output_dir)
    with rundir.claimed(root):
        try:
            current = rundir.Run(root, layout_run_dir(s), run_kind(s))
        except OSError as err:
            msg = f"cannot write into output directory {root}: {os_reason(err)}"
            raise BenchError(msg + " (mount or choose a writable directory)") from None
        try:
            result = _run(s, current.staging, current.final)
        except BaseException as err:
            _set_aside(current, err)
            raise
        path = current.commit(result)
    metric = result["metric"]
    log.info("%s: %s = %s %s", result["validity"], metric["name"], metric["value"], metric["unit"])
    if result.get("invalid_reason"):
        log.info("LoadGen's reason: %s", result["invalid_reason"])
    print(path)
    if result["validity"] == "VALID" or s.allow_invalid:
        return EXIT_VALID
    log.warning("LoadGen judged this run INVALID (see mlperf_log_summary.txt); --allow-invalid exits 0")
    return EXIT_INVALID


def _run(s: Settings, staging: Path, final: Path) -> dict[str, Any]:
    """The run itself, its files in ``staging``; returns result.json's content."""
    from mlbox_bench import report, submission

    if s.weights == "synthetic":
        log.warning("SYNTHETIC WEIGHTS: this model has random weights; performance only, accuracy is meaningless")
    backend = from_settings(s)
    task = tasks.get(s.task)
    answer = task.answer(backend.io)  # a model whose outputs do not fit is refused here
    backend.select(answer.outputs)
    log.info(
        "%s %s run: model %s on %s (%s, runner %s, %d worker(s)), %s inputs",
        s.scenario,
        s.compliance or s.mode,
        s.modelpath,
        backend.name,
        backend.session.facts()["provider"],
        s.runner,
        1 if s.runner == "inline" else s.concurrency,
        "dataset " + s.dataset if s.dataset else "synthetic",
    )
    facts, data = run_loadgen(s, backend, task, answer, staging)
    result = report.build(s, (backend, task, answer), facts, staging, data, final=final)
    if s.submission_layout:
        result["submission"] = submission.write(s, result, staging, data)
    return result


def _set_aside(current: rundir.Run, err: BaseException) -> None:
    """Mark a run that did not finish and move it to incomplete/, keeping ``err`` the
    error the user sees (a second failure here is only logged)."""
    reason = f"stopped by {err}" if isinstance(err, Interrupted) else str(err) or type(err).__name__
    try:
        where = current.set_aside(reason.splitlines()[0])
    except OSError as second:
        log.warning("could not mark the unfinished run in %s: %s", current.staging, os_reason(second))
        return
    if where is not None:
        log.warning("the unfinished run's files are in %s, marked INCOMPLETE", where)


def load_test_settings(lg: Any, s: Settings) -> Any:
    """mlperf.conf (built into LoadGen) < user.conf; the caller adds what mlbox-bench sets.

    FromConfig with a user.conf may run once per process: a second call does not
    reload mlperf.conf, so the run would silently use other settings, and LoadGen logs
    an error the submission checker treats as critical.

    LoadGen gets the model's mlperf.conf name (resnet50 for resnet; see mlperf.py): under
    another name it would find no rules. The user.conf's lines for the model's other names
    are keyed by that name in a copy, since LoadGen would drop them.
    """
    from mlbox_bench.errors import did_you_mean
    from mlbox_bench.files import read_user_text
    from mlbox_bench.mlperf import NAMES, conf_name, user_conf_for_loadgen

    global _from_config_calls
    model = conf_name(s.model)
    ts = lg.TestSettings()
    if s.user_conf is not None:
        if _from_config_calls:
            msg = "LoadGen already read a user.conf in this process; run each --user-conf benchmark in its own process"
            raise BenchError(msg)
        if not Path(s.user_conf).is_file():
            msg = f"user.conf not found: {s.user_conf}"
            raise BenchError(msg)
        text = read_user_text(Path(s.user_conf), "--user-conf")
        keyed = user_conf_for_loadgen(text, s.model)
        _from_config_calls += 1
        if keyed == text:
            rc = ts.FromConfig(s.user_conf, model, s.scenario, 1)
        else:
            with tempfile.TemporaryDirectory(prefix="mlbox-user-conf-") as tmp:
                copy = Path(tmp) / "user.conf"
                copy.write_text(keyed, encoding="utf-8")
                rc = ts.FromConfig(str(copy), model, s.scenario, 1)  # reads the file before it returns
    else:
        rc = ts.FromConfig("", model, s.scenario, 0)
    if rc != 0:
        msg = f"LoadGen could not read its configuration (FromConfig returned {rc})"
        raise BenchError(msg + " for model " + repr(model) + " scenario " + s.scenario)
    if not int(ts.performance_sample_count_override):
        # mlperf.conf names a performance sample count for every model it knows.
        log.warning(
            "LoadGen's mlperf.conf has no rules for model %r: its generic defaults apply%s",
            s.model,
            did_you_mean(s.model, NAMES),
        )
    elif model != s.model:
        log.info("model %s: mlperf.conf's rules for %s", s.model, model)
    ts.scenario = getattr(lg.TestScenario, s.scenario)
    ts.mode = getattr(lg.TestMode, MODE_NAMES[s.mode])
    return ts


def requested(s: Settings) -> dict[str, Any]:
    """Settings values mlbox-bench applies on top of mlperf.conf and user.conf: what a
    flag or variable set (a user.conf value is in LoadGen's settings already), and the
    early-stopping query count a short run needs."""
    values = {name: getattr(s, name) for name in fields.TABLE[s.scenario] if s.set_by_user(name)}
    if "duration" in values and s.min_query_count is None:  # a short run: as many queries as early stopping needs
        values["min_query_count"] = EARLY_STOPPING_MIN_QUERIES[s.scenario]
    return values


def contiguous_batches(rows: np.ndarray, limit: int) -> list[np.ndarray]:
    """Split a large query (Offline's single query) into batches of ``limit`` samples,
    as many as possible made of consecutive rows of the loaded array, so the batch is a
    view instead of a copy (a copy costs ~10 us per 224x224 float sample).

    Every sample is still run once, on its own data: this only picks the order, which
    MLPerf leaves to the system. Returns positions into the query. The k-th repeat of a
    row goes to the k-th pass over the rows, so each pass has distinct, sorted rows;
    pieces of runs shorter than a batch are pooled and gathered, so batches stay full.
    """
    order = np.argsort(rows, kind="stable")
    ranked = rows[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    repeat = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    by_pass = np.lexsort((ranked, repeat))
    positions, sorted_rows, passes = order[by_pass], ranked[by_pass], repeat[by_pass]
    breaks = np.flatnonzero((np.diff(sorted_rows) != 1) | (np.diff(passes) != 0)) + 1
    batches: list[np.ndarray] = []
    leftover: list[np.ndarray] = []
    for run in np.split(positions, breaks):
        full = len(run) - len(run) % limit
        batches.extend(run[i : i + limit] for i in range(0, full, limit))
        if full < len(run):
            leftover.append(run[full:])
    if leftover:
        rest = np.concatenate(leftover)
        batches.extend(rest[i : i + limit] for i in range(0, len(rest), limit))
    return batches


def loadgen_complete(lg: Any) -> Complete:
    def complete(ids: Ids, responses: Responses) -> None:
        # `responses` must stay alive until QuerySamplesComplete returns: it does (an argument).
        lg.QuerySamplesComplete(loadgen_responses(lg, ids, responses))

    return complete


def run_loadgen(
    s: Settings, backend: Backend, task: tasks.Task, answer: Answer, output_dir: Path
) -> tuple[dict[str, Any], SampleLibrary]:
    """Run one LoadGen test; return facts for result.json (beside LoadGen's own logs) and
    the sample library (the task scores accuracy with it). Synthetic samples default to
    mlperf.conf's performance sample count."""
    import mlperf_loadgen as lg

    timeline: dict[str, float | None] = {"started_after_s": process_age()}
    ts = load_test_settings(lg, s)  # the one TestSettings of this process
    values = requested(s)
    fields.apply(ts, values, s.scenario)
    conf_perf_count = int(ts.performance_sample_count_override) or 1024
    data = task.samples(s, backend.io, conf_perf_count)
    perf_count = min(conf_perf_count, data.count)
    ts.performance_sample_count_override = perf_count
    complete = loadgen_complete(lg)
    first_issue: list[float] = []

    def issue(ids_list: list[int], indices_list: list[int]) -> None:
        # ConstructFastSUT hands over plain lists of ids and indices: no per-sample
        # QuerySample objects to build and read back.
        if not first_issue:
            first_issue.append(time.perf_counter())
        if len(ids_list) == 1:  # SingleStream and Server: LoadGen's own lists go straight through
            runner.submit(ids_list, indices_list, complete)
            return
        # Offline's one query can hold tens of millions of samples: it is split in parts,
        # so the workers start on the first part while the next is prepared, and no numpy
        # call holds the GIL for long (a 28M-sample argsort held it ~0.5 s at a time, and
        # Ctrl-C waited for it).
        for start in range(0, len(ids_list), ISSUE_PART):
            ids = np.array(ids_list[start : start + ISSUE_PART], dtype=np.uint64)
            idx = np.array(indices_list[start : start + ISSUE_PART], dtype=np.int64)
            if len(ids) <= batch:
                runner.submit(ids, idx, complete)
                continue
            for pos in contiguous_batches(data.rows(idx), batch):
                runner.submit(ids[pos], idx[pos], complete)

    def flush() -> None:
        pass  # every sample is submitted as soon as it is issued: nothing is held back

    bound_ms = int(ts.server_target_latency_ns) / 1e6 if s.scenario == "Server" else None
    plan = tune.requested(s, backend, bound_ms)
    tuning: dict[str, Any] = {}
    measured_run = s.mode != "accuracy" or s.scenario == "Server"
    if measured_run:
        t = time.perf_counter()
        # LoadGen's performance set when the library is that size; LoadGen's own load of it
        # then costs nothing (samples are made once).
        data.load(list(range(perf_count)))
        timeline["samples_s"] = time.perf_counter() - t
        if tune.wanted(s, backend):
            plan, tuning = tune.tune(s, backend, data, answer, plan, responses_only(lg))
    runner = tune.build(plan, s, backend, data, answer)
    batch = plan.batch  # Offline: calibration may pick a smaller one (see calibrate)
    try:
        calibration: dict[str, Any] = {}
        if measured_run:
            found, calibration = calibrate(
                s, ts, runner, data, plan.workers, responses_only(lg), batch=plan.batch, tuned=bool(tuning)
            )
            if s.scenario == "Offline" and "batch" in calibration:
                batch = int(calibration["batch"])
            values.update(found)
            fields.apply(ts, found, s.scenario)
            if calibration:  # what measured it: the run's own runner and workers
                calibration["observed"] = runner.observed()
            runner.forget()  # result.json's `observed` is the measured run only
        audit = audit_config(s, output_dir)
        sut = lg.ConstructFastSUT(issue, flush)
        qsl = lg.ConstructQSL(data.count, perf_count, data.load, data.unload)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(output_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        timeline["loadgen_started_after_s"] = process_age()
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mlbox-audit-") as empty:
            # LoadGen reads the audit.config at the path it is given (the default is
            # ./audit.config): a run without a compliance test gets one that cannot exist.
            _start_test(lg, sut, qsl, ts, log_settings, str(audit or Path(empty) / "audit.config"))
        timeline["loadgen_s"] = time.perf_counter() - began
        if first_issue:
            timeline["first_query_after_start_s"] = _age_at(first_issue[0])
        lg.DestroyQSL(qsl)
        lg.DestroyFastSUT(sut)
    except BaseException:
        runner.abort()  # stopped or failed: queued work is dropped, workers end now
        raise
    runner.close()
    if runner.errors:
        msg = f"inference failed during the run: {runner.errors.summary()}"
        raise BenchError(msg + "; LoadGen's logs of this run are not a result")
    facts = {
        "total_sample_count": data.count,
        "performance_sample_count": perf_count,
        "calibration": calibration,
        "tuning": tuning,
        "runner": {**asdict(plan), "offline_batch": batch if s.scenario == "Offline" else None},
        "samples_on_device": s.samples_on_device,
        "observed": runner.observed(),
        "applied": values,
        "applied_test_settings": fields.test_settings_values(values, s.scenario),
        "audit_config": str(audit) if audit else None,
        "timeline": timeline,
    }
    return facts, data


def audit_config(s: Settings, output_dir: Path) -> Path | None:
    """The audit.config this run gives LoadGen, written into the run's own directory:
    the official one of --compliance, or a copy of --audit-conf. None: no audit."""
    from mlbox_bench.files import read_user_text, write_text_atomic

    target = output_dir / "audit.config"
    if s.compliance:
        write_text_atomic(target, audit_text(s.compliance, s.model))
    elif s.audit_conf:
        write_text_atomic(target, read_user_text(Path(s.audit_conf), "--audit-conf"))
    else:
        return None
    log.info("audit settings for LoadGen: %s", target)
    return target


def process_age() -> float | None:
    """Seconds since this process started (Linux), so start-up is measured from exec."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _age_at(moment: float) -> float | None:
    """The process's age at ``moment`` (a perf_counter time in the past)."""
    age = process_age()
    return None if age is None else age - (time.perf_counter() - moment)


def _start_test(lg: Any, sut: Any, qsl: Any, ts: Any, log_settings: Any, audit: str) -> None:
    """StartTest in a thread: the main thread stays free to handle Ctrl-C / SIGTERM."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut, qsl, ts, log_settings, audit)
        except BaseException as err:
            failure.append(err)

    job = threads.start(target, "loadgen")  # a kept thread: see threads.py
    while job.is_alive():
        job.join(0.2)
    if failure:
        msg = f"LoadGen failed: {failure[0]}"
        raise BenchError(msg)
