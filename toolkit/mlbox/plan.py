"""Pure planning: from a catalog and a selection to everything a build needs.

Nothing here touches Docker, the network or the disk (templates are read, never
written), so all of it is unit-tested. The build executor (build.py) only walks a plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Literal

from mlbox import __version__, layout
from mlbox.catalog import Catalog, Variant, check_image_ref, choose
from mlbox.errors import CatalogError
from mlbox.render import render_dockerfile, template_hash
from mlbox.spec import ImageSpec


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
    cuda_from: str = "pip",
    loadgen_from: str = "wheel",
    default_base: str | None = None,
) -> Cell:
    """Plan one (model, variant, device); names are already known to be in the catalog.
    ``base_image`` was asked for on this command line; ``default_base`` is the user's
    configured default, the plain base, which NVIDIA's base-image route does not take."""
    entry = catalog.models[model]
    vspec = entry.variants[variant]
    backend = vspec.backend
    bspec = catalog.backends[backend]
    defaults = catalog.defaults
    dev = catalog.devices[device]
    pip_cuda = dev.cuda_pip is not None and cuda_from == "pip"
    nvidia_base = dev.cuda_pip is not None and cuda_from == "nvidia"
    base_image = base_image or (None if nvidia_base else default_base)
    lg_from: Literal["wheel", "source"] = "source" if loadgen_from == "source" else "wheel"
    tag = image_tag(
        defaults.registry,
        model=model,
        device=device,
        variant=None if variant == entry.default_variant else variant,
        backend=None if backend == defaults.backend else backend,
        nvidia_base=nvidia_base,
        loadgen_source=lg_from == "source",
    )
    packages = bspec.packages.get(device)
    if bspec.missing is not None:
        return Cell(model, variant, device, backend, tag, None, bspec.missing)
    if dev.cuda_pip is not None and bspec.cuda_from is not None and cuda_from != bspec.cuda_from:
        why = f"its own CUDA route, --cuda-from {bspec.cuda_from} (its wheels bring their own CUDA)"
        return Cell(model, variant, device, backend, tag, None, why)
    if packages is None:
        return Cell(model, variant, device, backend, tag, None, f"pinned {backend} packages for {device}")
    # What the device's route decides: the base image and its Python, NVIDIA's wheels.
    python, wheel_platform = dev.python or defaults.python, dev.wheel_platform or defaults.wheel_platform
    base = base_image or dev.base_image or defaults.base_image
    nvidia: tuple[str, ...] = ()
    library_dirs: tuple[str, ...] = ()
    apt = dev.python_from_apt and not base_image  # NVIDIA's image has no Python: Ubuntu's, from apt
    route = "nvidia" if dev.execution_provider.startswith("CUDA") else None
    if pip_cuda and dev.cuda_pip is not None:
        # No NVIDIA base image: the catalog's default Python and glibc, and NVIDIA's runtime
        # wheels unless the backend's own wheels carry CUDA.
        python, wheel_platform = defaults.python, defaults.wheel_platform
        base, apt, route = base_image or defaults.base_image, False, "pip"
        if not bspec.bundles_cuda:
            nvidia, library_dirs = dev.cuda_pip.packages, dev.cuda_pip.library_dirs
    spec = ImageSpec(
        model=model,
        mlperf_name=entry.mlperf_name,
        task=entry.task,
        variant=variant,
        variant_spec=vspec,
        device=device,
        backend=backend,
        execution_provider=dev.execution_provider,
        packages=(*packages, *nvidia, *defaults.harness_packages),
        loadgen=defaults.loadgen,
        python=python,
        wheel_platform=wheel_platform,
        base_image=base,
        tag=tag,
        cuda_from=route,
        python_from_apt=apt,
        python_apt=dev.python_apt if apt else (),
        library_dirs=library_dirs,
        backend_package=bspec.package,
        index=bspec.index.get(device),
        source_variant=entry.variants[vspec.derive.source] if vspec.derive else None,
        ep_options=tuple(dev.ep_options.items()),
        source=defaults.source,
        loadgen_from=lg_from,
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
    cuda_from: str = "pip",
    loadgen_from: str = "wheel",
    default_base: str | None = None,
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
            variants = [choose("variant", variant, variants, of=m)]
        for v in variants:
            only = catalog.models[m].variants[v].devices
            for d in devices:
                if only is not None and d not in only:
                    continue  # the variant does not exist there (an fbgemm int8 model on cuda)
                c = cell(
                    catalog,
                    m,
                    v,
                    d,
                    base_image=base_image,
                    cuda_from=cuda_from,
                    loadgen_from=loadgen_from,
                    default_base=default_base,
                )
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
    cuda_from: str = "pip",
    loadgen_from: str = "wheel",
    default_base: str | None = None,
) -> ImageSpec:
    """Resolve a user's selection against the catalog, refusing unknown names and cells
    mlbox cannot build (with what is missing)."""
    model = choose("model", model, list(catalog.models))
    entry = catalog.models[model]
    device = choose("device", device, list(catalog.devices))
    variant = choose("variant", variant or entry.default_variant, list(entry.variants), of=model)
    own = entry.variants[variant].backend
    if backend is not None and backend != own:
        msg = f"variant {model}/{variant} runs on backend {own!r}, not {backend!r}"
        raise CatalogError(msg, hint=f"drop --backend or pass --backend {own}")
    if cuda_from not in ("pip", "nvidia"):
        msg = f"--cuda-from {cuda_from!r}: expected 'pip' or 'nvidia'"
        raise CatalogError(msg)
    if loadgen_from not in ("wheel", "source"):
        msg = f"--loadgen-from {loadgen_from!r}: expected 'wheel' or 'source'"
        raise CatalogError(msg)
    own_route = catalog.backends[own].cuda_from
    if own_route is not None and cuda_from != own_route and catalog.devices[device].cuda_pip:
        msg = (
            f"{own} cuda images come one way only, --cuda-from {own_route}: its wheels bring their own CUDA, "
            f"which NVIDIA's base image would contradict"
        )
        raise CatalogError(msg, hint=f"drop --cuda-from (or pass --cuda-from {own_route})")
    only = entry.variants[variant].devices
    if only is not None and device not in only:
        msg = f"variant {model}/{variant} exists for {', '.join(only)} only, not {device}"
        raise CatalogError(msg, hint=f"pick --device {only[0]}, or another variant (`mlbox list`)")
    c = cell(
        catalog,
        model,
        variant,
        device,
        base_image=base_image,
        cuda_from=cuda_from,
        loadgen_from=loadgen_from,
        default_base=default_base,
    )
    if c.spec is None:
        msg = f"mlbox cannot build {model}/{variant} for {device} yet: it needs {c.missing}"
        if catalog.backends[c.backend].missing is None:
            hint = f"add backends.{c.backend}.packages.{device} to the catalog"
        else:
            hint = f"mlbox-bench has no {c.backend} backend yet"
        raise CatalogError(msg, hint=hint + "; `mlbox list` shows what can be built")
    return c.spec


