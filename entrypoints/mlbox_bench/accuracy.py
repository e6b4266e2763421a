"""Top-1 accuracy from LoadGen's mlperf_log_accuracy.json, as MLPerf's accuracy-imagenet.py.

    python -m mlbox_bench.accuracy --mlperf-accuracy-file mlperf_log_accuracy.json \\
        --imagenet-val-file val_map.txt [--dtype int64] [--offset -1]

Each accuracy-log entry holds one sample's response bytes (hex): for ResNet50 the ArgMax
class index, whose dtype the harness records. MLPerf's ResNet50 has 1001 classes (0 is
background), so ``index + offset`` (offset -1) is the ImageNet label. Prints
``accuracy=<percent>%, good=<n>, total=<n>``, the line MLPerf's accuracy.txt holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32, "uint8": np.uint8}


@dataclass(frozen=True)
class Accuracy:
    good: int
    total: int
    duplicates: int

    @property
    def top1(self) -> float:
        return self.good / self.total if self.total else 0.0

    def line(self) -> str:
        return f"accuracy={100.0 * self.top1:.3f}%, good={self.good}, total={self.total}"


def read_labels(val_map: Path) -> list[int]:
    return [int(line.split()[1]) for line in val_map.read_text(encoding="utf-8").splitlines() if line.strip()]


def top1(log_path: Path, labels: list[int] | np.ndarray, dtype: str = "int64", offset: int = -1) -> Accuracy:
    entries = json.loads(log_path.read_text(encoding="utf-8"))
    seen: set[int] = set()
    good = duplicates = 0
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in seen:  # LoadGen may log a sample twice; count it once, like the reference
            duplicates += 1
            continue
        seen.add(index)
        predicted = np.frombuffer(bytes.fromhex(entry["data"]), DTYPES[dtype])
        if predicted.size and int(predicted[0]) + offset == int(labels[index]):
            good += 1
    return Accuracy(good, len(seen), duplicates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbox_bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlperf-accuracy-file", required=True, type=Path, help="mlperf_log_accuracy.json")
    parser.add_argument("--imagenet-val-file", required=True, type=Path, help="val_map.txt")
    parser.add_argument("--dtype", default="int64", choices=sorted(DTYPES), help="dtype of the logged responses")
    parser.add_argument("--offset", type=int, default=-1, help="added to the logged class index (ResNet50: -1)")
    args = parser.parse_args(argv)
    try:
        result = top1(args.mlperf_accuracy_file, read_labels(args.imagenet_val_file), args.dtype, args.offset)
    except (OSError, ValueError, KeyError, IndexError) as err:
        print(f"accuracy: error: {err}", file=sys.stderr)
        return 3
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
