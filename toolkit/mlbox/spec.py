"""One cell of the image matrix, resolved: what the planner decides and the templates read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlbox.catalog import Variant
from mlbox.layout import MODEL_DIR


@dataclass(frozen=True)
class ImageSpec:
    """A model variant on a device with a backend, with everything its image needs."""

    model: str
    mlperf_name: str
    task: str  # what mlbox-bench does with the model: classification or detection
    variant: str
    variant_spec: Variant
    device: str
    backend: str
    execution_provider: str
    packages: tuple[str, ...]
    loadgen: str
    python: str
    wheel_platform: str
    base_image: str
    tag: str
    cuda_from: str | None = None  # cuda images: "pip" (NVIDIA's wheels) or "nvidia" (NVIDIA's base image)
    python_from_apt: bool = False
    python_apt: tuple[str, ...] = ()  # pinned distribution packages for Python (apt, inside the build)
    library_dirs: tuple[str, ...] = ()  # LD_LIBRARY_PATH entries under the packages dir
    source_variant: Variant | None = None  # a derived variant's source (fetched, then converted)
    backend_package: str = ""  # the distribution whose version labels the image (torch, onnxruntime)
    index: str | None = None  # the package index the backend's pins come from (None: pip's default)
    ep_options: tuple[tuple[str, str], ...] = ()  # the device's onnxruntime provider options
    source: str | None = None  # the catalog's defaults.source: where the images' source lives
    loadgen_from: Literal["wheel", "source"] = "wheel"  # PyPI's wheel, or its sdist compiled in a builder stage

    @property
    def model_path(self) -> str:
        return f"{MODEL_DIR}/{self.variant_spec.file}"

    @property
    def weights(self) -> str:
        """'synthetic' or 'published': shown on every surface a model appears on."""
        source = self.source_variant
        synthetic = self.variant_spec.is_synthetic or (source is not None and source.is_synthetic)
        return "synthetic" if synthetic else "published"
