"""mlbox-bench under faults and hostile input: a run never destroys an earlier one, a
broken run never passes for a result, and every error is a sentence and an exit code.
Real LoadGen and onnxruntime on tiny models."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlbox_bench import rundir
from mlbox_bench.cli import main
from mlbox_bench.errors import EXIT_CRASH, EXIT_ERROR, EXIT_USAGE
from tests.conftest import REPO

SHORT = ["--duration", "0.05", "--allow-invalid"]  # a run's verdict is not the point here


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), the lock file aside."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != rundir.LOCK
    }


def set_aside(out: Path) -> list[Path]:
    return sorted((out / rundir.INCOMPLETE).iterdir()) if (out / rundir.INCOMPLETE).is_dir() else []


def fixed_batch_model(source: Path, target: Path) -> Path:
    """The bench model with its batch fixed at 1: every batch of 8 fails in onnxruntime."""
    import onnx

    model = onnx.load(str(source))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(target))
    return target


@pytest.fixture
def earlier_run(bench_model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(out)]) == 0
    return out


def test_a_failed_run_keeps_the_earlier_result(earlier_run: Path, tmp_path: Path, capsys: Any) -> None:
    """A model that does not load fails before LoadGen writes anything: the earlier run's
    files stay as they were, and no empty run folder is set aside."""
    before = files_of(earlier_run)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(earlier_run.joinpath("result.json").read_bytes()[:100])
    capsys.readouterr()
    assert main(["--modelpath", str(truncated), *SHORT, "--output-dir", str(earlier_run)]) == EXIT_ERROR
    assert "onnxruntime cannot load" in capsys.readouterr().err
    assert files_of(earlier_run) == before
    assert json.loads((earlier_run / "result.json").read_text())["complete"] is True
    assert set_aside(earlier_run) == []
    assert not list(earlier_run.glob(rundir.STAGING_PREFIX + "*"))


def test_a_run_that_fails_midway_is_set_aside_beside_the_earlier_one(
    earlier_run: Path, bench_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure after LoadGen wrote its logs (here: reading them back): the partial run
    goes to incomplete/, marked, and the earlier run is untouched."""
    import mlbox_bench.report

    before = files_of(earlier_run)

    def unreadable(*args: object, **kwargs: object) -> None:
        msg = "cannot read LoadGen's accuracy log"
        raise mlbox_bench.errors.BenchError(msg)

    monkeypatch.setattr(mlbox_bench.report, "build", unreadable)
    assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(earlier_run)]) == EXIT_ERROR
    assert {k: v for k, v in files_of(earlier_run).items() if not k.startswith(rundir.INCOMPLETE)} == before
    [aside] = set_aside(earlier_run)
    assert f"the unfinished run's files are in {aside}, marked INCOMPLETE" in caplog.text
    record = json.loads((aside / "result.json").read_text())
    assert record == {**record, "complete": False, "reason": "cannot read LoadGen's accuracy log"}
    assert "This run did not finish" in (aside / rundir.MARKER).read_text()
    assert (aside / "mlperf_log_detail.txt.partial").is_file()
    assert not (aside / "mlperf_log_detail.txt").exists()
    assert aside.stat().st_mode & 0o777 == 0o755  # readable by the user whose uid the container did not run as


