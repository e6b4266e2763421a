"""The image's layout contract: what the templates, the build executor and the harness
inside the image agree on. Every path, name and number that more than one of them uses
is written here once.
"""

from __future__ import annotations

# Paths inside every image.
IMAGE_ROOT = "/opt/mlbox"
DEPS_DIR = f"{IMAGE_ROOT}/deps"  # the backend's Python packages (pip --target)
LOADGEN_DIR = f"{IMAGE_ROOT}/loadgen"
APP_DIR = f"{IMAGE_ROOT}/app"  # the harness source and its launcher
MODEL_DIR = f"{IMAGE_ROOT}/model"
RESULTS_DIR = "/results"
IMAGE_UID = 10001  # the image's non-root user (any --user works too)
ENTRYPOINT = "mlbox-bench"

# Folders of the build context, as the Dockerfile's COPY lines name them.
CONTEXT_WHEELS = "wheels"  # the backend's wheelhouse
CONTEXT_LOADGEN = "loadgen"  # LoadGen's wheel
CONTEXT_LOADGEN_SRC = "loadgen-src"  # LoadGen's sdist and build requirements (--loadgen-from source)
CONTEXT_MODEL = "model"
CONTEXT_APP = "app"
HARNESS_PACKAGE = "mlbox_bench"  # copied to app/mlbox_bench
LAUNCHER = f"{CONTEXT_APP}/bin/{ENTRYPOINT}"

# Build arguments the executor fills at build time, and the label each one feeds. They are
# declared right before the labels, so a new value only rebuilds the label layer.
BUILD_ARG_LABELS = {
    "MLBOX_CREATED": "org.opencontainers.image.created",
    "MLBOX_MODEL_SHA256": "mlbox.model.sha256",
}
BUILD_ARGS = tuple(BUILD_ARG_LABELS)

# The image describes itself to mlbox-bench with MLBOX_DEFAULT_<OPTION> variables: the
# lowest layer of its settings, so a user's -e MLBOX_* or CM_* always wins. <OPTION> is
# an mlbox-bench option name (a test checks every one a template writes).
DEFAULT_PREFIX = "MLBOX_DEFAULT_"


def default_variable(option: str) -> str:
    """`modelpath` -> `MLBOX_DEFAULT_MODELPATH`."""
    return DEFAULT_PREFIX + option.upper()
