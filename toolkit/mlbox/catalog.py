"""The catalog (images.yaml): loaded once, validated completely, then typed and frozen.

Every value that can reach a Dockerfile, a tag or a shell is checked here against a
strict pattern, so the templates can trust what they are given.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlbox import yamlfile
from mlbox.errors import CatalogError, quote
from mlbox.files import NotText, read_text
from mlbox.reference import parse_reference
from mlbox_bench.errors import did_you_mean

# Names become parts of tags, file names and Dockerfile lines: keep them boring.
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s\"'`$\\]+$")]
Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# An exact pin: reproducible images need exact versions, ranges are refused.
Pin = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[a-z0-9,_-]+\])?==[A-Za-z0-9.+!_-]+$")]


def _image_ref(text: str) -> str:
    parse_reference(text)  # ValueError: pydantic reports it at the field's path
    return text


ImageRef = Annotated[str, AfterValidator(_image_ref)]
Version = Annotated[str, Field(pattern=r"^[0-9][A-Za-z0-9.+_-]*$")]
Text = Annotated[str, Field(pattern=r"^[^\n\r\"\\`$]*$", max_length=300)]
OptionKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
OptionValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Defaults(_Frozen):
    base_image: ImageRef
    python: Annotated[str, Field(pattern=r"^3\.[0-9]{1,2}$")]
    wheel_platform: Annotated[str, Field(pattern=r"^manylinux_2_[0-9]+_x86_64$")]
    loadgen: Version
    loadgen_build_requires: tuple[Pin, ...] = ()
    backend: Name
    registry: ImageRef = "mlbox"
    # A model mirror for air-gapped sites: a copy of an mlbox cache's models/ directory
    # served over HTTP (MIRROR/<checksum>/<file>). --mirror / MLBOX_MIRROR override it.
    mirror: Url | None = None
    # What mlbox-bench itself imports besides the backend's packages (dataset decoding).
    harness_packages: tuple[Pin, ...] = ()
    # Where the source the images are built from lives (their org.opencontainers.image.source
    # label): a catalog that has a public home says it; without one the label is left out.
    source: Url | None = None


class CudaPip(_Frozen):
    """--cuda-from pip: NVIDIA's CUDA and cuDNN runtime wheels on the plain base image."""

    packages: tuple[Pin, ...]
    # Where those wheels put their shared libraries, relative to the packages dir: the
    # image's LD_LIBRARY_PATH, so onnxruntime finds them without an NVIDIA base image.
    library_dirs: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")], ...]


class Device(_Frozen):
    description: Text
    execution_provider: Annotated[str, Field(pattern=r"^[A-Za-z]+ExecutionProvider$")]
    # A device may need its own base (NVIDIA's CUDA runtime image), which brings its own
    # Python and glibc, so the wheelhouse must target them too.
    base_image: ImageRef | None = None
    python: Annotated[str, Field(pattern=r"^3\.[0-9]{1,2}$")] | None = None
    wheel_platform: Annotated[str, Field(pattern=r"^manylinux_2_[0-9]+_x86_64$")] | None = None
    # onnxruntime provider options an image sets by default (mlbox-bench --ep-options).
    ep_options: dict[OptionKey, OptionValue] = {}
    python_from_apt: bool = False  # the base has no Python: install Debian/Ubuntu's in a stage
    # Its exact packages (name=version, as apt takes them): the one thing a build fetches
    # from the network inside the build (the distribution's archive).
    python_apt: tuple[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.+-]*=[A-Za-z0-9.+:~-]+$")], ...] = ()
    cuda_pip: CudaPip | None = None