def test_failing_inference_leaves_no_log_that_reads_as_a_result(bench_model: Path, tmp_path: Path, capsys: Any) -> None:
    """Every batch fails (a batch of 8 on a model fixed at 1): LoadGen's summary would say
    VALID. Its files are set aside renamed, and the error shows a few failures, counted."""
    model = fixed_batch_model(bench_model, tmp_path / "fixed.onnx")
    out = tmp_path / "out"
    args = ["--modelpath", str(model), "--max-batchsize", "8", "--mode", "accuracy", "--samples", "64"]
    assert main([*args, "--output-dir", str(out)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "inference failed during the run: 8 batch(es) failed; first error(s): InvalidArgument" in err
    assert len(err.splitlines()) < 10  # not one line per failed batch
    assert not list(out.rglob("mlperf_log_*.txt"))
    assert not list(out.rglob("mlperf_log_*.json"))
    [aside] = set_aside(out)
    assert (aside / "mlperf_log_summary.txt.partial").is_file()
    assert "No errors encountered" in (aside / "mlperf_log_summary.txt.partial").read_text()  # why it is renamed
    assert json.loads((aside / "result.json").read_text())["complete"] is False
    assert not (out / "result.json").exists()


def test_a_model_that_fails_every_batch_is_stopped_before_loadgen(
    bench_model: Path, tmp_path: Path, capsys: Any
) -> None:
    model = fixed_batch_model(bench_model, tmp_path / "fixed.onnx")
    out = tmp_path / "out"
    args = ["--modelpath", str(model), "--scenario", "Offline", "--max-batchsize", "8", "--duration", "5"]
    started = time.monotonic()
    assert main([*args, "--output-dir", str(out)]) == EXIT_ERROR
    assert time.monotonic() - started < 60  # not a 5 s LoadGen run of failures: calibration stops it
    err = capsys.readouterr().err
    assert "inference failed while calibrating" in err
    assert "calibrated" not in err


def test_a_second_run_into_a_busy_output_dir_is_refused(earlier_run: Path, bench_model: Path, capsys: Any) -> None:
    before = files_of(earlier_run)
    with rundir.claimed(earlier_run):  # another run holds it (flock: the same in one process or two)
        capsys.readouterr()
        assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(earlier_run)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"output directory {earlier_run} is in use by another mlbox-bench run (pid {os.getpid()})" in err
    assert files_of(earlier_run) == before
    assert not list(earlier_run.glob(rundir.STAGING_PREFIX + "*"))


def test_a_killed_runs_files_are_set_aside_by_the_next_run(earlier_run: Path, bench_model: Path) -> None:
    orphan = earlier_run / f"{rundir.STAGING_PREFIX}killed"
    orphan.mkdir()
    (orphan / "mlperf_log_accuracy.json").write_text("[")  # cut short
    assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(earlier_run)]) == 0
    [aside] = set_aside(earlier_run)
    assert (aside / "mlperf_log_accuracy.json.partial").read_text() == "["
    assert "process ended before the run finished" in json.loads((aside / "result.json").read_text())["reason"]
    assert not orphan.exists()


