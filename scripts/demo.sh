#!/usr/bin/env bash
# The main job, offline: build the ResNet50 CPU image with SYNTHETIC weights (a real
# ResNet-50 v1.5 graph with random weights: the published weights need internet) on
# the bootstrapped base image, then run a LoadGen Offline benchmark in it with no
# network. Results land in ./results.
set -euo pipefail
cd "$(dirname "$0")/.."
image=$(.venv/bin/mlbox build --model resnet50 --device cpu --variant synthetic \
          --base-image "${MLBOX_BASE_IMAGE:?set by scripts/with-engine.sh}" | tail -n 1)
mkdir -p results
docker run --rm --network none --user "$(id -u):$(id -g)" \
  -v "$PWD/results:/results" "$image" --scenario Offline --duration "${DURATION:-10}"
echo "results: $PWD/results (result.json, mlperf_log_summary.txt, mlperf_log_detail.txt)"
