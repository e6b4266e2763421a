"""mlbox-bench's start-up, run length and memory (issue 11, item 5), beside the seed app's.

    .venv/bin/python benchmarks/startup_and_duration.py [--durations 3,10] [--models tiny,resnet50]
        [--runners inline,threadpool,processpool] [--seed-app PATH/TO/app-loadgen-generic-python/src]

For each synthetic model (mlbox.synthetic: the tiny one and the ResNet-50-shaped one)
and each --duration N, an Offline run per runner, each its own process, as users run it:

- wall: from starting the process to its exit;
- first query: the process's age when LoadGen first called the SUT (result.json's
  harness.timeline, measured from the process's start time in /proc);
- in LoadGen: the time StartTest took, and its ratio to N (target <= 1.2);
- peak RSS: the process's maximum resident set (wait4), against the loaded samples
  + the model file + 300 MB (worker processes of processpool are not in it);
- observed: samples the runner ran in the measured run vs samples LoadGen issued.

Then Server at the automatic rate on each model (VALID or not, p99 and the bound).

With --seed-app, MLCommons' seed app (CM script app-loadgen-generic-python, main.py)
runs the same work after each inline run: Offline, the same sample count loaded and the
same query size (its --loadgen_expected_qps is mlbox-bench's expected QPS). It is run
through a small shim: LoadGen 6 refuses the float it assigns to min_duration_ms, NumPy 2
has no np.string_ (its type table names it), and it imports psutil only for a default.
Figures are measured in this run, on this machine;
this is not a test and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import Figures

REPO = Path(__file__).resolve().parents[1]

SEED_SHIM = r"""
import json, os, runpy, sys, time, types
import numpy as np

from figures import Figures
import mlperf_loadgen as lg

if not hasattr(np, "string_"):  # its backend's type table names np.string_ (gone in NumPy 2)
    np.string_ = np.bytes_

class Settings(lg.TestSettings):  # LoadGen 6 wants ints where the seed app assigns floats
    def __setattr__(self, name, value):
        if isinstance(value, float) and name.endswith(("_ms", "_count")):
            value = int(value)
        super().__setattr__(name, value)

lg.TestSettings = Settings
sys.modules.setdefault("psutil", types.SimpleNamespace(cpu_count=lambda logical=True: os.cpu_count()))
src, record = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
from loadgen import harness

issue = harness.Harness.issue_query
def first_issue(self, query_samples):
    if not os.path.exists(record):
        with open(record, "w") as f:
            json.dump({"first_query_unix": time.time()}, f)
    return issue(self, query_samples)
