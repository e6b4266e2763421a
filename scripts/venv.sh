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
# A venv belongs to the Python that made it: `python3 -m venv` over one made by another
# python3 (a pyenv one earlier on PATH, then the system's) mixes the two, and that venv's
# ssl no longer loads (pip then cannot reach PyPI). Make it anew unless the one there
# is this python3's and works; an existing good one is only updated below.
if ! .venv/bin/python -c 'import os, ssl, sys; sys.exit(os.path.realpath(sys.base_prefix) != os.path.realpath(sys.argv[1]))' \
     "$(python3 -c 'import sys; print(sys.base_prefix)')" 2>/dev/null; then
  python3 -m venv --clear .venv
fi
torch_pin=$(python3 - <<'PY'
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]
print(next(r for r in extras if re.match(r"torch\s*==", r)).replace(" ", ""))
PY
)
torch_index="${MLBOX_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
# The CPU index for torch alone (--no-deps; its dependencies come with the rest, from pip's
# usual index): asking an index this machine cannot reach for every dependency costs five
# retries each. (pip warns about find-links folders some machines' configuration names but
# lack: noise, filtered.)
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --retries 1 --extra-index-url "$torch_index" \
  "$torch_pin" 2> >(grep -v "^WARNING: Location '" >&2)
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "^WARNING: Location '" >&2)
touch .venv/.installed