def test_a_new_run_removes_the_earlier_runs_other_files(bench_model: Path, tmp_path: Path) -> None:
    """An accuracy run's accuracy.txt must not sit beside a later performance run's logs."""
    out = tmp_path / "out"
    (out).mkdir()
    (out / "accuracy.txt").write_text("accuracy=99.000%, good=99, total=100\n")
    (out / "audit.config").write_text("*.*.mode = 2\n")
    (out / "notes.txt").write_text("the user's own")
    assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(out)]) == 0
    assert not (out / "accuracy.txt").exists()
    assert not (out / "audit.config").exists()
    assert (out / "notes.txt").read_text() == "the user's own"
    result = json.loads((out / "result.json").read_text())
    assert (result["complete"], result["output_dir"]) == (True, str(out))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("file", "it is not a directory"),
        ("file-parent", "Not a directory"),
        ("loop", "Too many levels of symbolic links"),
    ],
)
def test_an_unusable_output_dir_is_a_sentence(
    make: str, reason: str, bench_model: Path, tmp_path: Path, capsys: Any
) -> None:
    target = tmp_path / "out"
    if make == "file":
        target.write_text("a file")
    elif make == "file-parent":
        (tmp_path / "file").write_text("a file")
        target = tmp_path / "file" / "out"
    else:
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        target = tmp_path / "a"
    assert main(["--modelpath", str(bench_model), *SHORT, "--output-dir", str(target)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"cannot use output directory {target}: {reason}" in err
    assert "Errno" not in err
    assert "Traceback" not in err


def test_hostile_files_are_sentences(bench_model: Path, tmp_path: Path, capsys: Any) -> None:
    """Files that are not what their flag needs: each refused in words, none a traceback."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "loop.onnx").symlink_to(tmp_path / "loop.onnx")  # onnxruntime: "system error number 40"
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")  # a state dict of another network
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "text.pt2").write_text("hello")
    (tmp_path / "bytes.conf").write_bytes(b"resnet50.Offline.target_qps = \xff\n")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "val_map.txt").write_bytes(b"\xff\xfe a.JPEG 1\n")
    constant = helper.make_tensor("v", TensorProto.FLOAT, [1, 4], [0.0] * 4)
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["out"], value=constant)],
        "no-input",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "no-input.onnx"))
    model = ["--modelpath", str(bench_model)]
    cases = [
        (["--modelpath", str(tmp_path / "loop")], "cannot read it (Too many levels of symbolic links)"),
        (["--modelpath", str(tmp_path / "loop.onnx")], "cannot read it (Too many levels of symbolic links)"),
        (["--modelpath", str(tmp_path / "wrong.pth")], "Missing key(s) in state_dict"),
        (["--modelpath", str(tmp_path / "text.pt")], "PyTorch cannot load"),
        (["--modelpath", str(tmp_path / "text.pt2")], "PyTorch cannot load"),
        (["--modelpath", str(tmp_path / "no-input.onnx")], "the model has 0 input(s)"),
        ([*model, "--user-conf", str(tmp_path / "bytes.conf")], "not UTF-8 text (byte 0xff at offset 30)"),
        ([*model, "--dataset", str(dataset)], "not UTF-8 text (byte 0xff at offset 0)"),
        ([*model, "--audit-conf", str(tmp_path / "loop")], "cannot read it (Too many levels of symbolic links)"),
    ]
    for args, words in cases:
        code = main([*args, *SHORT, "--output-dir", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code in (EXIT_USAGE, EXIT_ERROR), (args, err)
        assert words in err, (args, err)
        assert "Traceback" not in err, (args, err)
        assert "internal error" not in err, (args, err)


def test_an_os_error_is_a_sentence_and_a_bug_says_so(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import mlbox_bench.run

    def full_disk(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "result.json"))

    args = ["--modelpath", str(bench_model), *SHORT, "--output-dir", str(tmp_path / "out")]
    monkeypatch.setattr(mlbox_bench.run, "run_loadgen", full_disk)
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"mlbox-bench: error: No space left on device ({tmp_path / 'out' / 'result.json'})" in err
    assert not list((tmp_path / "out").glob(rundir.STAGING_PREFIX + "*"))  # nothing was written: nothing kept

    def bug(*args: object) -> None:
        msg = "oops"
        raise KeyError(msg)

    monkeypatch.setattr(mlbox_bench.run, "run_loadgen", bug)
    assert main(args) == EXIT_CRASH
    err = capsys.readouterr().err
    assert "internal error: KeyError: 'oops'. This is a bug: run again with MLBOX_DEBUG=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("MLBOX_DEBUG", "1")
    with pytest.raises(KeyError):
        main(args)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("runner", "signum", "code"),
    [
        ("inline", signal.SIGTERM, 143),
        ("threadpool", signal.SIGTERM, 143),
        ("processpool", signal.SIGTERM, 143),
        ("processpool", signal.SIGINT, 130),  # Ctrl-C takes SIGTERM's path; only the exit code differs
    ],
)
def test_a_signal_stops_every_runner_within_two_seconds(
    runner: str, signum: int, code: int, tmp_path: Path, tiny_model: Path
) -> None:
    """Offline queues the whole run's work at once: stopping must drop it, not finish it
    (thread and process workers took 16-20 s to work through this queue before). The
    partial run is set aside, the earlier one untouched, no worker process left."""
    earlier_run = tmp_path / "out"
    earlier_run.mkdir()
    (earlier_run / "result.json").write_text('{"complete": true}\n')  # an earlier run's verdict
    before = files_of(earlier_run)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLBOX_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "entrypoints"), env.get("PYTHONPATH", "")])
    # 330,000 samples of 224x224 in one query (64 of them loaded): a minute of queued batches.
    cmd = [sys.executable, "-m", "mlbox_bench", "--modelpath", str(tiny_model), "--runner", runner, "--concurrency"]
    cmd += ["2", "--scenario", "Offline", "--target-qps", "5000", "--duration", "60", "--samples", "64"]
    cmd += ["--output-dir", str(earlier_run)]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) as proc:
        deadline = time.monotonic() + 60
        while not any(f.stat().st_size for f in earlier_run.glob(f"{rundir.STAGING_PREFIX}*/mlperf_log_detail.txt")):
            assert proc.poll() is None, "the run ended before LoadGen started"
            assert time.monotonic() < deadline, "LoadGen did not start"
            time.sleep(0.05)
        time.sleep(1.0)  # LoadGen has issued the query: the runner is busy with it
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        proc.send_signal(signum)
        sent = time.monotonic()
        rc = proc.wait(timeout=30)
        took = time.monotonic() - sent
        err = proc.communicate()[1]
    assert rc == code, err
    assert took < 2.0, f"{runner} took {took:.1f} s to stop"
    assert "stopped; no result.json was written" in err
    assert {k: v for k, v in files_of(earlier_run).items() if not k.startswith(rundir.INCOMPLETE)} == before
    [aside] = set_aside(earlier_run)
    assert json.loads((aside / "result.json").read_text())["reason"] == f"stopped by {signal.Signals(signum).name}"
    assert (aside / "mlperf_log_detail.txt.partial").is_file()
    if runner == "processpool":
        assert len(children) >= 2  # the workers existed, and are gone now
    # multiprocessing's resource tracker (a child too) ends when it sees its parent gone.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [Path(f"/proc/{pid}/cmdline").read_text() for pid in children if Path(f"/proc/{pid}").exists()]