harness.Harness.issue_query = first_issue
sys.argv = [os.path.join(src, "main.py"), *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def timed(cmd: list[str]) -> tuple[float, int, int, str]:
    """(wall s, peak RSS KiB, exit code, stderr) of one process."""
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return wall, usage.ru_maxrss, proc.returncode, err.read().decode(errors="replace")


def mlbox(model: Path, out: Path, *args: str) -> tuple[dict[str, Any], float, int]:
    cmd = [sys.executable, "-m", "mlbox_bench", "--modelpath", str(model), "--output-dir", str(out), *args]
    wall, rss, rc, err = timed([*cmd, "--allow-invalid"])
    if rc != 0:
        sys.exit(f"mlbox-bench failed ({rc}): {' '.join(cmd)}\n{err[-2000:]}")
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result, wall, rss


def issued(result: dict[str, Any]) -> int:
    from mlbox_bench.report import parse_detail_log

    log = parse_detail_log(Path(result["output_dir"]) / "mlperf_log_detail.txt")
    return int(log.get("result_query_count", 1)) * int(log["effective_samples_per_query"])


def seed(src: Path, model: Path, work: Path, samples: int, qps: float, duration: float) -> str:
    record = work / "seed-first-query.json"
    record.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-c",
        SEED_SHIM,
        str(src),
        str(record),
        str(model),
        "--runner",
        "inline",
        "--samples",
        str(samples),
        "--loadgen_expected_qps",
        f"{qps:.3f}",
        "--loadgen_duration_sec",
        str(duration),
        "--output",
        str(work / "seed"),
    ]
    started = time.time()
    wall, rss, rc, err = timed(cmd)
    if rc != 0:
        return f"seed app failed ({rc}): {err.strip().splitlines()[-1] if err.strip() else ''}"
    first = json.loads(record.read_text())["first_query_unix"] - started if record.is_file() else float("nan")
    return f"seed app: wall {wall:6.2f} s, first query {first:5.2f} s, peak RSS {rss / 1024:7.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durations", default="3,10")
    parser.add_argument("--models", default="tiny,resnet50")
    parser.add_argument("--runners", default="inline,threadpool,processpool")
    parser.add_argument("--seed-app", type=Path, help="the seed app's src/ directory (main.py, loadgen/)")
    parser.add_argument("--json", type=Path, help="also write the figures there (see benchmarks/figures.py)")
    args = parser.parse_args()
    figures = Figures()
    sys.path[:0] = [str(REPO / "toolkit")]
    from mlbox.synthetic import build

    with tempfile.TemporaryDirectory(prefix="mlbox-startup-") as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            model = work / f"{name}.onnx"
            model.write_bytes(build(name, 0).SerializeToString())
            model_mb = model.stat().st_size / 2**20
            for duration in (float(d) for d in args.durations.split(",")):
                for runner in args.runners.split(","):
                    out = work / f"{name}-{duration:g}-{runner}"
                    r, wall, rss = mlbox(model, out, "--duration", f"{duration:g}", "--runner", runner)
                    t = r["harness"]["timeline"]
                    loaded_mb = r["qsl"]["performance"] * 3 * 224 * 224 * 4 / 2**20
                    print(
                        f"{name:8} --duration {duration:<4g} {runner:11}: {r['validity']:7} wall {wall:6.2f} s, "
                        f"first query {t['first_query_after_start_s']:5.2f} s, in LoadGen {t['loadgen_s']:6.2f} s "
                        f"({t['loadgen_s'] / duration:.2f} x N), peak RSS {rss / 1024:7.0f} MB "
                        f"(bound {loaded_mb + model_mb + 300:.0f}), observed {r['harness']['observed']['samples_run']}"
                        f" of {issued(r)} issued",
                        flush=True,
                    )
                    key = f"{name} Offline --duration {duration:g} {runner}"
                    figures.add(f"{key}: first query after start", t["first_query_after_start_s"], "s", "lower")
                    figures.add(f"{key}: time in LoadGen / N", t["loadgen_s"] / duration, "ratio", "lower")
                    figures.add(f"{key}: peak RSS", rss / 1024, "MB", "lower")
                    figures.add(f"{key}: VALID", r["validity"] == "VALID", "bool", "higher")
                    if runner == "inline" and args.seed_app:
                        qps = r["effective_settings"]["target_qps"]
                        print(" " * 40 + seed(args.seed_app, model, work, r["qsl"]["performance"], qps, duration))
            out = work / f"{name}-server"
            r, wall, _ = mlbox(model, out, "--scenario", "Server", "--duration", args.durations.split(",")[0])
            p99 = r["latency_ns"]["percentiles"]["99.00_percentile"] / 1e6
            bound = r["effective_settings"]["target_latency_ns"] / 1e6
            print(
                f"{name:8} Server at the automatic rate ({r['effective_settings']['target_qps']:.1f} QPS): "
                f"{r['validity']}, p99 {p99:.2f} ms (bound {bound:.0f} ms)",
                flush=True,
            )
            figures.add(f"{name} Server at the automatic rate: VALID", r["validity"] == "VALID", "bool", "higher")
            figures.add(f"{name} Server at the automatic rate: p99 / bound", p99 / bound, "ratio", "lower")
    figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