def image_tag(
    repository: str,
    *,
    model: str,
    device: str,
    variant: str | None,
    backend: str | None,
    nvidia_base: bool = False,
    loadgen_source: bool = False,
) -> str:
    """The one place tags are made: `mlbox:<model>-<device>`, plus a part for every axis
    that changes what the image carries when it is not the default: the variant, the
    backend (only once: `pytorch-fp32` already says pytorch), NVIDIA's base image
    (`-nvidiabase`) and LoadGen compiled from source (`-loadgen-source`). So two different
    images never share a tag. The base image under a build (`--base-image`) is not an axis:
    it is the platform the same recipe is installed on, and its label names it."""
    parts = [model, device, *(p for p in (variant,) if p)]
    if backend and backend not in (variant or "").split("-"):
        parts.append(backend)
    if nvidia_base:
        parts.append("nvidiabase")
    if loadgen_source:
        parts.append("loadgen-source")
    return f"{repository}:{'-'.join(parts)}"


LAUNCHER = """#!/usr/bin/env python3
# mlbox-bench: the image's entrypoint (generated by mlbox).
from mlbox_bench.cli import main

raise SystemExit(main())
"""


@dataclass(frozen=True)
class Wheelhouse:
    """Python packages the executor resolves on the host into one build-context folder."""

    folder: str
    requirements: tuple[str, ...]
    no_deps: bool = False
    sdist: str | None = None  # fetch this requirement's sdist; ``requirements`` are its build needs
    index: str | None = None  # an extra package index the requirements come from


