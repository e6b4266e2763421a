"""Whether this machine has an NVIDIA GPU (the check mlbox-bench itself makes): `gpu` tests
run only on one, and tests about a GPU-less host skip on one."""

from __future__ import annotations

from pathlib import Path

import pytest


def gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


# For tests whose point is what happens on a host without a GPU: skipped, not failed, on one.
no_gpu = pytest.mark.skipif(gpu_present(), reason="checks behaviour on a host without an NVIDIA GPU")
