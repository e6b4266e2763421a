"""The backend seam: what the runners, the LoadGen wiring and the reports know of an
inference library, and the registry of the libraries mlbox-bench can drive.

A backend module (``mlbox_bench.backends.<name>``) provides:

- ``OPTIONS``: its own settings (the settings table composes them);
- ``Config``: a frozen, picklable dataclass made from the settings by
  ``Config.from_settings(settings)`` (process workers open their own sessions from it);
- ``open_session(config) -> Session``: load the model where the config says, check that
  it really runs there (no silent CPU fallback) and describe its inputs and outputs;
- ``version() -> str``;
- ``THREAD_SAFE``: whether worker threads may share one session (onnxruntime's, PyTorch's
  and TensorFlow's may; a LiteRT interpreter may not, so each worker gets its own).

A ``Session`` runs one batch (``run``) and returns the model's raw outputs: what they
mean (a class label, boxes) is the task's business (see tasks/), not the backend's. A
session that can hold LoadGen's loaded samples in device memory is a ``DeviceSession``
(``stage`` and ``run_rows``: an optional capability). ``facts`` reports what the session
really runs with. Backends are imported only when used: an image carries one library.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Required, Self, TypedDict, runtime_checkable

import numpy as np

from mlbox_bench.errors import BenchError
from mlbox_bench.files import os_reason

if TYPE_CHECKING:
    from mlbox_bench.options import Option
    from mlbox_bench.settings import Settings

# Model file formats: the backend that loads each, and the preprocessing its published
# files were trained with (MLPerf's reference preprocessing for the ONNX, TensorFlow and
# TFLite files; torchvision's for torchvision weights).
FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", "mlperf"),
    "torchscript": ("pytorch", "torchvision"),
    "torch-export": ("pytorch", "torchvision"),
    "state-dict": ("pytorch", "torchvision"),
    "frozen-graph": ("tensorflow", "mlperf"),
    "saved-model": ("tensorflow", "mlperf"),
    "tflite": ("tflite", "mlperf"),
}
BACKENDS = ("onnxruntime", "pytorch", "tensorflow", "tflite")  # modules under mlbox_bench.backends
PREPROCESSING = ("mlperf", "torchvision")


@dataclass(frozen=True)
class Output:
    """One output of the model, as the backend returns it from ``run``."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | None, ...]  # as the model declares it (None: not fixed), batch dimension included
    # An integer output that indexes an axis of this many entries (an ArgMax over 1001
    # class scores: 1001), when the model says; a task may need it (MLPerf's background class).
    index_range: int | None = None

    @property
    def kind(self) -> str:
        """numpy's kind of its dtype: "f" float, "i"/"u" integer, "b" bool; "" for a type
        numpy has none for (an onnxruntime string or sequence output)."""
        try:
            return np.dtype(self.dtype).kind
        except TypeError:
            return ""

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype} [{dims}])"


@dataclass(frozen=True)
class ModelIO:
    input_name: str
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    input_dtype: type[np.generic]  # np.float32, np.uint8, ...
    outputs: tuple[Output, ...]  # what Session.run returns, in this order
    # A quantized integer input's (scale, zero point): samples are made as floats by the
    # preprocessing profile and quantized once, when the sample library loads them (untimed,
    # like the rest of preprocessing), not on every batch.
    input_quantization: tuple[float, int] | None = None

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """Float samples in the model's input type (quantized when the input is)."""
        if self.input_quantization is None:
            return samples.astype(self.input_dtype, copy=False)
        return quantize(samples, self.input_dtype, *self.input_quantization)

    def describe_outputs(self) -> str:
        return ", ".join(o.describe() for o in self.outputs)


def quantize(x: np.ndarray, dtype: type[np.generic], scale: float, zero_point: int) -> np.ndarray:
    """real -> q = round(real / scale) + zero_point, clipped to the integer type."""
    info = np.iinfo(np.dtype(dtype).name)
    q = np.rint(x * np.float32(1.0 / scale)) + np.float32(zero_point)
    result: np.ndarray = np.clip(q, info.min, info.max).astype(dtype)
    return result


class Facts(TypedDict, total=False):
    """What a session really runs with, read back from its library."""

    provider: Required[str]  # the library's own name for where it runs (CUDAExecutionProvider, torch:cuda)
    device: Required[str]  # cpu or cuda: where it really runs
    provider_options: dict[str, str]
    session: dict[str, object]  # the library's settings as it reports them


class Session(Protocol):
    io: ModelIO

    def select(self, names: tuple[str, ...]) -> None:
        """Return only these outputs from now on, in this order (the task's: a library
        that fetches every output copies what nobody reads)."""
        ...

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """One batch: the model's raw outputs (``select``'s, else ``io.outputs``), in order."""
        ...

    def facts(self) -> Facts:
        """What the session really runs with, read back from the library (device, threads)."""
        ...


