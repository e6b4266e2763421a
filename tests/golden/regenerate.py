"""Regenerate the golden Dockerfiles: `make golden`. Review the diff before committing."""

from __future__ import annotations

from pathlib import Path

from mlbox.catalog import load_catalog
from mlbox.paths import default_catalog, templates_dir
from mlbox.plan import make_plan, select

GOLDEN = Path(__file__).parent

# (model, device, variant) cells with a checked-in rendering.
CASES = [("resnet50", "cpu", "onnx-opset11-fp32"), ("resnet50", "cpu", "synthetic")]


def golden_path(model: str, device: str, variant: str) -> Path:
    return GOLDEN / f"{model}-{device}-{variant}.Dockerfile"


def render(model: str, device: str, variant: str) -> str:
    spec = select(load_catalog(default_catalog()), model=model, device=device, variant=variant)
    return make_plan(spec, templates_dir()).dockerfile


def main() -> None:
    for case in CASES:
        golden_path(*case).write_text(render(*case))
        print(golden_path(*case))


if __name__ == "__main__":
    main()
