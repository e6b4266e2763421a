"""The TFLite backend, on LiteRT (``ai_edge_litert``, the maintained successor of
``tflite-runtime``): MLCommons' ``resnet50_v1.tflite`` (with its ArgMax output) and
``resnet50_v1.no-argmax.tflite``, and quantized models, whose uint8/int8 input and output
are converted with the scale and zero point the file gives. Inputs are NHWC.

A quantized input's samples are quantized when the sample library loads them, not per
batch. A batch is run by resizing the interpreter's input to it (the published files have a
batch of 1; resizing again only when the batch size changes). An interpreter is not
thread-safe: each worker (threadpool, threadpool+replication, processpool) has its own,
never one shared. LiteRT runs on the CPU (XNNPACK); ``--tflite-threads`` sets its threads.
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench.backends import Facts, ModelIO, Output, native_noise_dropped, quantize, select_one
from mlbox_bench.errors import BenchError
from mlbox_bench.options import Option, thread_count

if TYPE_CHECKING:
    from mlbox_bench.settings import Settings

THREAD_SAFE = False  # an Interpreter must not be invoked from two threads: one per worker
METADATA_NAME = "mlbox.json"  # mlbox's synthetic files say what they are in the model's metadata
METADATA_LIMIT = 1 << 16  # bytes: mlbox's note is a short JSON object
# LiteRT's INFO line when it applies XNNPACK (written once per process, from C++).
LOAD_NOISE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU")

OPTIONS: tuple[Option, ...] = (
    Option(
        "tflite_threads",
        thread_count,
        "LiteRT interpreter threads, each worker's (num_threads; 0: LiteRT decides)",
        default=0,
    ),
)


@dataclass(frozen=True)
class Config:
    """Everything a session needs; picklable, so process workers open their own."""

    modelpath: str
    threads: int  # 0: LiteRT decides
    input_shape: tuple[int, ...] | None  # when the file's input has dynamic dimensions

    @classmethod
    def from_settings(cls, s: Settings) -> Config:
        return cls(s.model_file()[0], s.tflite_threads, s.input_shape)


def _litert() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        msg = "the tflite backend needs LiteRT (ai-edge-litert), which is not installed in this environment"
        raise BenchError(msg + " (use an mlbox tflite image, or pip install ai-edge-litert)") from None
    return interpreter


def version() -> str:
    import ai_edge_litert

    return str(ai_edge_litert.__version__)


@dataclass(frozen=True)
class Quantization:
    """A tensor's affine quantization: real = scale * (q - zero_point)."""

    dtype: Any
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.dtype, self.scale, self.zero_point)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def describe(self) -> dict[str, Any]:
        return {"dtype": np.dtype(self.dtype).name, "scale": self.scale, "zero_point": self.zero_point}


