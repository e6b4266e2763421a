"""A whole submission tree made by mlbox-bench, read by MLCommons' own submission checker.

    .venv/bin/python benchmarks/submission_check.py --inference DIR [--duration 10] [--out DIR]

DIR is a checkout of github.com/mlcommons/inference (its tools/submission/submission_checker
is run as it is; nothing of it is copied here). For each scenario the script runs what a
submitter runs: performance, accuracy on a generated ImageNet-layout dataset (1024 noisy
solid colours, labels known), and the TEST01 and TEST04 compliance runs; then the checker
on OUT/submission, and prints the checker's ERROR lines. A colour classifier behind two
convolutions stands in for ResNet-50: real compute per sample, answers known in advance.
Complaints about run length (MLPerf wants 600 s), dataset size (50,000 images) and the
system fields only a person can fill are expected; anything else is a conformance bug.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inference", type=Path, required=True, help="a checkout of mlcommons/inference")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each performance run")
    parser.add_argument("--out", type=Path, help="where the tree goes (default: a temporary directory)")
    parser.add_argument("--version", default="v6.1", help="the checker's --version")
    args = parser.parse_args()
    from tests.support.colors import colour_classifier, colour_dataset

    work = args.out or Path(tempfile.mkdtemp(prefix="mlbox-submission-"))
    model = colour_classifier(work / "heavy.onnx", conv_width=48)
    dataset, _ = colour_dataset(work / "dataset", count=1024, wrong=0)
    out = work / "tree"
    for scenario in SCENARIOS:
        common = [
            "--modelpath",
            str(model),
            "--dataset",
            str(dataset),
            "--preprocessed-dir",
            str(work / "prep"),
            "--scenario",
            scenario,
            "--submission-layout",
            "--system-name",
            "box1",
            "--submitter",
            "mlbox",
            "--output-dir",
            str(out),
            "--allow-invalid",
        ]
        if scenario == "Server":  # the colour model on a CPU: a bound it can meet, said out loud
            common += ["--target-latency", "100"]
        for extra in (
            ["--duration", str(args.duration)],
            ["--mode", "accuracy"],
            ["--compliance", "TEST01", "--duration", str(args.duration)],
            ["--compliance", "TEST04", "--duration", str(args.duration)],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "mlbox_bench", *common, *extra], capture_output=True, text=True, check=False
            )
            verdict = [line for line in proc.stderr.splitlines() if "VALID" in line or "error" in line]
            print(f"{scenario} {' '.join(extra)}: exit {proc.returncode}; {' | '.join(verdict)[:300]}", flush=True)
    checker = args.inference / "tools" / "submission" / "submission_checker" / "main.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(checker),
            "--input",
            str(out / "submission"),
            "--version",
            args.version,
            "--csv",
            str(work / "summary.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=checker.parents[1],
        check=False,
    )
    (work / "checker.log").write_text(proc.stdout + proc.stderr)
    errors = sorted({line.split("] ", 1)[-1] for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line})
    print(f"\nchecker exit {proc.returncode}; {len(errors)} distinct ERROR lines (log: {work / 'checker.log'}):")
    for line in errors:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
