"""The integration tier's images: the walking skeleton (a tiny ONNX model served over HTTP
on 127.0.0.1, built into the onnxruntime image) and the other image families, each built
once per run (per pytest-xdist worker) on a tiny twin of its own: the colour classifier of
tests/support/colors.py as a TorchScript file, a frozen TensorFlow graph and a fully
quantized TFLite file. A family's tests are one class, which pytest-xdist (--dist loadscope)
runs in one worker, so its image is built once.

Every image is tagged in the run's namespace (tests/support/engine.py), never in `mlbox`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FileServer, md5_of
from tests.support.engine import Mlbox, write_catalog


def tiny_model_row(file: str, url: str, md5: str, *, framework: str, backend: str, **extra: str) -> dict[str, Any]:
    """A catalog model whose one variant is a test's file served on 127.0.0.1."""
    variant = {
        "description": "served over HTTP by the test",
        "framework": framework,
        "precision": "fp32",
        "backend": backend,
        "file": file,
        "url": url,
        "md5": md5,
        **extra,
    }
    return {
        "description": "tiny test model with the ResNet50 I/O names (SYNTHETIC weights)",
        "mlperf_name": "resnet50",
        "task": "classification",
        "default_variant": "served",
        "variants": {"served": variant},
    }


def catalog_with(directory: Path, namespace: str, model: str, url: str, md5: str, file: str = "tiny.onnx") -> Path:
    """The run's catalog plus an ONNX test model named ``model`` whose file is at ``url``."""
    row = tiny_model_row(file, url, md5, framework="onnx", backend="onnxruntime")
    return write_catalog(directory / f"{model}.yaml", namespace, {model: row})


@dataclass(frozen=True)
class Served:
    tag: str
    model: Path
    catalog: Path  # its model is in the shared cache (the server is gone afterwards)


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, base_image: str, mlbox: Mlbox, namespace: str
) -> Served:
    """The tiny model served over HTTP on 127.0.0.1 and built into NAMESPACE:tiny-cpu, once."""
    tmp = tmp_path_factory.mktemp("served")
    server = FileServer(tmp)
    (tmp / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    server.thread.start()
    try:
        catalog = catalog_with(tmp, namespace, "tiny", server.url("tiny.onnx"), md5_of(tiny_model))
        result = mlbox(
            "build",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--base-image",
            base_image,
            env={"MLBOX_CATALOG": str(catalog)},
        )
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert result.returncode == 0, result.stderr[-4000:]
    assert server.requests, "the model was not downloaded from the test server"
    assert "Step 1/" in result.stderr  # build output streamed to stderr
    tag = result.stdout.strip().splitlines()[-1]
    assert tag == f"{namespace}:tiny-cpu"
    return Served(tag, tiny_model, catalog)


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class FamilySpec:
    """An image family's tiny twin: how to make it and its catalog row."""

    backend: str
    file: str  # the twin's file name (its format follows)
    framework: str
    make: Callable[[Path], Path]  # writes the twin to the path given
    extra: tuple[tuple[str, str], ...]  # more of the variant's catalog fields
    version: str  # the backend's version the image's label must say
    twin: str  # the ResNet-50-shaped synthetic generator of this backend
    twin_file: str


def _torch(path: Path) -> Path:
    from tests.support.colors import colour_classifier_torch

    return colour_classifier_torch(path)


def _tf(fmt: str) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        from tests.support.colors import colour_classifier_tf

        return colour_classifier_tf(path, fmt)

    return make


def _onnx(path: Path) -> Path:
    from tests.support.colors import colour_classifier

    return colour_classifier(path)


FAMILIES = {
    "onnxruntime": FamilySpec(
        "onnxruntime", "colour.onnx", "onnx", _onnx, (), "1.32.0", "resnet50", "resnet50_v15_synthetic.onnx"
    ),
    "pytorch": FamilySpec(
        "pytorch",
        "colour.pt",
        "pytorch",
        _torch,
        (("format", "torchscript"),),
        "2.13.0+cpu",
        "resnet50-torch",
        "resnet50_v15_synthetic.pt",
    ),
    "tensorflow": FamilySpec(
        "tensorflow",
        "colour.pb",
        "tensorflow",
        _tf("frozen-graph"),
        (),
        "2.21.0",
        "resnet50-tf",
        "resnet50_v15_synthetic.pb",
    ),
    "tflite": FamilySpec(
        "tflite",
        "colour.tflite",
        "tflite",
        _tf("tflite-int8"),
        (("precision", "int8"),),
        "2.3.0",
        "resnet50-tflite",
        "resnet50_v15_synthetic.tflite",
    ),
}


@dataclass(frozen=True)
class Family:
    spec: FamilySpec
    tag: str
    model: Path  # the tiny twin baked into the image
    catalog: Path


@dataclass
class Families:
    """Builds each family's image the first time a test asks for it (then the same one)."""

    directory: Path
    namespace: str
    base_image: str
    mlbox: Mlbox
    built: dict[str, Family]

    def __getitem__(self, name: str) -> Family:
        if name not in self.built:
            self.built[name] = self._build(FAMILIES[name])
        return self.built[name]

    def _build(self, spec: FamilySpec) -> Family:
        root = self.directory / spec.backend
        root.mkdir()
        model = spec.make(root / spec.file)
        model.chmod(0o644)
        server = FileServer(root)
        server.thread.start()
        name = f"tiny{spec.backend}"
        try:
            row = tiny_model_row(
                spec.file,
                server.url(spec.file),
                md5_of(model),
                framework=spec.framework,
                backend=spec.backend,
                **dict(spec.extra),
            )
            catalog = write_catalog(root / "images.yaml", self.namespace, {name: row})
            built = self.mlbox(
                "build",
                "-m",
                name,
                "--base-image",
                self.base_image,
                "--json",
                env={"MLBOX_CATALOG": str(catalog)},
                timeout=1500,
            )
        finally:
            server.httpd.shutdown()
            server.httpd.server_close()
        assert built.returncode == 0, built.stderr[-4000:]
        import json

        [result] = json.loads(built.stdout)
        return Family(spec, result["tag"], model, catalog)


@pytest.fixture(scope="session")
def families(tmp_path_factory: pytest.TempPathFactory, namespace: str, base_image: str, mlbox: Mlbox) -> Families:
    return Families(tmp_path_factory.mktemp("families"), namespace, base_image, mlbox, {})


@pytest.fixture(scope="session")
def resnet50_twins(shared_cache: Path) -> Callable[[FamilySpec], Path]:
    """The ResNet-50-shaped synthetic twin of a family's backend, made (once) as `mlbox
    build` makes it, readable by any user (containers run as the caller or the image's own)."""
    from mlbox.catalog import Synthetic
    from mlbox.synthetic import synthetic_model

    def twin(spec: FamilySpec) -> Path:
        path = synthetic_model(
            Synthetic.model_validate({"generator": spec.twin, "seed": 0}), spec.twin_file, shared_cache
        )
        path.chmod(0o644)  # a bind-mounted file: its own mode is what the container's user meets
        return path

    return twin
