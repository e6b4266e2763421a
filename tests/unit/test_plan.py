from __future__ import annotations

import pytest

from mlbox.catalog import load_catalog
from mlbox.errors import CatalogError
from mlbox.paths import templates
from mlbox.plan import image_tag, make_plan, select
from tests.conftest import REPO


@pytest.fixture
def catalog():  # type: ignore[no-untyped-def]
    return load_catalog(REPO / "images.yaml")


def test_tag_scheme_adds_variant_and_backend_only_when_not_default(catalog) -> None:  # type: ignore[no-untyped-def]
    assert select(catalog, model="resnet50", device="cpu").tag == "mlbox:resnet50-cpu"
    assert select(catalog, model="resnet50", device="cpu", variant="synthetic").tag == "mlbox:resnet50-cpu-synthetic"
    assert image_tag("mlbox", model="m", device="cuda", variant="v", backend="b") == "mlbox:m-cuda-v-b"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "resnet5", "device": "cpu"}, "unknown model 'resnet5'; did you mean 'resnet50'?"),
        ({"model": "resnet50", "device": "cpux"}, "unknown device 'cpux'; did you mean 'cpu'?"),
        ({"model": "resnet50", "device": "cpu", "variant": "synthetc"}, "did you mean 'synthetic'?"),
    ],
)
def test_unknown_names_are_refused_with_a_suggestion(catalog, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogError, match=message):
        select(catalog, **kwargs)


@pytest.mark.parametrize(
    ("backend", "variant", "device", "missing"),
    [
        ("tensorflow", "tensorflow-fp32", "cuda", "a TensorFlow backend"),
        ("tflite", "tflite-noargmax", "cpu", "a TFLite backend"),
    ],
)
def test_unbuildable_cells_are_listed_but_refused_naming_what_is_missing(
    backend: str, variant: str, device: str, missing: str
) -> None:
    import yaml

    from mlbox.catalog import parse_catalog
    from mlbox.plan import matrix

    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["backends"][backend]["missing"] = missing  # a backend the harness would not have
    catalog = parse_catalog(yaml.safe_dump(data))
    row = next(c for c in matrix(catalog, model="resnet50", device=device) if c.variant == variant)
    assert row.spec is None
    assert missing in (row.missing or "")
    with pytest.raises(CatalogError, match=f"cannot build resnet50/{variant} for {device} yet: it needs {missing}"):
        select(catalog, model="resnet50", device=device, variant=variant)


def test_every_resnet50_variant_is_buildable_where_it_exists(catalog) -> None:  # type: ignore[no-untyped-def]
    from mlbox.plan import matrix

    cells = matrix(catalog, model="resnet50")
    assert [(c.variant, c.device, c.missing) for c in cells if c.spec is None] == []
    assert {c.variant for c in cells} == set(catalog.models["resnet50"].variants)


def test_tensorflow_cuda_takes_its_own_route_with_its_cuda_12_wheels(catalog) -> None:  # type: ignore[no-untyped-def]
    """TensorFlow 2.21's CUDA build needs CUDA 12; NVIDIA's base image has CUDA 13: the
    plain base with TensorFlow's own CUDA 12 wheels, the one route (no -cudapip suffix)."""
    from mlbox.plan import matrix

    spec = select(catalog, model="resnet50", device="cuda", variant="tensorflow-fp32")
    assert spec == select(catalog, model="resnet50", device="cuda", variant="tensorflow-fp32", cuda_from="pip")
    assert spec.tag == "mlbox:resnet50-cuda-tensorflow-fp32"
    assert (spec.base_image, spec.python, spec.cuda_from) == (catalog.defaults.base_image, "3.11", "pip")
    assert "tensorflow==2.21.0" in spec.packages
    assert "nvidia-cudnn-cu12==9.28.0.42" in spec.packages
    assert not [p for p in spec.packages if "cu13" in p or p.startswith("nvidia-cuda-runtime==")]  # not the device's
    assert spec.library_dirs == ()  # TensorFlow's rpath finds its wheels
    with pytest.raises(CatalogError, match="come one way only, --cuda-from pip"):
        select(catalog, model="resnet50", device="cuda", variant="tensorflow-fp32", cuda_from="nvidia")
    listed = matrix(catalog, model="resnet50", variant="tensorflow-fp32", device="cuda", cuda_from="nvidia")[0]
    assert listed.spec is None
    assert listed.missing == "its own CUDA route, --cuda-from pip (its wheels bring their own CUDA)"
    cpu = select(catalog, model="resnet50", device="cpu", variant="tensorflow-fp32")
    assert "tensorflow-cpu==2.21.0" in cpu.packages
    assert not any(p.startswith("nvidia-") for p in cpu.packages)