class Backend(_Frozen):
    description: Text
    # The distribution whose version the image's labels report (`onnxruntime`, `torch`);
    # a build with a suffix (`onnxruntime-gpu`, `tensorflow-cpu`) counts too.
    package: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    # Per device: exact pins of every package the backend needs, dependencies included.
    packages: dict[Name, tuple[Pin, ...]]
    # Per device: the package index the pins come from (default PyPI, which stays an
    # extra index for dependencies). Recorded in the image's labels and lock file.
    index: dict[Name, Url] = {}
    # The backend's own cuda packages carry CUDA and cuDNN (torch's wheels do): the cuda
    # device's NVIDIA runtime wheels (--cuda-from pip) are then not added.
    bundles_cuda: bool = False
    # The one CUDA route of this backend's cuda images, when it has no choice: "pip" when
    # the CUDA its wheels bring is another major version than the cuda device's NVIDIA base
    # image (TensorFlow 2.21's CUDA 12 wheels; the base image has CUDA 13), so its images
    # start from the plain base image with those wheels, as --cuda-from pip builds.
    cuda_from: Literal["pip"] | None = None
    # Set while mlbox-bench has no harness backend of this name: the catalog keeps its
    # variants (`mlbox list` shows them) and says what building them needs.
    missing: Text | None = None

    @model_validator(mode="after")
    def _own_cuda_is_bundled(self) -> Backend:
        if self.cuda_from == "pip" and not self.bundles_cuda:
            msg = "cuda_from: pip says the backend's own wheels bring CUDA: set bundles_cuda: true and pin them"
            raise ValueError(msg)
        return self


# How a model file is stored; the harness picks its loader (and its preprocessing and
# output offset) by this. Frameworks with one format need not say it.
Format = Literal["onnx", "torchscript", "torch-export", "state-dict", "frozen-graph", "saved-model", "tflite"]
DEFAULT_FORMATS: dict[str, Format] = {"onnx": "onnx", "tensorflow": "frozen-graph", "tflite": "tflite"}


class Synthetic(_Frozen):
    # resnet50 / tiny: ONNX graphs (synthetic.py); resnet50-torch(-int8): TorchScript made
    # with the harness's own ResNet-50 v1.5 (fp32 traced; int8 by post-training quantization);
    # resnet50-tf: a frozen TensorFlow ResNet-50 v1.5 graph, and resnet50-tflite(-noargmax,
    # -int8): TFLite files converted from it (synthetic_tf.py); retinanet: MLCommons' ONNX
    # RetinaNet graph, post-processing included (synthetic_retinanet.py).
    generator: Literal[
        "resnet50",
        "tiny",
        "resnet50-torch",
        "resnet50-torch-int8",
        "resnet50-tf",
        "resnet50-tflite",
        "resnet50-tflite-noargmax",
        "resnet50-tflite-int8",
        "retinanet",
    ]
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)]


class Derive(_Frozen):
    """A variant mlbox makes from another variant of the same model (verified first)."""

    source: Name  # the variant it is made from
    convert: Literal["fp16"]  # fp16: onnxruntime's float16 converter, fp32 inputs and outputs kept


class Variant(_Frozen):
    description: Text
    framework: Literal["onnx", "pytorch", "tensorflow", "tflite"]
    precision: Literal["fp32", "fp16", "int8"]
    backend: Name
    file: FileName
    url: Url | None = None
    md5: Md5 | None = None
    sha256: Sha256 | None = None
    # Some published files have no published checksum: say so explicitly; mlbox then
    # downloads nothing it cannot verify (a user's --model-file is accepted).
    checksum: Literal["unknown"] | None = None
    compression: Literal["gzip"] | None = None  # the URL serves the file compressed
    synthetic: Synthetic | None = None
    derive: Derive | None = None  # made by mlbox from another variant (no url, no synthetic)
    format: Format | None = None  # see Format; required where the framework has several
    devices: tuple[Name, ...] | None = None  # only these devices (an fbgemm int8 model runs on CPU only)

    @property
    def model_format(self) -> Format:
        """The file's format: given, or the framework's only one (checked at load)."""
        return self.format or DEFAULT_FORMATS[self.framework]

    @model_validator(mode="after")
    def _format_known(self) -> Variant:
        if self.format is None and self.framework not in DEFAULT_FORMATS:
            msg = f"a {self.framework} model needs 'format' (one of {', '.join(typing.get_args(Format))})"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _one_source(self) -> Variant:
        if sum(x is not None for x in (self.url, self.synthetic, self.derive)) != 1:
            msg = "give exactly one of 'url' (published weights), 'synthetic' or 'derive'"
            raise ValueError(msg)
        has_digest = self.md5 is not None or self.sha256 is not None
        if self.url is not None and not has_digest and self.checksum is None:
            msg = "a downloaded model needs 'md5' or 'sha256' to verify it (or 'checksum: unknown', said out loud)"
            raise ValueError(msg)
        if has_digest and self.checksum is not None:
            msg = "'checksum: unknown' contradicts the md5/sha256 given"
            raise ValueError(msg)
        return self

    @property
    def is_synthetic(self) -> bool:
        """Its own weights are synthetic (a derived variant: see Model.is_synthetic)."""
        return self.synthetic is not None


