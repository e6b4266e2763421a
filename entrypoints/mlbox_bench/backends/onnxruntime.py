"""The onnxruntime backend: one session (or one per worker), no silent CPU fallback.

Its options (``--ep``, ``--execmode``, ``--intraop``, ``--interop``) are the seed app's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench.backends import Facts, ModelIO, Output
from mlbox_bench.errors import BenchError, quote
from mlbox_bench.options import Option, SettingsError, boolean, choice, nonempty, thread_count

if TYPE_CHECKING:
    from mlbox_bench.settings import Settings

THREAD_SAFE = True  # InferenceSession.run may be called from several threads at once
EXECMODES = ("sequential", "parallel")


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """`prefer_nhwc=1,enable_cuda_graph=0` -> (("prefer_nhwc", "1"), ...)."""
    pairs = []
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or not value:
            msg = f"{quote(item.strip())} is not KEY=VALUE (give e.g. prefer_nhwc=1,cudnn_conv_algo_search=HEURISTIC)"
            raise SettingsError(msg)
        pairs.append((key, value))
    return tuple(pairs)


# pytorch reads --ep and --samples-on-device too (its SHARED_OPTIONS).
OPTIONS: tuple[Option, ...] = (
    Option(
        "samples_on_device",
        boolean,
        "GPU: keep LoadGen's loaded samples in GPU memory, copied once per load (declared in result.json and "
        "the submission's system description, as MLPerf requires)",
        is_flag=True,
        default=False,
    ),
    Option(
        "ep",
        nonempty,
        "onnxruntime execution provider (pytorch: CPUExecutionProvider/CUDAExecutionProvider pick the device, "
        "as in the seed app)",
        cm="CM_MLPERF_EXECUTION_PROVIDER",
        default="CPUExecutionProvider",
    ),
    Option(
        "ep_options",
        _pairs,
        "onnxruntime execution provider options, KEY=VALUE,... (CUDA: prefer_nhwc=1, ...)",
        default=(),
    ),
    Option(
        "execmode",
        choice(EXECMODES),
        "onnxruntime execution mode",
        cm="CM_MLPERF_EXEC_MODE",
        default="sequential",
    ),
    Option(
        "intraop",
        thread_count,
        "onnxruntime intra-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTRAOP",
        default=0,
    ),
    Option(
        "interop",
        thread_count,
        "onnxruntime inter-op threads (0: onnxruntime decides)",
        cm="CM_MLPERF_INTEROP",
        default=0,
    ),
)

_ORT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


@dataclass(frozen=True)
class Config:
    """Everything a session needs; picklable, so process workers open their own."""

    modelpath: str
    ep: str
    execmode: str
    intraop: int
    interop: int
    provider_options: tuple[tuple[str, str], ...] = ()  # e.g. (("prefer_nhwc", "1"),) for CUDA

    @classmethod
    def from_settings(cls, s: Settings) -> Config:
        return cls(s.model_file()[0], s.ep, s.execmode, s.intraop, s.interop, tuple(s.ep_options))


def version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


class OrtSession:
    def __init__(self, session: Any, io: ModelIO, config: Config) -> None:
        self.session = session
        self.io = io
        self.config = config
        self._outputs = [o.name for o in io.outputs]
        self._input = io.input_name
        self._on_device: Any = None  # the loaded samples as an OrtValue in GPU memory (stage)
        self._host: np.ndarray | None = None

    def select(self, names: tuple[str, ...]) -> None:
        self._outputs = list(names)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(self._outputs, {self._input: batch}))

    def stage(self, data: np.ndarray) -> None:
        """Copy the loaded samples into GPU memory, once per LoadGen load (--samples-on-device)."""
        import onnxruntime as ort

        self._on_device = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(data), "cuda", 0)
        self._host = data

    def run_rows(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Run loaded rows from GPU memory: consecutive rows are bound in place (a pointer
        into the staged samples, no copy); scattered ones are gathered on the host."""
        if self._on_device is None or self._host is None:
            msg = "samples on the device were asked for before any were staged (a harness bug)"
            raise BenchError(msg)
        first, count = int(rows[0]), len(rows)
        if count > 1 and not (int(rows[-1]) - first == count - 1 and bool(np.all(np.diff(rows) == 1))):
            return self.run(self._host[rows])
        sample = self._host[0]
        binding = self.session.io_binding()
        binding.bind_input(
            self._input,
            "cuda",
            0,
            sample.dtype.type,
            [count, *sample.shape],
            self._on_device.data_ptr() + first * sample.nbytes,
        )
        for name in self._outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return tuple(np.asarray(raw) for raw in binding.copy_outputs_to_cpu())

    def facts(self) -> Facts:
        """What the session really runs with, read back from onnxruntime."""
        import onnxruntime as ort

        opts = self.session.get_session_options()
        providers = self.session.get_providers()
        return {
            "provider": providers[0],
            "device": "cuda" if providers[0].startswith(("CUDA", "Tensorrt")) else "cpu",
            "provider_options": self.session.get_provider_options().get(providers[0], {}),
            "session": {
                "execution_mode": "parallel" if opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL else "sequential",
                "intra_op_num_threads": opts.intra_op_num_threads,
                "inter_op_num_threads": opts.inter_op_num_threads,
                "providers": providers,
                "outputs": list(self._outputs),  # what it fetches (the task's), not every output
            },
        }