def test_cuda_routes(catalog) -> None:  # type: ignore[no-untyped-def]
    """NVIDIA's wheels on the plain base by default (nothing fetched inside the build);
    NVIDIA's base image (its own Python, from Ubuntu's archive, pinned) on request."""
    pip = select(catalog, model="resnet50", device="cuda")
    assert pip.base_image == catalog.defaults.base_image
    assert (pip.python, pip.python_from_apt, pip.cuda_from, pip.python_apt) == ("3.11", False, "pip", ())
    assert pip.tag == "mlbox:resnet50-cuda"
    assert "nvidia-cudnn-cu13==9.28.1.4" in pip.packages
    assert pip.library_dirs == ("nvidia/cu13/lib", "nvidia/cudnn/lib")
    nvidia = select(catalog, model="resnet50", device="cuda", cuda_from="nvidia")
    assert nvidia.base_image.startswith("nvidia/cuda:")
    assert (nvidia.python, nvidia.wheel_platform, nvidia.python_from_apt) == ("3.12", "manylinux_2_39_x86_64", True)
    assert nvidia.tag == "mlbox:resnet50-cuda-nvidiabase"
    assert "onnxruntime-gpu==1.31.1" in nvidia.packages
    assert not any(p.startswith("nvidia-") for p in nvidia.packages)
    assert all("=" in pin for pin in nvidia.python_apt)
    assert "python3-venv=3.12.3-0ubuntu2.1" in nvidia.python_apt
    # torch's wheels carry CUDA: no NVIDIA wheels added on the pip route.
    torch_cuda = select(catalog, model="resnet50", device="cuda", variant="pytorch-fp32")
    assert not any(p.startswith("nvidia-cudnn-cu13==9.28") for p in torch_cuda.packages)
    assert torch_cuda.library_dirs == ()
    # cpu images have one route: the option does not apply.
    assert select(catalog, model="resnet50", device="cpu", cuda_from="nvidia").tag == "mlbox:resnet50-cpu"


def test_matrix_has_every_published_variant_and_filters(catalog) -> None:  # type: ignore[no-untyped-def]
    from mlbox.plan import matrix

    every = matrix(catalog)
    variants = {(c.model, c.variant) for c in every}
    assert {v for m, v in variants if m == "resnet50"} == {
        "onnx-opset11-fp32",
        "onnx-opset8-fp32",
        "pytorch-fp32",
        "pytorch-int8",
        "tensorflow-fp32",
        "tflite-fp32",
        "tflite-noargmax",
        "synthetic",
        "synthetic-pytorch-fp32",
        "synthetic-pytorch-int8",
        "synthetic-tensorflow-fp32",
        "synthetic-tflite-fp32",
        "synthetic-tflite-noargmax",
        "synthetic-tflite-int8",
        "onnx-opset11-fp16",
        "synthetic-fp16",
    }
    assert ("retinanet", "onnx-fp32") in variants
    assert {c.device for c in every} == {"cpu", "cuda"}
    only = matrix(catalog, backend="pytorch", device="cpu")
    assert {c.variant for c in only} == {
        "pytorch-fp32",
        "pytorch-int8",
        "synthetic-pytorch-fp32",
        "synthetic-pytorch-int8",
    }
    assert {c.tag for c in only} == {  # the backend is named once
        "mlbox:resnet50-cpu-pytorch-fp32",
        "mlbox:resnet50-cpu-pytorch-int8",
        "mlbox:resnet50-cpu-synthetic-pytorch-fp32",
        "mlbox:resnet50-cpu-synthetic-pytorch-int8",
    }
    # fbgemm int8 models run on the CPU only: they have no cuda cell.
    assert {c.variant for c in matrix(catalog, backend="pytorch", device="cuda")} == {
        "pytorch-fp32",
        "synthetic-pytorch-fp32",
    }
    assert next(c for c in every if c.model == "retinanet" and c.device == "cpu").tag == "mlbox:retinanet-cpu"
    assert {c.tag for c in matrix(catalog, backend="tflite")} == {  # LiteRT runs on the CPU: no cuda cells
        "mlbox:resnet50-cpu-tflite-fp32",
        "mlbox:resnet50-cpu-tflite-noargmax",
        "mlbox:resnet50-cpu-synthetic-tflite-fp32",
        "mlbox:resnet50-cpu-synthetic-tflite-noargmax",
        "mlbox:resnet50-cpu-synthetic-tflite-int8",
    }
    assert {c.tag for c in matrix(catalog, backend="tensorflow")} == {
        "mlbox:resnet50-cpu-tensorflow-fp32",
        "mlbox:resnet50-cuda-tensorflow-fp32",
        "mlbox:resnet50-cpu-synthetic-tensorflow-fp32",
        "mlbox:resnet50-cuda-synthetic-tensorflow-fp32",
    }