# The tasks mlbox-bench runs (mlbox_bench.tasks.TASKS; tests/unit/test_catalog.py holds the
# two to one list): an image of any other would be refused by its own harness.
TASKS = ("classification", "detection")


def _task(text: str) -> str:
    if text not in TASKS:
        msg = f"{text!r} is not a task mlbox-bench runs: one of {', '.join(TASKS)}{did_you_mean(text, TASKS)}"
        raise ValueError(msg)
    return text


class Model(_Frozen):
    description: Text
    mlperf_name: Name  # the model name LoadGen's mlperf.conf knows (case-sensitive)
    # What mlbox-bench does with its outputs (preprocessing, responses, accuracy): the image
    # says it (MLBOX_DEFAULT_TASK), so a model whose MLPerf name mlbox-bench does not know
    # still gets its task (a known name implies the same one).
    task: Annotated[str, AfterValidator(_task)]
    default_variant: Name
    variants: dict[Name, Variant]

    @model_validator(mode="after")
    def _default_exists(self) -> Model:
        if self.default_variant not in self.variants:
            msg = f"default_variant {self.default_variant!r} is not one of its variants ({', '.join(self.variants)})"
            raise ValueError(msg)
        for name, variant in self.variants.items():
            if variant.derive is None:
                continue
            source = self.variants.get(variant.derive.source)
            if source is None:
                choices = ", ".join(self.variants)
                msg = f"variants.{name}.derive.source {variant.derive.source!r} is not one of {choices}"
                raise ValueError(msg)
            if source.derive is not None or source.model_format != "onnx" or variant.model_format != "onnx":
                msg = f"variants.{name}: mlbox converts ONNX files it fetches or makes, not {variant.derive.source}"
                raise ValueError(msg)
        return self

    def is_synthetic(self, variant: str) -> bool:
        """Synthetic weights, its own or those of the variant it is made from."""
        v = self.variants[variant]
        return v.is_synthetic or (v.derive is not None and self.variants[v.derive.source].is_synthetic)


class Catalog(_Frozen):
    schema_version: Literal[1]
    defaults: Defaults
    devices: dict[Name, Device]
    backends: dict[Name, Backend]
    models: dict[Name, Model]


def _reference_problems(data: Mapping[str, Any]) -> list[str]:
    """Names one part of the catalog gives another (a variant's backend, a backend's devices)
    that do not resolve. Read from the raw mapping, so that they are found beside the schema's
    own problems, not only once everything else is right: a catalog's every problem is
    reported at once. Parts of the wrong shape are the schema's to report, and skipped here."""

    def mapping(value: object) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    def names(value: object) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list | tuple) else []

    def unknown(where: str, name: object, choices: Sequence[str]) -> str:
        return f"{where}: {name!r} is not one of {', '.join(choices)}{did_you_mean(name, choices)}"

    devices = [str(d) for d in mapping(data.get("devices"))]
    backends_data = mapping(data.get("backends"))
    backends = [str(b) for b in backends_data]
    problems: list[str] = []
    default_backend = mapping(data.get("defaults")).get("backend")
    if isinstance(default_backend, str) and default_backend not in backends:
        problems.append(unknown("defaults.backend", default_backend, backends))
    for backend_name, backend in backends_data.items():
        for key in ("packages", "index"):
            problems += [
                unknown(f"backends.{backend_name}.{key}: device", device, devices)
                for device in mapping(mapping(backend).get(key))
                if device not in devices
            ]
    for model_name, model in mapping(data.get("models")).items():
        for variant_name, variant in mapping(mapping(model).get("variants")).items():
            where = f"models.{model_name}.variants.{variant_name}"
            backend = mapping(variant).get("backend")
            if isinstance(backend, str) and backend not in backends:
                problems.append(unknown(f"{where}.backend", backend, backends))
            problems += [
                unknown(f"{where}.devices: device", device, devices)
                for device in names(mapping(variant).get("devices"))
                if device not in devices
            ]
    return problems