@dataclass(frozen=True)
class ContextEntry:
    """One entry of the build context: where it goes and what fills it.

    text: ``value`` is the file's content; model: the verified model file; wheelhouse:
    the resolved wheelhouse whose folder is ``value``; package: the installed Python
    package named ``value``, copied whole.
    """

    dest: str
    kind: Literal["text", "model", "wheelhouse", "package"]
    value: str = ""
    executable: bool = False


@dataclass(frozen=True)
class BuildPlan:
    """Everything the executor needs; it only walks this."""

    spec: ImageSpec
    dockerfile: str
    wheelhouses: tuple[Wheelhouse, ...]
    context: tuple[ContextEntry, ...]
    labels: tuple[tuple[str, str], ...]
    build_args: tuple[str, ...]  # names of the ARGs the executor must fill (label values)

    @property
    def loadgen_from(self) -> str:
        """ "wheel" (PyPI's wheel) or "source" (PyPI's sdist, compiled in a builder stage)."""
        return self.spec.loadgen_from

    @property
    def dockerfile_name(self) -> str:
        """`mlbox:resnet50-cpu-synthetic` -> `resnet50-cpu-synthetic.Dockerfile`."""
        return self.spec.tag.rsplit(":", 1)[-1] + ".Dockerfile"


def labels_for(spec: ImageSpec, template_sha256: str) -> tuple[tuple[str, str], ...]:
    """Static labels: known before any file is fetched. Per-build values come as ARGs."""
    v = spec.variant_spec
    source = _weights_source(v)
    if v.derive is not None and spec.source_variant is not None:
        source = f"converted by mlbox to {v.derive.convert} from {spec.source_variant.file}: " + _weights_source(
            spec.source_variant
        )
    return (
        ("org.opencontainers.image.title", f"mlbox {spec.model} ({spec.variant}) on {spec.device}"),
        ("org.opencontainers.image.description", f"MLPerf LoadGen benchmark image: {v.description}"),
        *((("org.opencontainers.image.source", spec.source),) if spec.source else ()),
        ("org.opencontainers.image.version", __version__),
        ("org.opencontainers.image.base.name", spec.base_image),
        ("mlbox.model", spec.model),
        ("mlbox.model.mlperf_name", spec.mlperf_name),
        ("mlbox.model.task", spec.task),
        ("mlbox.variant", spec.variant),
        ("mlbox.model.file", v.file),
        ("mlbox.model.framework", v.framework),
        ("mlbox.model.precision", v.precision),
        ("mlbox.weights", spec.weights),
        ("mlbox.weights.source", source),
        ("mlbox.device", spec.device),
        ("mlbox.backend", spec.backend),
        ("mlbox.backend.packages", " ".join(spec.packages)),
        ("mlbox.backend.version", _pinned_version(spec.packages, spec.backend_package)),
        ("mlbox.backend.index", spec.index or "pip's default index"),
        ("mlbox.loadgen.version", spec.loadgen),
        ("mlbox.loadgen.from", spec.loadgen_from),
        *((("mlbox.cuda.from", spec.cuda_from),) if spec.cuda_from else ()),
        ("mlbox.template.sha256", template_sha256),
    )


def _weights_source(v: Variant) -> str:
    if v.synthetic is not None:
        return f"synthetic: generated by mlbox ({v.synthetic.generator}, seed {v.synthetic.seed})"
    return v.url or ""


def image_defaults(spec: ImageSpec) -> tuple[tuple[str, str], ...]:
    """(mlbox-bench option, value): what the image tells its harness about itself. The
    execution provider is onnxruntime's own option; PyTorch runs on the device."""
    return (
        ("model", spec.mlperf_name),
        ("task", spec.task),
        ("modelpath", spec.model_path),
        ("model_format", spec.variant_spec.model_format),
        ("weights", spec.weights),
        ("output_dir", layout.RESULTS_DIR),
        ("device", spec.device),
        ("backend", spec.backend),
        *((("ep", spec.execution_provider),) if spec.backend == "onnxruntime" else ()),
        *(
            (("ep_options", ",".join(f"{k}={v}" for k, v in spec.ep_options)),)
            if spec.backend == "onnxruntime" and spec.ep_options
            else ()
        ),
    )


