"""Pure planning: from a catalog and a selection to everything a build needs.

Nothing here touches Docker, the network or the disk, so all of it is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlbox import __version__
from mlbox.catalog import Catalog, Variant, choose
from mlbox.errors import CatalogError

# Backends whose images mlbox can build today. Variants on other backends stay in the
# catalog (users see them in `mlbox list`) but selecting them is refused, naming the gap.
BUILDABLE_BACKENDS = frozenset({"onnxruntime"})
MISSING = {
    "pytorch": "a PyTorch backend in mlbox-bench",
    "tensorflow": "a TensorFlow backend in mlbox-bench",
    "tflite": "a TFLite backend in mlbox-bench",
}

# Where things live inside every image. The entrypoint reads the MLBOX_* defaults.
IMAGE_ROOT = "/opt/mlbox"
MODEL_DIR = f"{IMAGE_ROOT}/model"
RESULTS_DIR = "/results"
IMAGE_UID = 10001
SOURCE_URL = "https://github.com/mlbox/mlbox"


@dataclass(frozen=True)
class ImageSpec:
    """One cell of the image matrix: a model variant on a device with a backend."""

    model: str
    mlperf_name: str
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
    cuda_from: str | None = None  # cuda images: "nvidia" (NVIDIA's base image) or "pip" (NVIDIA's wheels)
    python_from_apt: bool = False
    library_dirs: tuple[str, ...] = ()  # LD_LIBRARY_PATH entries under the packages dir

    @property
    def model_path(self) -> str:
        return f"{MODEL_DIR}/{self.variant_spec.file}"

    @property
    def weights(self) -> str:
        """'synthetic' or 'published': shown on every surface a model appears on."""
        return "synthetic" if self.variant_spec.is_synthetic else "published"


@dataclass(frozen=True)
class Cell:
    """One row of the image matrix: buildable (``spec``) or not (``missing`` says why)."""

    model: str
    variant: str
    device: str
    backend: str
    tag: str
    spec: ImageSpec | None
    missing: str | None


def cell(
    catalog: Catalog,
    model: str,
    variant: str,
    device: str,
    *,
    base_image: str | None = None,
    cuda_from: str = "nvidia",
) -> Cell:
    """Plan one (model, variant, device); names are already known to be in the catalog."""
    entry = catalog.models[model]
    vspec = entry.variants[variant]
    backend = vspec.backend
    defaults = catalog.defaults
    dev = catalog.devices[device]
    pip_cuda = dev.cuda_pip is not None and cuda_from == "pip"
    tag = image_tag(
        defaults.registry,
        model=model,
        device=device,
        variant=None if variant == entry.default_variant else variant,
        backend=None if backend == defaults.backend else backend,
    ) + ("-cudapip" if pip_cuda else "")
    missing: str | None = None
    packages = catalog.backends[backend].packages.get(device)
    if backend not in BUILDABLE_BACKENDS:
        missing = MISSING.get(backend, f"a {backend} backend in mlbox-bench")
    elif packages is None:
        missing = f"pinned {backend} packages for {device}"
    if missing is not None or packages is None:
        return Cell(model, variant, device, backend, tag, None, missing)
    if pip_cuda and dev.cuda_pip is not None:
        # NVIDIA's runtime wheels on the plain base: the catalog's default Python and glibc.
        spec = ImageSpec(
            model=model, mlperf_name=entry.mlperf_name, variant=variant, variant_spec=vspec, device=device,
            backend=backend, execution_provider=dev.execution_provider,
            packages=(*packages, *dev.cuda_pip.packages, *defaults.harness_packages), loadgen=defaults.loadgen,
            python=defaults.python, wheel_platform=defaults.wheel_platform,
            base_image=base_image or defaults.base_image, tag=tag, cuda_from="pip",
            library_dirs=dev.cuda_pip.library_dirs,
        )  # fmt: skip
        return Cell(model, variant, device, backend, tag, spec, None)
    spec = ImageSpec(
        model=model,
        mlperf_name=entry.mlperf_name,
        variant=variant,
        variant_spec=vspec,
        device=device,
        backend=backend,
        execution_provider=dev.execution_provider,
        packages=(*packages, *defaults.harness_packages),
        loadgen=defaults.loadgen,
        python=dev.python or defaults.python,
        wheel_platform=dev.wheel_platform or defaults.wheel_platform,
        base_image=base_image or dev.base_image or defaults.base_image,
        tag=tag,
        cuda_from="nvidia" if dev.execution_provider.startswith("CUDA") else None,
        python_from_apt=dev.python_from_apt and not base_image,
    )
    return Cell(model, variant, device, backend, tag, spec, None)


def matrix(
    catalog: Catalog,
    *,
    model: str | None = None,
    device: str | None = None,
    variant: str | None = None,
    backend: str | None = None,
    base_image: str | None = None,
    cuda_from: str = "nvidia",
) -> list[Cell]:
    """Every (model, variant, device) the filters allow, buildable or not, in catalog order."""
    models = [choose("model", model, list(catalog.models))] if model else list(catalog.models)
    devices = [choose("device", device, list(catalog.devices))] if device else list(catalog.devices)
    if backend:
        choose("backend", backend, list(catalog.backends))
    cells = []
    for m in models:
        variants = list(catalog.models[m].variants)
        if variant:
            variants = [choose(f"variant of {m}", variant, variants)]
        for v in variants:
            for d in devices:
                c = cell(catalog, m, v, d, base_image=base_image, cuda_from=cuda_from)
                if backend is None or c.backend == backend:
                    cells.append(c)
    return cells


def select(
    catalog: Catalog,
    *,
    model: str,
    device: str,
    variant: str | None = None,
    backend: str | None = None,
    base_image: str | None = None,
    cuda_from: str = "nvidia",
) -> ImageSpec:
    """Resolve a user's selection against the catalog, refusing unknown names and cells
    mlbox cannot build (with what is missing)."""
    model = choose("model", model, list(catalog.models))
    entry = catalog.models[model]
    device = choose("device", device, list(catalog.devices))
    variant = choose(f"variant of {model}", variant or entry.default_variant, list(entry.variants))
    own = entry.variants[variant].backend
    if backend is not None and backend != own:
        msg = f"variant {model}/{variant} runs on backend {own!r}, not {backend!r}"
        raise CatalogError(msg, hint=f"drop --backend or pass --backend {own}")
    if cuda_from not in ("nvidia", "pip"):
        msg = f"--cuda-from {cuda_from!r}: expected 'nvidia' or 'pip'"
        raise CatalogError(msg)
    if cuda_from == "pip" and catalog.devices[device].cuda_pip is None:
        msg = f"--cuda-from pip applies to cuda devices; {device!r} has no NVIDIA wheels in the catalog"
        raise CatalogError(msg, hint="drop --cuda-from, or pick --device cuda")
    c = cell(catalog, model, variant, device, base_image=base_image, cuda_from=cuda_from)
    if c.spec is None:
        msg = f"mlbox cannot build {model}/{variant} for {device} yet: it needs {c.missing}"
        if c.backend not in BUILDABLE_BACKENDS:
            hint = "mlbox-bench runs ONNX models with onnxruntime only (entrypoints/mlbox_bench/backend.py)"
        else:
            hint = f"add backends.{c.backend}.packages.{device} to the catalog"
        raise CatalogError(msg, hint=hint + "; `mlbox list` shows what can be built")
    return c.spec


def image_tag(repository: str, *, model: str, device: str, variant: str | None, backend: str | None) -> str:
    """`mlbox:<model>-<device>`, with the variant and backend added when not the default."""
    parts = [model, device, *(p for p in (variant, backend) if p)]
    return f"{repository}:{'-'.join(parts)}"


@dataclass(frozen=True)
class BuildPlan:
    """Everything the executor needs; it only walks this."""

    spec: ImageSpec
    dockerfile: str
    requirements: tuple[str, ...]  # resolved into the wheelhouse on the host
    loadgen_requirement: str
    loadgen_from: str  # "wheel" (PyPI's wheel) or "source" (PyPI's sdist, compiled in a builder stage)
    loadgen_build_requirements: tuple[str, ...]  # what compiling the sdist needs (source only)
    labels: tuple[tuple[str, str], ...]
    build_args: tuple[str, ...]  # names of the ARGs the executor must fill (label values)


def labels_for(spec: ImageSpec, template_hash: str, loadgen_from: str = "wheel") -> tuple[tuple[str, str], ...]:
    """Static labels: known before any file is fetched. Per-build values come as ARGs."""
    v = spec.variant_spec
    if v.synthetic is not None:
        source = f"synthetic: generated by mlbox ({v.synthetic.generator}, seed {v.synthetic.seed})"
    else:
        source = v.url or ""
    return (
        ("org.opencontainers.image.title", f"mlbox {spec.model} ({spec.variant}) on {spec.device}"),
        ("org.opencontainers.image.description", f"MLPerf LoadGen benchmark image: {v.description}"),
        ("org.opencontainers.image.source", SOURCE_URL),
        ("org.opencontainers.image.version", __version__),
        ("org.opencontainers.image.base.name", spec.base_image),
        ("mlbox.model", spec.model),
        ("mlbox.model.mlperf_name", spec.mlperf_name),
        ("mlbox.variant", spec.variant),
        ("mlbox.model.file", v.file),
        ("mlbox.model.framework", v.framework),
        ("mlbox.model.precision", v.precision),
        ("mlbox.weights", spec.weights),
        ("mlbox.weights.source", source),
        ("mlbox.device", spec.device),
        ("mlbox.backend", spec.backend),
        ("mlbox.backend.packages", " ".join(spec.packages)),
        ("mlbox.backend.version", _pinned_version(spec.packages, spec.backend)),
        ("mlbox.loadgen.version", spec.loadgen),
        ("mlbox.loadgen.from", loadgen_from),
        *((("mlbox.cuda.from", spec.cuda_from),) if spec.cuda_from else ()),
        ("mlbox.template.sha256", template_hash),
    )


# ARG names the executor fills at build time; declared right before the labels so a
# new value only rebuilds the label layer.
BUILD_ARGS = ("MLBOX_CREATED", "MLBOX_MODEL_SHA256")


def _pinned_version(packages: tuple[str, ...], backend: str) -> str:
    """The backend's own pin (onnxruntime==1.32.0 -> 1.32.0; onnxruntime-gpu counts too)."""
    for pin in packages:
        name, _, version = pin.partition("==")
        if name.split("[")[0].lower() in (backend, f"{backend}-gpu"):
            return version
    return "unknown"


def make_plan(
    spec: ImageSpec,
    templates_dir: Path,
    *,
    loadgen_from: str = "wheel",
    loadgen_build_requirements: tuple[str, ...] = (),
) -> BuildPlan:
    from mlbox.render import render_dockerfile, template_hash

    if loadgen_from not in ("wheel", "source"):
        msg = f"--loadgen-from {loadgen_from!r}: expected 'wheel' or 'source'"
        raise CatalogError(msg)
    thash = template_hash(templates_dir)
    labels = labels_for(spec, thash, loadgen_from)
    dockerfile = render_dockerfile(templates_dir, spec, labels, loadgen_from=loadgen_from)
    return BuildPlan(
        spec=spec,
        dockerfile=dockerfile,
        requirements=spec.packages,
        loadgen_requirement=f"mlcommons-loadgen=={spec.loadgen}",
        loadgen_from=loadgen_from,
        loadgen_build_requirements=loadgen_build_requirements if loadgen_from == "source" else (),
        labels=labels,
        build_args=BUILD_ARGS,
    )