# --------------------------------------------------------------------------- loading


def load_catalog(path: Path | Traversable) -> Catalog:
    """Read and validate a catalog file (a path, or the packaged one); raise CatalogError
    naming every bad field."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        msg = f"catalog not found: {path}"
        raise CatalogError(msg, hint="pass --catalog PATH or set MLBOX_CATALOG") from None
    except OSError as err:
        msg = f"cannot read catalog {path}: {err.strerror}"
        raise CatalogError(msg) from None
    except NotText as err:
        raise CatalogError(str(err), hint="save the catalog as UTF-8") from None
    return parse_catalog(text, source=str(path))


def parse_catalog(text: str, *, source: str = "<catalog>") -> Catalog:
    try:
        data = yamlfile.load(text)
    except yamlfile.YamlProblem as err:
        msg = f"{source}: {err}"
        raise CatalogError(msg, hint="fix the catalog at that line") from None
    if not isinstance(data, dict):
        msg = f"{source} must be a YAML mapping at the top level"
        raise CatalogError(msg)
    problems: list[str] = []
    catalog = None
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as err:
        problems += [_describe(e) for e in err.errors()]
    problems += _reference_problems(data)
    if problems or catalog is None:
        count = f"{len(problems)} problems" if len(problems) > 1 else "a problem"
        msg = f"{source} has {count}:\n  " + "\n  ".join(problems)
        raise CatalogError(msg, hint="fix the fields named above")
    return catalog


def _describe(error: Mapping[str, Any]) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        return f"{path}: unknown key{did_you_mean(loc[-1], known)} (valid keys: {', '.join(known)})"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    got = repr(error.get("input"))  # at most a line of it: the input may be a whole block
    return f"{path}: {msg} (got {got if len(got) <= 80 else got[:77] + '...'})"


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """The valid keys of the schema object found at ``loc`` (for 'did you mean')."""
    node: Any = Catalog
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = _unwrap(field.annotation)
        elif typing.get_origin(node) is dict:
            node = _unwrap(typing.get_args(node)[1])
        else:
            return []
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the schema type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


# --------------------------------------------------------------------------- selection


def choose(kind: str, name: str, choices: Sequence[str], *, of: str | None = None) -> str:
    """Return ``name`` if it is in ``choices``; else raise a CatalogError with a suggestion.
    ``of``: whose ``kind`` it is ("variant" of "resnet50")."""
    if name in choices:
        return name
    whose = f" of {of}" if of else ""
    msg = f"unknown {kind}{whose} {quote(name)}{did_you_mean(name, choices)}"
    raise CatalogError(msg, hint=f"valid {kind}s{whose}: {', '.join(choices)}")


def _check(kind: Any, value: str, what: str, expected: str) -> None:
    from pydantic import TypeAdapter

    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        msg = f"{what}: {quote(value)} is not {expected}"
        raise CatalogError(msg, hint="it must not contain spaces, quotes, newlines or shell characters") from None


def check_image_ref(value: str, *, what: str) -> None:
    """Values from the command line reach templates too: same rules as the catalog's."""
    try:
        parse_reference(value)
    except ValueError as err:
        msg = f"{what}: {value[:80]!r} is not an image reference: {err}"
        raise CatalogError(msg, hint="give NAME[:TAG][@sha256:DIGEST], e.g. debian:bookworm-slim") from None


def check_url(value: str, *, what: str) -> None:
    _check(Url, value, what, "an http(s) URL")


def check_name(value: str, *, what: str) -> None:
    _check(Name, value, what, "a valid name (lower-case letters, digits, '.', '_', '-')")
