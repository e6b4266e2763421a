"""The onnxruntime backend: one session (or one per worker), no silent CPU fallback."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlbox_bench.errors import BenchError
from mlbox_bench.settings import Settings

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


@dataclass(frozen=True)
class ModelIO:
    input_name: str
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    input_dtype: Any
    output_name: str  # the output answered to LoadGen (ArgMax for ResNet50)
    output_dtype: str  # its numpy dtype name
    label_offset: int  # added to the class index to get the dataset label (1001 classes: -1)


RESPONSE_DTYPE = "float32"  # what every response holds: the reference app's accuracy log format


def to_labels(raw: np.ndarray, count: int, offset: int) -> np.ndarray:
    """The response for each of ``count`` samples as MLCommons' reference app writes it:
    the label after the model's offset (ArgMax - 1 for 1001 classes), as float32, so
    accuracy-imagenet.py with its defaults reads the accuracy log. A float output with
    one score per class is reduced to its ArgMax first."""
    out = raw.reshape(count, -1)
    if out.shape[1] > 1 and np.issubdtype(out.dtype, np.floating):
        out = out.argmax(axis=1).reshape(count, 1)
    labels = np.ascontiguousarray(out[:, :1], dtype=np.float32)
    if offset:
        labels += np.float32(offset)
    return labels


@dataclass(frozen=True)
class SessionConfig:
    """Everything a session needs; picklable, so process workers open their own."""

    modelpath: str
    ep: str
    execmode: str
    intraop: int
    interop: int


def open_session(config: SessionConfig) -> tuple[Any, ModelIO]:
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
        session = ort.InferenceSession(config.modelpath, options, providers=[config.ep])
    except Exception as err:  # onnxruntime raises its own exception types
        msg = f"onnxruntime cannot load {config.modelpath}: {err}"
        raise BenchError(msg) from None
    active = session.get_providers()
    # onnxruntime falls back to CPU silently when a provider fails to initialise.
    if not active or active[0] != config.ep:
        msg = f"requested {config.ep} but onnxruntime is running on {', '.join(active) or 'nothing'}"
        raise BenchError(msg + _provider_hint(config.ep))
    return session, _describe_io(session)


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
    inp = session.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape[1:])
    dtype = _ORT_TYPES.get(inp.type)
    if dtype is None:
        msg = f"model input {inp.name} has unsupported type {inp.type}"
        raise BenchError(msg)
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    output = next((n for n in names if n.startswith("ArgMax")), names[0])
    output_type = _ORT_TYPES.get(next(o.type for o in outputs if o.name == output), np.float32)
    # MLPerf's ResNet50 has 1001 classes (0 = background): ArgMax - 1 is the ImageNet label.
    classes = {o.shape[-1] for o in outputs if o.shape and isinstance(o.shape[-1], int)}
    return ModelIO(inp.name, shape, dtype, output, np.dtype(output_type).name, -1 if 1001 in classes else 0)


class OnnxRuntimeBackend:
    def __init__(self, settings: Settings) -> None:
        import onnxruntime as ort

        if settings.modelpath is None:
            msg = "no model given"
            raise BenchError(msg + ": pass --modelpath FILE (or set MLBOX_MODELPATH)")
        self.config = SessionConfig(
            settings.modelpath, settings.ep, settings.execmode, settings.intraop, settings.interop
        )
        self.session, self.io = open_session(self.config)
        self.provider = self.session.get_providers()[0]
        self.version = ort.__version__

    def new_session(self) -> Any:
        return open_session(self.config)[0]

    def session_facts(self) -> dict[str, Any]:
        """What the session really runs with, read back from onnxruntime."""
        import onnxruntime as ort

        opts = self.session.get_session_options()
        return {
            "execution_mode": "parallel" if opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL else "sequential",
            "intra_op_num_threads": opts.intra_op_num_threads,
            "inter_op_num_threads": opts.inter_op_num_threads,
            "providers": self.session.get_providers(),
            "output": self.io.output_name,
        }

    def run(self, session: Any, batch: np.ndarray) -> np.ndarray:
        """One batch through the session: the responses, one float32 label per sample."""
        raw = np.asarray(session.run([self.io.output_name], {self.io.input_name: batch})[0])
        return to_labels(raw, len(batch), self.io.label_offset)
