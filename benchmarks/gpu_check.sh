#!/usr/bin/env bash
# The GPU check, as run on a lent GPU machine (see ../shared/GPU.md): no Docker engine
# there, so mlbox-bench runs natively. Needs, in .gpu/ of the checkout (ignored by git):
#   ort.tar.xz (or its parts ort.part.*): onnxruntime-gpu's wheel unpacked, TensorRT's
#     provider dropped, tar | xz (the wheel itself is too big to carry);
#   whl/: mlcommons-loadgen and pydantic wheels for the machine's Python (3.12).
# Runs the gpu-marked tests, then benchmarks/gpu.py; writes both logs to $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out" /tmp/mlbox-gpu/site
if [ ! -d /tmp/mlbox-gpu/ort/onnxruntime ]; then
  # Parts sent by earlier calls wait in /tmp; this call's own parts are in .gpu/.
  cp .gpu/ort.part.* /tmp/ 2>/dev/null
  mkdir -p /tmp/mlbox-gpu/ort
  if [ -f .gpu/ort.tar.xz ]; then cat .gpu/ort.tar.xz; else cat $(ls /tmp/ort.part.* | sort); fi \
    | xz -d | tar -C /tmp/mlbox-gpu/ort -xf - || exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mlbox-gpu/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/mlbox-gpu/ort:/tmp/mlbox-gpu/site:$PWD/toolkit:$PWD/entrypoints:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, o.get_available_providers()); print('torch', torch.__version__, torch.version.cuda)" | tee -a "$out/gpu.txt"
[ -n "${SKIP_TESTS:-}" ] || timeout 240 python3 -m pytest tests/unit/test_bench_gpu.py -q -p no:cacheprovider -p no:warnings -o addopts="" \
  2>&1 | tail -40 | tee "$out/gpu-tests.txt"
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/gpu.py --seconds "${SECONDS_PER_PART:-4}" --out "$out" 2>&1 | tail -60 | tee "$out/gpu-bench-log.txt"
