"""How `mlbox list` and catalog loading scale with the catalog, measured in one run.

    .venv/bin/python benchmarks/catalog_scale.py [--extra 10000]

Writes the repository's catalog with EXTRA more ResNet50 variants (copies of
`synthetic` under new names) and times, for it and for the catalog as it is: loading
and validating (`load_catalog`), and `mlbox list` as a user runs it (a process, output
to a pipe, no engine asked: DOCKER_HOST points nowhere). Best of three each.

Target (issue 25): both under 2 s for 10,000 extra variants. The ratio (large / as it is)
is from this run; absolute times vary with the machine. This is not a test: it prints
figures and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "toolkit")]

from mlbox.catalog import load_catalog  # noqa: E402


def best_of(runs: int, fn: Callable[[Path], object], catalog: Path) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(catalog)
        times.append(time.perf_counter() - start)
    return min(times)


def mlbox_list(catalog: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock", "MLBOX_CATALOG": str(catalog)}
    cli = Path(sys.executable).with_name("mlbox")
    proc = subprocess.run([str(cli), "list"], env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        msg = f"mlbox list failed: {proc.stderr.decode()[-500:]}"
        raise SystemExit(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extra", type=int, default=10_000, help="variants to add (default 10,000)")
    args = parser.parse_args()
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    variants = data["models"]["resnet50"]["variants"]
    for i in range(args.extra):
        variants[f"extra-{i}"] = copy.deepcopy(variants["synthetic"])
    with tempfile.TemporaryDirectory(prefix="mlbox-catalog-bench-") as tmp:
        large = Path(tmp) / "images.yaml"
        large.write_text(yaml.safe_dump(data))
        plain = REPO / "images.yaml"
        print(f"catalog: {len(variants):,} ResNet50 variants ({large.stat().st_size / 1e6:.1f} MB)")
        print(f"{'':<16}{'as it is':>10}{'large':>10}{'ratio':>8}")
        steps: list[tuple[str, Callable[[Path], object]]] = [("load_catalog", load_catalog), ("mlbox list", mlbox_list)]
        for name, fn in steps:
            small_s, large_s = best_of(3, fn, plain), best_of(3, fn, large)
            print(f"{name:<16}{small_s:>9.2f}s{large_s:>9.2f}s{large_s / small_s:>7.1f}x")


if __name__ == "__main__":
    main()
