"""Benchmark figures as JSON, and the check that names what got worse.

The benchmarks (harness_overhead.py, startup_and_duration.py) write their figures with
``--json PATH``: ``{name: {"value": v, "unit": u, "better": "higher" | "lower"}}``. The
figures a change is judged against are kept in the repository (benchmarks/figures/), made
by one run of `make bench` on a quiet machine and accepted with `make bench-accept`.

    .venv/bin/python benchmarks/figures.py compare PREVIOUS_DIR CURRENT_DIR [--tolerance 0.10]

prints every figure beside its previous value and exits 1 when one got worse by more than
the tolerance (10%: machines are noisy; a smaller change is not a finding). Figures with
no previous value are listed as new. This is a check for `make bench`, not a test: the
tests check behaviour, never timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    better: Better


class Figures:
    """The figures of one benchmark run, written as JSON at the end."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def add(self, name: str, value: float, unit: str, better: Better) -> None:
        self.figures[name] = Figure(float(value), unit, better)

    def write(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k: asdict(v) for k, v in sorted(self.figures.items())}, indent=2) + "\n")


def read(path: Path) -> dict[str, Figure]:
    raw = json.loads(path.read_text())
    return {name: Figure(float(f["value"]), str(f["unit"]), f["better"]) for name, f in raw.items()}


def worse_by(previous: Figure, current: Figure) -> float:
    """How much worse ``current`` is, as a fraction of ``previous`` (negative: better)."""
    if previous.value == 0:
        return 0.0 if current.value == previous.value else float("inf")
    change = (current.value - previous.value) / abs(previous.value)
    return change if current.better == "lower" else -change


def compare(previous: dict[str, Figure], current: dict[str, Figure], tolerance: float) -> tuple[list[str], list[str]]:
    """(a line per figure, the lines of the figures worse by more than ``tolerance``)."""
    lines, worse = [], []
    width = max((len(n) for n in current), default=0)
    for name, now in sorted(current.items()):
        before = previous.get(name)
        if before is None:
            lines.append(f"{name:<{width}}  {now.value:12.4g} {now.unit:10} new")
            continue
        change = worse_by(before, now)
        verdict = f"WORSE by {100 * change:.0f}%" if change > tolerance else "ok"
        was = f"was {before.value:.4g} ({now.better} is better)"
        line = f"{name:<{width}}  {now.value:12.4g} {now.unit:10} {was}: {verdict}"
        lines.append(line)
        if change > tolerance:
            worse.append(line)
    return lines, worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("compare", help="compare a run's figures with the previous ones")
    check.add_argument("previous", type=Path, help="directory of the previous figures (*.json)")
    check.add_argument("current", type=Path, help="directory of this run's figures (*.json)")
    check.add_argument("--tolerance", type=float, default=0.10, help="worse by more than this fraction is reported")
    args = parser.parse_args(argv)
    found = sorted(args.current.glob("*.json"))
    if not found:
        print(f"figures: no *.json in {args.current}: run the benchmarks with --json first", file=sys.stderr)
        return 2
    regressions: list[str] = []
    for path in found:
        previous_path = args.previous / path.name
        previous = read(previous_path) if previous_path.is_file() else {}
        lines, worse = compare(previous, read(path), args.tolerance)
        print(f"== {path.name}" + ("" if previous else f" (no previous figures in {args.previous})"))
        print("\n".join(lines))
        regressions += worse
    if regressions:
        print(f"\n{len(regressions)} figure(s) worse by more than {100 * args.tolerance:.0f}%:")
        print("\n".join(regressions))
        return 1
    print(f"\nno figure worse by more than {100 * args.tolerance:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
