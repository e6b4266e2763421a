"""Build-cache efficiency and image size of mlbox images, measured in one run.

    .venv/bin/python benchmarks/build_cache.py [--base-image mlbox-base:bookworm]

Needs a running Docker engine and a base image (`scripts/with-engine.sh` provides
both). Builds the ResNet50 CPU image with synthetic weights four times:

1. cold: an empty mlbox cache (wheelhouse resolved, model generated) and no Docker
   layer cache (nocache);
2. again after changing only the harness code (a comment in mlbox_bench/cli.py);
3. again after switching the model variant (other synthetic weights, same graph);
4. and reports the image size against base + installed Python packages + model.

Targets (issue 4): a code-only change rebuilds only the code and label layers (every
lower layer a cache hit) in <= 15% of the cold build's time; the image is <= 1.1 x
(base + installed deps + model). Ratios are from this run; absolute times vary. This
is not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The harness is staged from the installed package (importlib.resources): this run edits a
# copy of it, found first on sys.path, so the checkout is never touched.
WORK = Path(tempfile.mkdtemp(prefix="mlbox-build-bench-"))
shutil.copytree(
    REPO / "entrypoints" / "mlbox_bench", WORK / "code" / "mlbox_bench", ignore=shutil.ignore_patterns("__pycache__")
)
sys.path[:0] = [str(WORK / "code"), str(REPO / "toolkit")]

from mlbox.build import build_image, prepare_inputs  # noqa: E402
from mlbox.catalog import load_catalog  # noqa: E402
from mlbox.engine import DockerEngine  # noqa: E402
from mlbox.paths import harness_package, packaged_catalog, templates  # noqa: E402
from mlbox.plan import BuildPlan, make_plan, select  # noqa: E402


def timed_build(
    plan: BuildPlan, engine: DockerEngine, cache: Path, *, nocache: bool = False
) -> tuple[float, list[str]]:
    """Seconds for prepare + build, and the build's output lines."""
    lines: list[str] = []
    start = time.perf_counter()
    inputs = prepare_inputs(plan, cache)
    prepared = time.perf_counter()
    build_image(plan, engine, inputs, on_line=lines.append, nocache=nocache)
    done = time.perf_counter()
    print(f"  {plan.spec.tag}: host side {prepared - start:.1f} s, docker build {done - prepared:.1f} s")
    return done - start, lines


def layer_ids(engine: DockerEngine, tag: str) -> list[tuple[str, str, int]]:
    """(layer id, instruction, size), oldest first."""
    history = engine.client.api.history(tag)
    return [(h["Id"], h["CreatedBy"], int(h["Size"])) for h in reversed(history)]


def plan_for(base_image: str, variant: str, catalog: Any) -> BuildPlan:
    spec = select(catalog, model="resnet50", device="cpu", variant=variant, base_image=base_image)
    return make_plan(spec, templates())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", default="mlbox-base:bookworm", help="a base image the engine has")
    args = parser.parse_args()
    engine = DockerEngine()
    engine.api_version()
    if not engine.image_exists(args.base_image):
        sys.exit(f"base image {args.base_image} not found: run `mlbox base` (or scripts/with-engine.sh) first")
    code = Path(str(harness_package()))
    if code != WORK / "code" / "mlbox_bench":
        sys.exit(f"the harness was imported from {code}, not from this run's copy")
    try:
        work = WORK
        cache = work / "cache"

        # A second synthetic variant (other seed): "switching variant" changes only the weights.
        import yaml

        data = yaml.safe_load(packaged_catalog().read_text())
        other = dict(data["models"]["resnet50"]["variants"]["synthetic"])
        other["synthetic"] = {"generator": "resnet50", "seed": 1}
        other["file"] = "resnet50_v1_synthetic_seed1.onnx"
        data["models"]["resnet50"]["variants"]["synthetic-seed1"] = other
        (work / "images.yaml").write_text(yaml.safe_dump(data))
        catalog = load_catalog(work / "images.yaml")
        plan = plan_for(args.base_image, "synthetic", catalog)

        os.environ["PIP_NO_CACHE_DIR"] = "1"  # cold: pip's own download cache does not count either
        cold, _ = timed_build(plan, engine, cache, nocache=True)
        del os.environ["PIP_NO_CACHE_DIR"]
        before = layer_ids(engine, plan.spec.tag)

        with (code / "cli.py").open("a") as f:
            f.write("\n# benchmarks/build_cache.py: a code-only change\n")
        code_only, lines = timed_build(plan, engine, cache)
        after = layer_ids(engine, plan.spec.tag)
        new = [instr for (lid, instr, _) in after if lid not in {b[0] for b in before}]
        cached_steps = sum("Using cache" in line for line in lines)

        switched_plan = plan_for(args.base_image, "synthetic-seed1", catalog)
        switch, _ = timed_build(switched_plan, engine, cache)

        base_size = int(engine.inspect_image(args.base_image)["Size"])
        deps_size = next(size for _, instr, size in after if "/opt/mlbox/deps" in instr and "COPY" in instr)
        model_size = next(size for _, instr, size in after if "/opt/mlbox/model/" in instr)
        image_size = int(engine.inspect_image(plan.spec.tag)["Size"])
        engine.client.api.remove_image(switched_plan.spec.tag)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)

    parts = base_size + deps_size + model_size
    print(f"cold build (empty mlbox and pip caches, no layer cache): {cold:6.1f} s")
    print(f"code-only rebuild:                              {code_only:6.1f} s, {cached_steps} steps from cache")
    print("  layers rebuilt: " + "; ".join(" ".join(i.replace("/bin/sh -c #(nop) ", "").split())[:60] for i in new))
    print(f"variant switch rebuild:                         {switch:6.1f} s")
    print(
        f"image {image_size / 1e6:.0f} MB; base {base_size / 1e6:.0f} MB + installed deps {deps_size / 1e6:.0f} MB"
        f" + model {model_size / 1e6:.0f} MB = {parts / 1e6:.0f} MB"
    )
    lower_untouched = all("in /opt/mlbox/app/" in i or "LABEL" in i or "ARG" in i for i in new)
    print()
    print(f"code-only rebuild / cold build        {code_only / cold:.3f} (<= 0.15)")
    print(f"only code and label layers rebuilt    {'yes' if lower_untouched else 'NO'}")
    print(f"variant switch / cold build           {switch / cold:.3f}")
    print(f"image / (base + installed deps + model) {image_size / parts:.3f} (<= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
