"""Top-1 accuracy of a LoadGen accuracy log, as MLCommons' accuracy-imagenet.py scores it.

    python -m mlbox_bench.accuracy --mlperf-accuracy-file mlperf_log_accuracy.json \\
        --imagenet-val-file val_map.txt [--dtype float32] [--verbose]

The flags and defaults are the official script's
(vision/classification_and_detection/tools/accuracy-imagenet.py): each entry's data
(hex) holds the label the SUT answered, ``--dtype`` float32 by default, compared with
val_map.txt's label with no offset (the SUT applied the model's offset before logging,
as mlbox-bench and the reference app do). A sample logged twice counts once. Prints
``accuracy=<percent>%, good=<n>, total=<n>``, the line accuracy.txt holds.

``--offset`` (not in the official script; default 0) scores logs of older mlbox-bench
versions, which logged the raw ArgMax index as int64: ``--dtype int64 --offset -1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


@dataclass(frozen=True)
class Accuracy:
    good: int
    total: int
    duplicates: int
    misses: tuple[tuple[int, int, int], ...] = ()  # (qsl index, expected, found)

    @property
    def top1(self) -> float:
        return self.good / self.total if self.total else 0.0

    def line(self) -> str:
        return f"accuracy={100.0 * self.top1:.3f}%, good={self.good}, total={self.total}"


def read_labels(val_map: Path) -> list[int]:
    return [int(line.split()[1]) for line in val_map.read_text(encoding="utf-8").splitlines() if line.strip()]


def logged_indices(log_path: Path) -> set[int]:
    return {int(e["qsl_idx"]) for e in json.loads(log_path.read_text(encoding="utf-8"))}


def score(log_path: Path, labels: list[int], dtype: str = "float32", offset: int = 0) -> Accuracy:
    entries = json.loads(log_path.read_text(encoding="utf-8"))
    seen: set[int] = set()
    good = duplicates = 0
    misses: list[tuple[int, int, int]] = []
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in seen:  # LoadGen may log a sample twice; count it once, like the reference
            duplicates += 1
            continue
        seen.add(index)
        data = np.frombuffer(bytes.fromhex(entry["data"]), DTYPES[dtype])
        found = int(data[0]) + offset if data.size else None
        if found == labels[index]:
            good += 1
        else:
            misses.append((index, labels[index], -1 if found is None else found))
    return Accuracy(good, len(seen), duplicates, tuple(misses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbox_bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlperf-accuracy-file", required=True, type=Path, help="path to mlperf_log_accuracy.json")
    parser.add_argument("--imagenet-val-file", required=True, type=Path, help="path to imagenet val_map.txt")
    parser.add_argument("--verbose", action="store_true", help="verbose messages")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="data type of the label")
    parser.add_argument("--offset", type=int, default=0, help="added to each logged value (old int64 logs: -1)")
    args = parser.parse_args(argv)
    try:
        result = score(args.mlperf_accuracy_file, read_labels(args.imagenet_val_file), args.dtype, args.offset)
    except (OSError, ValueError, KeyError, IndexError) as err:
        print(f"accuracy: error: {err}", file=sys.stderr)
        return 3
    if args.verbose:
        for index, expected, found in result.misses:
            print(f"{index}, expected: {expected}, found {found}")
    print(result.line())
    if args.verbose:
        print(f"found and ignored {result.duplicates} dupes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