def open_session(config: Config) -> OrtSession:
    """Create a session and check the provider it really runs on."""
    import onnxruntime as ort

    # Benchmarks run offline (often --network none) and must not phone home.
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    available = ort.get_available_providers()
    if config.ep not in available:
        msg = f"execution provider {config.ep} is not available in this onnxruntime (available: {', '.join(available)})"
        raise BenchError(msg + _provider_hint(config.ep))
    if config.ep.startswith(("CUDA", "Tensorrt")):
        _require_gpu(ort, config.ep)
    options = ort.SessionOptions()
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if config.execmode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.intra_op_num_threads = config.intraop
    options.inter_op_num_threads = config.interop
    try:
        provider: Any = (config.ep, dict(config.provider_options)) if config.provider_options else config.ep
        session = ort.InferenceSession(config.modelpath, options, providers=[provider])
    except Exception as err:  # onnxruntime raises its own exception types
        msg = f"onnxruntime cannot load {config.modelpath}: {err}"
        raise BenchError(msg) from None
    active = session.get_providers()
    # onnxruntime falls back to CPU silently when a provider fails to initialise.
    if not active or active[0] != config.ep:
        msg = f"requested {config.ep} but onnxruntime is running on {', '.join(active) or 'nothing'}"
        raise BenchError(msg + _provider_hint(config.ep))
    return OrtSession(session, _describe_io(session), config)


def _require_gpu(ort: Any, ep: str) -> None:
    """Fail before onnxruntime silently falls back to CPU: no device node, no GPU."""
    from pathlib import Path

    if not (Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))):
        msg = (
            f"{ep} was requested but this host has no NVIDIA GPU visible (no /dev/nvidia* devices); "
            "run on a GPU machine, and pass the GPUs to the container (`mlbox run` does: --gpus all)"
        )
        raise BenchError(msg)
    if hasattr(ort, "preload_dlls"):
        # CUDA and cuDNN from NVIDIA's pip wheels, when the loader path does not name them.
        try:
            ort.preload_dlls()
        except Exception as err:  # onnxruntime reports what it could not load; the session check decides
            logging.getLogger("mlbox-bench").warning("onnxruntime could not preload CUDA libraries: %s", err)


def _provider_hint(ep: str) -> str:
    if ep.startswith(("CUDA", "Tensorrt")):
        return "; is there an NVIDIA GPU and driver (run the image with --gpus all), and is onnxruntime-gpu installed?"
    return ""


def _describe_io(session: Any) -> ModelIO:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        msg = (
            f"the model has {len(inputs)} input(s) and {len(outputs)} output(s): mlbox-bench runs models with one input"
        )
        raise BenchError(msg + " (a batch of images) and at least one output")
    inp = inputs[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape[1:])
    dtype = _ORT_TYPES.get(inp.type)
    if dtype is None:
        msg = f"model input {inp.name} has unsupported type {inp.type}"
        raise BenchError(msg)
    described = tuple(Output(o.name, _type_name(o.type), tuple(_dim(d) for d in o.shape or ())) for o in outputs)
    return ModelIO(inp.name, shape, dtype, described)


def _type_name(ort_type: str) -> str:
    """A numpy dtype name for an onnxruntime tensor type; the type's own words otherwise
    (a task then refuses it by name: tensor(double) is float64, tensor(string) stays string)."""
    known = _ORT_TYPES.get(ort_type)
    if known is not None:
        return np.dtype(known).name
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    try:
        return np.dtype({"double": "float64", "float": "float32"}.get(inner, inner)).name
    except TypeError:
        return inner


def _dim(d: Any) -> int | None:
    """A declared dimension: a number, or None for a symbolic or unknown one."""
    return d if isinstance(d, int) and d > 0 else None
