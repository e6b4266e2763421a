"""Regenerate the golden Dockerfiles: `make golden`. Review the diff before committing.

The golden set is what `mlbox render --all --out DIR` writes (every buildable image),
plus one image rendered with --loadgen-from source and one with --cuda-from nvidia.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from mlbox.cli import main as mlbox

GOLDEN = Path(__file__).parent
SOURCE_CASE = ["--model", "resnet50", "--loadgen-from", "source"]
CUDA_NVIDIA_CASE = ["--model", "resnet50", "--device", "cuda", "--cuda-from", "nvidia"]


def render_all(out: Path) -> list[Path]:
    """Write the golden set into ``out``; return the files, sorted. Neither the caller's
    MLBOX_* variables (make test exports MLBOX_BASE_IMAGE) nor their configuration file
    (make demo sets base_image there) may leak into golden files."""
    out.mkdir(parents=True, exist_ok=True)
    for path in out.glob("*.Dockerfile"):
        path.unlink()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MLBOX_") or k == "XDG_CONFIG_HOME"}
    try:
        with tempfile.TemporaryDirectory(prefix="mlbox-golden-") as work:
            os.environ["XDG_CONFIG_HOME"] = str(Path(work) / "config")  # no configuration file
            # Rendered beside, then moved: `render --out` keeps a list of what it wrote in the
            # folder (.mlbox-written), which has no place among the golden files.
            rendered = Path(work) / "rendered"
            cases = (["--all"], SOURCE_CASE, CUDA_NVIDIA_CASE)
            ok = all(mlbox(["render", *args, "--out", str(rendered)]) == 0 for args in cases)
            for path in rendered.glob("*.Dockerfile") if ok else ():
                shutil.move(path, out / path.name)
    finally:
        os.environ.pop("XDG_CONFIG_HOME", None)
        os.environ.update(saved)
    if not ok:
        sys.exit("rendering failed (see above)")
    return sorted(out.glob("*.Dockerfile"))


if __name__ == "__main__":
    for path in render_all(GOLDEN):
        print(path.relative_to(GOLDEN.parents[1]))
