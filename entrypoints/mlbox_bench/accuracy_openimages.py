"""COCO mAP of a LoadGen accuracy log, as MLCommons' accuracy-openimages.py scores it.

    python -m mlbox_bench.accuracy_openimages --mlperf-accuracy-file mlperf_log_accuracy.json \\
        --openimages-dir DIR

The flags are the official script's
(vision/classification_and_detection/tools/accuracy-openimages.py; not --use-inv-map, which
RetinaNet's ONNX profile does not use, and --output-file is written only when given), for
scoring a log where the inference sources are not at hand: DIR/annotations/openimages-mlperf.json (or
DATASET_ANNOTATIONS_FILE_PATH) is the ground truth, each logged sample is image
``images[qsl_idx]``, and the label in each record is the category id (no --use-inv-map).
Prints ``mAP=<percent>%``, the line accuracy.txt holds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlbox_bench.errors import BenchError
from mlbox_bench.tasks.detection import ANNOTATIONS, mean_average_precision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlbox_bench.accuracy_openimages", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--mlperf-accuracy-file", required=True, type=Path, help="path to mlperf_log_accuracy.json")
    parser.add_argument("--openimages-dir", required=True, type=Path, help="openimages directory")
    parser.add_argument("--verbose", action="store_true", help="verbose messages")
    parser.add_argument("--output-file", type=Path, help="where to write the detections (the script's default: none)")
    args = parser.parse_args(argv)
    annotations = Path(os.environ.get("DATASET_ANNOTATIONS_FILE_PATH") or args.openimages_dir / ANNOTATIONS)
    try:
        score = mean_average_precision(args.mlperf_accuracy_file, annotations, args.output_file)
    except (OSError, BenchError) as err:
        print(f"accuracy_openimages: error: {err}", file=sys.stderr)
        return 3
    print(score.line)
    if args.verbose:
        print(f"found {score.facts['images']} images, {score.facts['detections']} detections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