def test_plan_orders_layers_by_change_frequency(catalog) -> None:  # type: ignore[no-untyped-def]
    plan = make_plan(select(catalog, model="resnet50", device="cpu", variant="synthetic"), templates())
    text = plan.dockerfile
    order = [
        "FROM python:3.11-slim-bookworm AS deps",
        "FROM deps AS loadgen",
        "FROM python:3.11-slim-bookworm AS runtime",
        "COPY --from=deps",
        "COPY --from=loadgen",
        "COPY model/",
        'ENTRYPOINT ["mlbox-bench"]',
        "COPY app/",  # the harness changes most often: only labels come after it
        "LABEL",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert text.count("ENTRYPOINT") == 1
    assert "USER 10001:10001" in text
    assert ("mlbox.weights", "synthetic") in plan.labels


def test_base_image_override_reaches_every_stage(catalog) -> None:  # type: ignore[no-untyped-def]
    spec = select(catalog, model="resnet50", device="cpu", base_image="mlbox-base:bookworm")
    text = make_plan(spec, templates()).dockerfile
    assert text.count("FROM mlbox-base:bookworm AS") == 2
    assert "python:3.11" not in text.split("LABEL")[0].replace("python3", "")


def test_two_different_images_never_share_a_tag(catalog) -> None:  # type: ignore[no-untyped-def]
    """Every axis that changes what an image carries (variant, backend, device, NVIDIA's base
    image, LoadGen from source) changes its tag: across the whole matrix, one tag, one Dockerfile."""
    from mlbox.plan import matrix

    dockerfiles: dict[str, set[str]] = {}
    for cuda_from in ("pip", "nvidia"):
        for loadgen_from in ("wheel", "source"):
            for c in matrix(catalog, cuda_from=cuda_from, loadgen_from=loadgen_from):
                if c.spec is not None:
                    dockerfiles.setdefault(c.tag, set()).add(make_plan(c.spec, templates()).dockerfile)
    assert {tag for tag, texts in dockerfiles.items() if len(texts) > 1} == set()
    assert "mlbox:resnet50-cuda-nvidiabase-loadgen-source" in dockerfiles
    assert "mlbox:resnet50-cpu-synthetic-loadgen-source" in dockerfiles
    assert len(dockerfiles) > 40


def test_the_source_label_comes_from_the_catalog_or_is_left_out(catalog) -> None:  # type: ignore[no-untyped-def]
    spec = select(catalog, model="resnet50", device="cpu")
    assert "org.opencontainers.image.source" not in dict(make_plan(spec, templates()).labels)
    own = catalog.model_copy(
        update={"defaults": catalog.defaults.model_copy(update={"source": "https://git.example.com/ml/images"})}
    )
    labels = dict(make_plan(select(own, model="resnet50", device="cpu"), templates()).labels)
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/ml/images"
