from __future__ import annotations

import pytest
import yaml

from mlbox.catalog import load_catalog, parse_catalog
from mlbox.errors import CatalogError
from mlbox.paths import templates_dir
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


def test_variant_on_an_unbuildable_backend_is_listed_but_refused() -> None:
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["models"]["resnet50"]["variants"]["pytorch-fp32"] = {
        "description": "ResNet50 PyTorch fp32",
        "framework": "pytorch",
        "precision": "fp32",
        "backend": "pytorch",
        "file": "resnet50-19c8e357.pth",
        "url": "https://zenodo.org/record/4588417/files/resnet50-19c8e357.pth",
        "md5": "9e9c86b324d80e65229fab49b8d9a8e8",
    }
    catalog = parse_catalog(yaml.safe_dump(data))
    assert "pytorch-fp32" in catalog.models["resnet50"].variants
    with pytest.raises(CatalogError, match="needs the 'pytorch' backend, which mlbox cannot build"):
        select(catalog, model="resnet50", device="cpu", variant="pytorch-fp32")


def test_plan_orders_layers_by_change_frequency(catalog) -> None:  # type: ignore[no-untyped-def]
    plan = make_plan(select(catalog, model="resnet50", device="cpu", variant="synthetic"), templates_dir())
    text = plan.dockerfile
    order = [
        "FROM python:3.11-slim-bookworm AS deps",
        "FROM deps AS loadgen",
        "FROM python:3.11-slim-bookworm AS runtime",
        "COPY --from=deps",
        "COPY --from=loadgen",
        "COPY model/",
        "COPY app/",
        'ENTRYPOINT ["mlbox-bench"]',
        "LABEL",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert text.count("ENTRYPOINT") == 1
    assert "USER 10001:10001" in text
    assert ("mlbox.weights", "synthetic") in plan.labels


def test_base_image_override_reaches_every_stage(catalog) -> None:  # type: ignore[no-untyped-def]
    spec = select(catalog, model="resnet50", device="cpu", base_image="mlbox-base:bookworm")
    text = make_plan(spec, templates_dir()).dockerfile
    assert text.count("FROM mlbox-base:bookworm AS") == 2
    assert "python:3.11" not in text.split("LABEL")[0].replace("python3", "")