@runtime_checkable
class DeviceSession(Session, Protocol):
    """A session that keeps LoadGen's loaded samples in device memory (--samples-on-device)."""

    def stage(self, data: np.ndarray) -> None:
        """Copy the loaded samples to the device, once per LoadGen load."""
        ...

    def run_rows(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run these rows of the staged samples: raw outputs, as ``run``."""
        ...


def select_one(io: ModelIO, names: tuple[str, ...]) -> None:
    """``select`` for a session that returns one output: that one is all it can give."""
    if names != (io.outputs[0].name,):
        msg = f"the session returns {io.outputs[0].name} only; {', '.join(names)} was asked for (a harness bug)"
        raise BenchError(msg)


class BackendConfig(Protocol):
    """A backend's ``Config``: a frozen, picklable dataclass (process workers open their
    own sessions from it)."""

    modelpath: str

    @classmethod
    def from_settings(cls, s: Settings) -> Self: ...


class BackendModule(Protocol):
    Config: type[BackendConfig]
    OPTIONS: tuple[Option, ...]
    THREAD_SAFE: bool

    def open_session(self, config: BackendConfig) -> Session: ...  # a config of its own Config type

    def version(self) -> str: ...


def module(name: str) -> BackendModule:
    if name not in BACKENDS:
        msg = f"unknown backend {name!r} (mlbox-bench has {', '.join(BACKENDS)})"
        raise BenchError(msg)
    backend: BackendModule = importlib.import_module(f"mlbox_bench.backends.{name}")
    return backend


def guess_format(path: str) -> str:
    """The format of a model file, from its name and, for PyTorch files, its content; a
    directory with a saved_model.pb is a TensorFlow SavedModel."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return "saved-model"
        msg = f"{path} is a directory without saved_model.pb: not a TensorFlow SavedModel"
        raise BenchError(msg + f" (a model is a file, or a SavedModel directory; formats: {', '.join(FORMATS)})")
    if p.suffix == ".onnx":
        return "onnx"
    if p.suffix == ".pb":
        return "frozen-graph"
    if p.suffix == ".tflite":
        return "tflite"
    if p.suffix == ".pt2":
        return "torch-export"
    if p.suffix in (".pt", ".pth"):
        import zipfile

        # TorchScript archives hold code/; torch.save'd state dicts only data.pkl.
        try:
            with zipfile.ZipFile(p) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return "state-dict"
        return "torchscript" if any("/code/" in n for n in names) else "state-dict"
    check_readable(path)  # say why the file cannot be used, not that its name is odd
    msg = f"cannot tell the format of {path} from its name"
    raise BenchError(msg + f": pass --model-format ({', '.join(FORMATS)})")


class Backend:
    """The run's backend: its first session (opened before LoadGen starts, so the first
    queries do not pay for it) and how to open more (replicated workers)."""

    def __init__(self, name: str, config: BackendConfig) -> None:
        self.name = name
        self.impl = module(name)
        self.config = config
        self.session = self.impl.open_session(config)
        self.io = self.session.io
        self.outputs = tuple(o.name for o in self.io.outputs)

    def select(self, names: tuple[str, ...]) -> None:
        """The outputs every session of this backend returns (see Session.select)."""
        self.session.select(names)
        self.outputs = names

    def new_session(self) -> Session:
        session = self.impl.open_session(self.config)
        session.select(self.outputs)
        return session

    @property
    def thread_safe(self) -> bool:
        """Whether worker threads may share one session (else each gets its own)."""
        return bool(self.impl.THREAD_SAFE)

    def facts(self) -> dict[str, object]:
        return {"name": self.name, "version": self.impl.version(), **self.session.facts()}


def check_readable(path: str) -> None:
    """A BenchError in words (a symlink loop, no permission) for a model path the OS
    refuses; the libraries say "system error number 40" or worse."""
    try:
        Path(path).stat()
    except OSError as err:
        msg = f"--modelpath {path}: cannot read it ({os_reason(err)})"
        raise BenchError(msg) from None


def from_settings(settings: Settings) -> Backend:
    """The backend the settings name, with its config made from them."""
    if settings.modelpath is not None:
        check_readable(settings.modelpath)
    impl = module(settings.backend)
    return Backend(settings.backend, impl.Config.from_settings(settings))


def open_worker_session(name: str, config: BackendConfig) -> Session:
    """A process worker's own session (the config crossed the process boundary)."""
    return module(name).open_session(config)


@contextmanager
def native_noise_dropped(noise: re.Pattern[str]) -> Iterator[None]:
    """Drop the lines matching ``noise`` from what native code writes to stderr (fd 2)
    meanwhile, and pass every other line on.

    For INFO lines that TensorFlow and LiteRT write from C++ when they load, before their
    logging honours TF_CPP_MIN_LOG_LEVEL ("oneDNN custom operations are on", absl's "All
    log messages before absl::InitializeLog()...", "Created TensorFlow Lite XNNPACK
    delegate"): they say nothing about the run and would be repeated by every worker
    process. With TF_CPP_MIN_LOG_LEVEL=0 (TensorFlow's "show INFO") nothing is dropped.
    The capture is an in-memory file (memfd): it works on a read-only filesystem.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") == "0" or not hasattr(os, "memfd_create"):
        yield
        return
    try:
        capture = os.memfd_create("mlbox-native-stderr")
        saved = os.dup(2)
    except OSError:
        yield
        return
    sys.stderr.flush()
    os.dup2(capture, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.lseek(capture, 0, os.SEEK_SET)
        with os.fdopen(capture, "rb") as captured:
            lines = captured.read().splitlines(keepends=True)
        kept = [line for line in lines if not noise.search(line.decode("utf-8", "replace"))]
        if kept:
            os.write(2, b"".join(kept))
