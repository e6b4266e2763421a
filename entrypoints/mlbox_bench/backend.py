"""The onnxruntime backend: one session (or one per worker), no silent CPU fallback."""

from __future__ import annotations

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
    output_name: str  # what the accuracy log records (ArgMax for ResNet50)


class OnnxRuntimeBackend:
    def __init__(self, settings: Settings) -> None:
        import onnxruntime as ort

        # Benchmarks run offline (often --network none) and must not phone home.
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        if settings.modelpath is None:
            msg = "no model given"
            raise BenchError(msg + ": pass --modelpath FILE (or set MLBOX_MODELPATH)")
        available = ort.get_available_providers()
        if settings.ep not in available:
            msg = (
                f"execution provider {settings.ep} is not available in this onnxruntime "
                f"(available: {', '.join(available)})"
            )
            raise BenchError(msg + self._provider_hint(settings.ep))
        options = ort.SessionOptions()
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if settings.execmode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        options.intra_op_num_threads = settings.intraop
        options.inter_op_num_threads = settings.interop
        self.session_options = options
        self.settings = settings
        self.version = ort.__version__
        try:
            self.session = self.new_session()
        except Exception as err:  # onnxruntime raises its own exception types
            msg = f"onnxruntime cannot load {settings.modelpath}: {err}"
            raise BenchError(msg) from None
        active = self.session.get_providers()
        # onnxruntime falls back to CPU silently when a provider fails to initialise.
        if not active or active[0] != settings.ep:
            msg = f"requested {settings.ep} but onnxruntime is running on {', '.join(active)}"
            raise BenchError(msg + self._provider_hint(settings.ep))
        self.provider = active[0]
        self.io = self._describe_io()

    def new_session(self) -> Any:
        import onnxruntime as ort

        return ort.InferenceSession(self.settings.modelpath, self.session_options, providers=[self.settings.ep])

    @staticmethod
    def _provider_hint(ep: str) -> str:
        if ep.startswith("CUDA") or ep.startswith("Tensorrt"):
            return (
                "; is there an NVIDIA GPU and driver (run the image with --gpus all), and is onnxruntime-gpu installed?"
            )
        return ""

    def _describe_io(self) -> ModelIO:
        inp = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape[1:])
        dtype = _ORT_TYPES.get(inp.type)
        if dtype is None:
            msg = f"model input {inp.name} has unsupported type {inp.type}"
            raise BenchError(msg)
        outputs = [o.name for o in self.session.get_outputs()]
        output = next((o for o in outputs if o.startswith("ArgMax")), outputs[0])
        return ModelIO(inp.name, shape, dtype, output)

    def run(self, session: Any, batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([self.io.output_name], {self.io.input_name: batch})[0])
