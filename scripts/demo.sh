#!/usr/bin/env bash
# The main job, offline: build the ResNet50 CPU image with SYNTHETIC weights (a real
# ResNet-50 v1.5 graph with random weights: the published weights need internet) on
# the bootstrapped base image, then run a LoadGen Offline benchmark in it with no
# network. Results land in ./results.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${WITH_ENGINE_BOOTSTRAPPED_BASE:-}" ]; then
  # This machine cannot pull images: make the bootstrapped base the default of later mlbox
  # commands (base_image in ~/.config/mlbox/config.yaml), so `mlbox build` and
  # `mlbox doctor` use it without --base-image. A flag or MLBOX_BASE_IMAGE still wins.
  .venv/bin/mlbox base --set-default >/dev/null
fi
image=$(.venv/bin/mlbox build --model resnet50 --device cpu --variant synthetic \
          --base-image "${MLBOX_BASE_IMAGE:?set by scripts/with-engine.sh}" | tail -n 1)
# mlbox run: as you (--user), no network, results mounted; exits with the benchmark's code.
.venv/bin/mlbox run --image "$image" --results results -- --scenario Offline --duration "${DURATION:-10}"
echo "results: $PWD/results (result.json, mlperf_log_summary.txt, mlperf_log_detail.txt); table: .venv/bin/mlbox results"
