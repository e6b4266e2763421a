#!/usr/bin/env bash
# Make (or refresh) .venv with mlbox and its dev tools: what every make target runs in.
# Idempotent: does nothing while .venv is newer than pyproject.toml.
#
# PyTorch: the dev extra pins PyTorch's CPU build (torch==X+cpu), which only PyTorch's own
# CPU index has (PyPI's torch is the CUDA build: several GB with its NVIDIA wheels). It is
# installed first, from a local wheel when pip's configuration finds one (as on this
# project's machines), else from https://download.pytorch.org/whl/cpu; the rest comes from
# pip's usual index. Set MLBOX_TORCH_INDEX to use a mirror of that index.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/mlbox ] && [ .venv/.installed -nt pyproject.toml ]; then
  exit 0
fi
log() { echo "venv: $*" >&2; }

log "installing mlbox and its dev tools into .venv"
python3 -m venv .venv
torch_pin=$(python3 - <<'PY'
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]
print(next(r for r in extras if re.match(r"torch\s*==", r)).replace(" ", ""))
PY
)
torch_index="${MLBOX_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
# The CPU index only for torch: asking it for every package would cost a failed lookup each
# on a machine that cannot reach it. (pip warns about find-links folders some machines'
# configuration names but lack: noise, filtered.)
.venv/bin/pip install --quiet --disable-pip-version-check --extra-index-url "$torch_index" "$torch_pin" 2> >(grep -v "^WARNING: Location '" >&2)
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "^WARNING: Location '" >&2)
touch .venv/.installed
