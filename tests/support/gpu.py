"""Whether this machine has an NVIDIA GPU: tests that assume there is none skip on one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HAS_GPU = Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
no_gpu = pytest.mark.skipif(HAS_GPU, reason="assumes a machine without an NVIDIA GPU")