def quantization_of(detail: dict[str, Any]) -> Quantization | None:
    """The quantization of an integer tensor that has one (scale > 0), else None."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(detail["dtype"], np.integer) and scale > 0:
        return Quantization(detail["dtype"], float(scale), int(zero_point))
    return None


class TfliteSession:
    def __init__(self, interpreter: Any, config: Config, facts: dict[str, Any]) -> None:
        self.interpreter = interpreter
        self.config = config
        self.file_facts = facts
        details = interpreter.get_input_details()
        if len(details) != 1:
            msg = f"{config.modelpath} has {len(details)} inputs; mlbox-bench feeds one image input"
            raise BenchError(msg)
        inp = details[0]
        self._input = int(inp["index"])
        self.input_quant = quantization_of(inp)
        outputs = interpreter.get_output_details()
        out = next((o for o in outputs if str(o["name"]).startswith("ArgMax")), outputs[0])
        self._output = int(out["index"])
        self.output_quant = quantization_of(out)
        signature = [int(d) for d in inp["shape_signature"]]
        if config.input_shape is None and (len(signature) < 2 or min(signature[1:]) < 1):
            msg = f"the input of {config.modelpath} has shape {signature} (-1: not fixed)"
            raise BenchError(msg + ": pass --input-shape (e.g. 224,224,3)")
        self.sample_shape = config.input_shape or tuple(int(d) for d in inp["shape"][1:])
        self._batch = 0
        self.resizes = 0
        self._input_dtype = np.dtype(inp["dtype"])
        out_dtype = "float32" if self.output_quant else np.dtype(out["dtype"]).name
        classes = _classes(interpreter, out)
        self.classes = classes
        # A quantized input: the sample library quantizes the samples when it loads them.
        quantization = (self.input_quant.scale, self.input_quant.zero_point) if self.input_quant else None
        shape = (None, *(int(d) for d in out["shape"][1:]))
        index_range = classes if np.issubdtype(np.dtype(out_dtype), np.integer) else None
        output = Output(str(out["name"]), out_dtype, shape, index_range)
        self.io = ModelIO(str(inp["name"]), self.sample_shape, inp["dtype"], (output,), quantization)

    def select(self, names: tuple[str, ...]) -> None:
        select_one(self.io, names)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        it = self.interpreter
        n = len(batch)
        if n != self._batch:  # the file's batch (1 for MLCommons' files) or the last one run
            it.resize_tensor_input(self._input, [n, *self.sample_shape], strict=False)
            it.allocate_tensors()
            self._batch = n
            self.resizes += 1
        if batch.dtype != self._input_dtype:  # float samples for a quantized input (the harness's are not)
            batch = self.io.prepare(batch)
        it.set_tensor(self._input, batch)
        it.invoke()
        raw = it.get_tensor(self._output)
        if self.output_quant:
            raw = self.output_quant.dequantize(raw)
        return (raw,)

    def facts(self) -> Facts:
        ops = {op["op_name"] for op in self.interpreter._get_ops_details()}
        return {
            "provider": "litert:cpu",
            "device": "cpu",
            "session": {
                "num_threads": self.config.threads or "LiteRT's default",
                "input": self.io.input_name,
                "output": self.io.outputs[0].name,
                "input_quantization": self.input_quant.describe() if self.input_quant else None,
                "output_quantization": self.output_quant.describe() if self.output_quant else None,
                "classes": self.classes,
                "delegated": "DELEGATE" in ops,  # XNNPACK took (part of) the graph
                "batch_by": "resizing the input tensor",
                **self.file_facts,
            },
        }


def _classes(interpreter: Any, out: dict[str, Any]) -> int | None:
    """The class count: the output's last dimension, or for an ArgMax output, that of the
    scores it reduces (the operator that makes the output names its input)."""
    shape = list(out["shape"])
    if not str(out["name"]).startswith("ArgMax"):
        return int(shape[-1]) if len(shape) >= 2 else None
    tensors = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if op["op_name"] == "ARG_MAX" and int(out["index"]) in [int(i) for i in op["outputs"]]:
            scores = tensors.get(int(op["inputs"][0]))
            if scores is not None and len(scores["shape"]) >= 2:
                return int(scores["shape"][-1])
    return None


def file_metadata(path: str) -> dict[str, Any]:
    """mlbox's note in a synthetic file (the model's metadata entry mlbox.json), if any.
    The flatbuffer is read in place (mapped, not copied)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            model = schema.Model.GetRootAs(data, 0)
            for i in range(model.MetadataLength()):
                entry = model.Metadata(i)
                if entry.Name() != METADATA_NAME.encode():
                    continue
                buffer = model.Buffers(entry.Buffer())
                if buffer is None or buffer.DataLength() > METADATA_LIMIT:
                    return {}
                # Byte by byte: a numpy view of the mapping would keep it from closing.
                note = bytes(buffer.Data(j) for j in range(buffer.DataLength()))
                facts = json.loads(note.decode("utf-8"))
                return facts if isinstance(facts, dict) else {}
    except (OSError, ValueError, IndexError, AttributeError, struct.error):
        return {}  # not mlbox's (or no metadata): the interpreter decides whether it loads
    return {}


def open_session(config: Config) -> TfliteSession:
    litert = _litert()
    if not Path(config.modelpath).is_file():
        msg = f"model file not found: {config.modelpath}"
        raise BenchError(msg)
    try:
        with native_noise_dropped(LOAD_NOISE):
            interpreter = litert.Interpreter(model_path=config.modelpath, num_threads=config.threads or None)
            interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as err:
        msg = f"LiteRT cannot load {config.modelpath}: {str(err).strip().splitlines()[-1]}"
        raise BenchError(msg + " (is it a .tflite file?)") from None
    facts: dict[str, Any] = {"format": "tflite"}
    noted = file_metadata(config.modelpath)
    if noted:
        facts["file"] = noted
    session = TfliteSession(interpreter, config, facts)
    try:
        session.run(np.zeros((1, *session.sample_shape), dtype=session.io.input_dtype))
    except (RuntimeError, ValueError) as err:
        msg = f"{config.modelpath} does not run on an input of shape {(1, *session.sample_shape)}: {err}"
        raise BenchError(msg + " (pass --input-shape)") from None
    return session