def _pinned_version(packages: tuple[str, ...], package: str) -> str:
    """The version of the backend's own package (onnxruntime==1.32.0 -> 1.32.0;
    onnxruntime-gpu counts as onnxruntime, tensorflow-cpu as tensorflow, torch==2.13.0+cpu
    as torch)."""
    for pin in packages:
        name, _, version = pin.partition("==")
        if name.split("[")[0].lower() in (package.lower(), f"{package.lower()}-gpu", f"{package.lower()}-cpu"):
            return version
    return "unknown"


def make_plan(
    spec: ImageSpec, templates: Traversable, *, loadgen_build_requirements: tuple[str, ...] = ()
) -> BuildPlan:
    labels = labels_for(spec, template_hash(templates))
    dockerfile = render_dockerfile(templates, spec, labels, image_defaults(spec))
    loadgen = f"mlcommons-loadgen=={spec.loadgen}"
    if spec.loadgen_from == "source":
        loadgen_house = Wheelhouse(layout.CONTEXT_LOADGEN_SRC, loadgen_build_requirements, sdist=loadgen)
    else:
        loadgen_house = Wheelhouse(layout.CONTEXT_LOADGEN, (loadgen,), no_deps=True)
    wheelhouses = (Wheelhouse(layout.CONTEXT_WHEELS, spec.packages, index=spec.index), loadgen_house)
    context = (
        ContextEntry("Dockerfile", "text", dockerfile),
        *(ContextEntry(w.folder, "wheelhouse", w.folder) for w in wheelhouses),
        ContextEntry(f"{layout.CONTEXT_MODEL}/{spec.variant_spec.file}", "model"),
        ContextEntry(f"{layout.CONTEXT_APP}/{layout.HARNESS_PACKAGE}", "package", layout.HARNESS_PACKAGE),
        ContextEntry(layout.LAUNCHER, "text", LAUNCHER, executable=True),
    )
    return BuildPlan(
        spec=spec,
        dockerfile=dockerfile,
        wheelhouses=wheelhouses,
        context=context,
        labels=labels,
        build_args=layout.BUILD_ARGS,
    )


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """What the user picked on the command line: one image, or filters with --all."""

    model: str | None = None
    device: str | None = None
    variant: str | None = None
    backend: str | None = None
    base_image: str | None = None
    loadgen_from: str = "wheel"
    cuda_from: str = "pip"
    default_base: str | None = None  # the configuration file's base_image (see cell)


def plans_for(
    catalog: Catalog, sel: Selection, templates: Traversable, *, all_: bool
) -> tuple[list[BuildPlan], list[Cell]]:
    """One plan (a --model selection) or, with --all, one per buildable cell the filters
    allow. Returns (plans, cells skipped because mlbox cannot build them yet)."""
    for base in (sel.base_image, sel.default_base):
        if base is not None:
            check_image_ref(base, what="--base-image")
    skipped: list[Cell] = []
    if all_:
        cells = matrix(
            catalog,
            model=sel.model,
            device=sel.device,
            variant=sel.variant,
            backend=sel.backend,
            base_image=sel.base_image,
            cuda_from=sel.cuda_from,
            loadgen_from=sel.loadgen_from,
            default_base=sel.default_base,
        )
        skipped = [c for c in cells if c.spec is None]
        specs = [c.spec for c in cells if c.spec is not None]
        if not specs:
            msg = "no buildable image matches these filters"
            raise CatalogError(msg, hint="`mlbox list` shows every image and why some cannot be built")
    else:
        if sel.model is None:
            msg = "pick an image with --model (and --device, --variant), or pass --all"
            raise CatalogError(msg, hint="`mlbox list` shows what exists")
        specs = [
            select(
                catalog,
                model=sel.model,
                device=sel.device or "cpu",
                variant=sel.variant,
                backend=sel.backend,
                base_image=sel.base_image,
                cuda_from=sel.cuda_from,
                loadgen_from=sel.loadgen_from,
                default_base=sel.default_base,
            )
        ]
    build_requires = catalog.defaults.loadgen_build_requires
    plans = [make_plan(spec, templates, loadgen_build_requirements=build_requires) for spec in specs]
    return plans, skipped
