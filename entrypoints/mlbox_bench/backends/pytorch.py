"""The PyTorch backend: TorchScript, torch.export programs, torchvision's ResNet-50 state
dict, and the seed app's route (a checkpoint plus a model-code directory), under
``torch.inference_mode``. A CUDA request runs on CUDA or fails: never on the CPU instead.

Options: ``--device cpu|cuda`` (the seed app's ``--ep CPUExecutionProvider`` /
``CUDAExecutionProvider`` says the same), ``--torch-threads``/``--torch-interop-threads``;
on CUDA ``--half`` (fp16 weights and inputs), ``--channels-last`` and ``--torch-compile``,
each recorded in result.json.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench.backends import Facts, ModelIO, Output, select_one
from mlbox_bench.errors import BenchError
from mlbox_bench.options import Option, boolean, choice, nonempty, thread_count

if TYPE_CHECKING:
    from mlbox_bench.settings import Settings

log = logging.getLogger("mlbox-bench")

# TorchScript does not record input shapes: the MLPerf model's input, when neither the
# file (a torch.export signature, mlbox's extra file) nor --input-shape says otherwise.
INPUT_SHAPES = {"resnet50": (3, 224, 224), "retinanet": (3, 800, 800)}
SEED_DEVICES = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}  # the seed app's --ep
THREAD_SAFE = True  # a module in inference mode may be called from several threads at once

OPTIONS: tuple[Option, ...] = (
    Option(
        "torch_threads",
        thread_count,
        "PyTorch intra-op threads, torch.set_num_threads (0: PyTorch decides)",
        default=0,
    ),
    Option(
        "torch_interop_threads",
        thread_count,
        "PyTorch inter-op threads (0: PyTorch decides)",
        default=0,
    ),
    Option("half", boolean, "CUDA: run in fp16 (weights and inputs)", is_flag=True, default=False),
    Option(
        "channels_last",
        boolean,
        "CUDA: channels-last memory format",
        is_flag=True,
        default=False,
    ),
    Option("torch_compile", boolean, "CUDA: torch.compile the model", is_flag=True, default=False),
    Option(
        "torch_compile_mode",
        choice(("default", "reduce-overhead", "max-autotune")),
        "torch.compile's mode (reduce-overhead replays CUDA graphs)",
        default="default",
    ),
    Option(
        "model_code",
        nonempty,
        "the seed app's PyTorch route: a directory whose cmc.py has model_init(checkpoint, cfg)",
        flags=("--model_code",),
        cm="CM_ML_MODEL_CODE_WITH_PATH",
    ),
    Option(
        "model_cfg",
        nonempty,
        "the seed app's model configuration (JSON) for model_init",
        flags=("--model_cfg",),
        cm="CM_ML_MODEL_CFG_WITH_PATH",
    ),
)
# onnxruntime's options this backend reads too: the seed app picks PyTorch's device with --ep.
SHARED_OPTIONS = ("ep", "samples_on_device")


@dataclass(frozen=True)
class Config:
    modelpath: str
    model_format: str
    device: str  # cpu or cuda
    threads: int  # intra-op threads (0: PyTorch decides)
    interop_threads: int
    half: bool
    channels_last: bool
    compile: bool
    compile_mode: str
    model_code: str | None  # the seed app's route: a directory with cmc.py's model_init
    model_cfg: str | None
    input_shape: tuple[int, ...] | None
    model: str  # the MLPerf model name (default input shape)

    @classmethod
    def from_settings(cls, s: Settings) -> Config:
        return cls(
            *s.model_file(),
            torch_device(s),
            s.torch_threads,
            s.torch_interop_threads,
            s.half,
            s.channels_last,
            s.torch_compile,
            s.torch_compile_mode,
            s.model_code,
            s.model_cfg,
            s.input_shape,
            s.model,
        )


def torch_device(s: Any) -> str:
    """--device, or the seed app's spelling of it: --ep CPUExecutionProvider/CUDAExecutionProvider
    (settings has checked it is one of those)."""
    return SEED_DEVICES[s.ep] if s.set_by_user("ep") else str(s.device)


def version() -> str:
    import torch

    return str(torch.__version__)


@contextmanager
def _quiet_deprecations() -> Any:
    """PyTorch 2.13 marks TorchScript and quantized tensors as deprecated; both still work
    and the published int8 model is TorchScript. Their warnings say nothing about the run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        yield


_threads_set = False  # torch allows setting inter-op threads once per process


def _set_threads(torch: Any, config: Config) -> None:
    global _threads_set
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.interop_threads and not _threads_set:
        torch.set_num_interop_threads(config.interop_threads)
    _threads_set = True


def _load(torch: Any, config: Config, device: Any) -> tuple[Any, dict[str, Any]]:
    """(module, facts of the file) for each format."""
    path = config.modelpath
    facts: dict[str, Any] = {"format": config.model_format}
    if config.model_code is not None:
        return _seed_route(torch, config, device), {**facts, "route": "model code (seed app)"}
    with _quiet_deprecations():
        if config.model_format == "torchscript":
            # TorchScript's default (profiling) executor re-profiles every new batch shape
            # and takes ~4 runs per shape to reach its speed, some of them seconds long for
            # ResNet-50 on 2 cores, in bursts the calibration and the run cannot predict;
            # the legacy executor optimises once and runs every shape at its speed (b1
            # 60 ms from the 3rd run, a new b3 at 140 ms from its first).
            torch._C._jit_set_profiling_executor(False)
            extra = {"mlbox.json": ""}
            module = torch.jit.load(path, map_location=device, _extra_files=extra)
            if extra["mlbox.json"]:
                facts["file"] = json.loads(extra["mlbox.json"])
            return module, facts
        if config.model_format == "torch-export":
            program = torch.export.load(path)
            shape = _export_input_shape(program)
            facts["input_shape"] = list(shape[1:]) if shape else None
            return program.module().to(device), facts
        if config.model_format == "state-dict":
            from mlbox_bench.resnet_torch import load_state_dict_file

            if config.model != "resnet50":
                msg = f"a state dict holds weights only: mlbox-bench knows the network for resnet50, not {config.model}"
                raise BenchError(msg + " (export it with torch.export, or pass --model-code DIR)")
            return load_state_dict_file(path).to(device), {**facts, "network": "torchvision resnet50 (v1.5)"}
    msg = f"the PyTorch backend does not load --model-format {config.model_format}"
    raise BenchError(msg)


def _export_input_shape(program: Any) -> tuple[int, ...]:
    """The first user input's example shape (parameters are placeholders too: skipped).
    A dynamic dimension (the batch) reads as its example value."""
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users and hasattr(node.meta.get("val"), "shape"):
            return tuple(int(d) if isinstance(d, int) else 1 for d in node.meta["val"].shape)
    return ()


def _seed_route(torch: Any, config: Config, device: Any) -> Any:
    """The seed app's PyTorch route: torch.load the checkpoint, then `model_init(checkpoint,
    cfg)` from the model-code directory's cmc.py returns {'return': 0, 'model': model}."""
    import importlib.util

    code = Path(str(config.model_code)) / "cmc.py"
    if not code.is_file():
        msg = f"--model-code {config.model_code}: no cmc.py there (the seed app's model connector with model_init)"
        raise BenchError(msg)
    cfg: dict[str, Any] = {}
    if config.model_cfg:
        try:
            cfg = json.loads(Path(config.model_cfg).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            msg = f"--model-cfg {config.model_cfg}: not a readable JSON file ({err})"
            raise BenchError(msg) from None
    spec = importlib.util.spec_from_file_location("cmc", code)
    if spec is None or spec.loader is None:
        msg = f"cannot import {code}"
        raise BenchError(msg)
    connector = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code.parent))  # cmc.py imports its own model code
    try:
        spec.loader.exec_module(connector)
        checkpoint = torch.load(config.modelpath, map_location=device, weights_only=False)
        answer = connector.model_init(checkpoint, cfg)
    finally:
        sys.path.remove(str(code.parent))
    if not isinstance(answer, dict) or answer.get("return", 1) != 0 or "model" not in answer:
        msg = f"{code}: model_init failed: {answer.get('error') if isinstance(answer, dict) else answer!r}"
        raise BenchError(msg)
    return answer["model"]


class TorchSession:
    """On CUDA each worker thread has its own stream and its own pinned staging buffer:
    one worker's host-to-device copy overlaps another's compute. With the samples on the
    device (stage/run_rows) there is no copy at all."""

    def __init__(self, torch: Any, module: Any, config: Config, facts: dict[str, Any], io: ModelIO) -> None:
        self.torch = torch
        self.module = module
        self.config = config
        self.device = torch.device(config.device)
        self.cuda = config.device == "cuda"
        self.dtype = torch.float16 if config.half else torch.float32
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.file_facts = facts
        self.io = io
        self._local = threading.local()  # per worker thread: CUDA stream and pinned buffer
        self._on_device: Any = None

    def _stream(self) -> Any:
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = self.torch.cuda.Stream(self.device)
        return stream

    def _to_device(self, batch: np.ndarray) -> Any:
        torch = self.torch
        host = torch.from_numpy(batch)
        if not self.cuda:
            return host
        pinned = getattr(self._local, "pinned", None)
        if pinned is None or pinned.numel() < host.numel():
            pinned = self._local.pinned = torch.empty(host.numel(), dtype=host.dtype, pin_memory=True)
        staged = pinned[: host.numel()].view(host.shape)
        staged.copy_(host)
        return staged.to(self.device, non_blocking=True)

    def _forward(self, x: Any) -> np.ndarray:
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        if self.config.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        out = self.module(x)
        if isinstance(out, list | tuple):
            out = out[0]
        return np.asarray(out.float().cpu().numpy())  # .cpu() waits for this stream only

    def forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            if not self.cuda:
                return self._forward(self._to_device(batch))
            with torch.cuda.stream(self._stream()):
                return self._forward(self._to_device(batch))

    def select(self, names: tuple[str, ...]) -> None:
        select_one(self.io, names)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return (self.forward(batch),)

    def stage(self, data: np.ndarray) -> None:
        """Copy the loaded samples into GPU memory once per LoadGen load (--samples-on-device),
        already in the model's dtype."""
        torch = self.torch
        with torch.inference_mode():
            self._on_device = torch.from_numpy(np.ascontiguousarray(data)).to(self.device, dtype=self.dtype)
            torch.cuda.synchronize(self.device)

    def run_rows(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        torch = self.torch
        if self._on_device is None:
            msg = "samples on the device were asked for before any were staged (a harness bug)"
            raise BenchError(msg)
        first, count = int(rows[0]), len(rows)
        with torch.inference_mode(), torch.cuda.stream(self._stream()):
            if count == 1 or (int(rows[-1]) - first == count - 1 and bool(np.all(np.diff(rows) == 1))):
                x = self._on_device[first : first + count]
            else:
                x = self._on_device.index_select(0, torch.from_numpy(rows).to(self.device, non_blocking=True))
            return (self._forward(x),)

    def facts(self) -> Facts:
        torch = self.torch
        param = next(iter(self.module.parameters()), None) if hasattr(self.module, "parameters") else None
        device = str(param.device) if param is not None else self.config.device
        facts: Facts = {
            "provider": f"torch:{self.config.device}",
            "device": self.config.device,
            "session": {
                "device_of_weights": device,
                "intra_op_threads": torch.get_num_threads(),
                "inter_op_threads": torch.get_num_interop_threads(),
                "dtype": str(self.dtype).removeprefix("torch."),
                "channels_last": self.config.channels_last,
                "torch_compile": self.config.compile,
                "torch_compile_mode": self.config.compile_mode if self.config.compile else None,
                "pinned_host_buffers": self.cuda,
                "inference_mode": True,
                **self.file_facts,
            },
        }
        if self.config.device == "cuda":
            facts["session"]["cuda_device"] = torch.cuda.get_device_name(self.device)
        return facts


def open_session(config: Config) -> TorchSession:
    try:
        import torch
    except ImportError:
        msg = "the pytorch backend needs PyTorch, which is not installed in this environment"
        raise BenchError(msg + " (use an mlbox pytorch image, or pip install torch)") from None
    if config.device == "cuda" and not torch.cuda.is_available():
        # PyTorch would run on the CPU if we let it: refuse instead.
        msg = "--device cuda was requested but torch.cuda.is_available() is false on this host"
        raise BenchError(
            msg + ": run on a GPU machine with the GPUs passed to the container (`mlbox run` does: --gpus all)"
        )
    _set_threads(torch, config)
    # Process workers map the samples read-only and the model never writes to its input;
    # set once here, not per batch (catch_warnings is neither free nor thread-safe).
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
    device = torch.device(config.device)
    try:
        # torch.export.load logs the stack of a file it cannot read before raising: the
        # error below says it in a line.
        logging.getLogger("torch.export").setLevel(logging.CRITICAL)
        module, facts = _load(torch, config, device)
    except BenchError:
        raise
    except Exception as err:  # torch's loaders raise anything (KeyError, BadZipFile, RuntimeError) on a bad file
        first = " ".join(str(err).split())[:300]
        msg = f"PyTorch cannot load {config.modelpath} as --model-format {config.model_format}"
        msg += f": {type(err).__name__}: {first} (is it that kind of file, whole?)"
        raise BenchError(msg) from None
    if config.model_format != "torch-export":  # an exported program is already in inference form
        module = module.eval()
    if config.half:
        module = module.half()
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if config.compile:
        module = torch.compile(module, mode=config.compile_mode)
    session = TorchSession(torch, module, config, facts, _placeholder_io(config, facts))
    session.io = _describe_io(session, config, facts)
    _check_device(torch, session, config)
    return session


def _placeholder_io(config: Config, facts: dict[str, Any]) -> ModelIO:
    shape = config.input_shape or tuple(facts.get("input_shape") or ())
    shape = shape or tuple((facts.get("file") or {}).get("input_shape") or ()) or INPUT_SHAPES.get(config.model, ())
    if not shape:
        msg = f"the input shape of {config.modelpath} is not known: pass --input-shape (e.g. 3,224,224)"
        raise BenchError(msg)
    return ModelIO("input", tuple(int(d) for d in shape), np.float32, (Output("output", "float32", ()),))


def _describe_io(session: TorchSession, config: Config, facts: dict[str, Any]) -> ModelIO:
    """Run one zero sample to learn the output's shape (a classifier's class count)."""
    io = session.io
    try:
        out = session.forward(np.zeros((1, *io.input_shape), dtype=np.float32))
    except Exception as err:  # the model's own error, with the shape we tried
        msg = f"{config.modelpath} does not run on an input of shape {(1, *io.input_shape)}: {err}"
        raise BenchError(msg + " (pass --input-shape)") from None
    shape = (None, *out.shape[1:])  # the batch dimension follows the input's
    return ModelIO("input", io.input_shape, np.float32, (Output("output", "float32", shape),))


def _check_device(torch: Any, session: TorchSession, config: Config) -> None:
    """The weights are where the config says (a module that ignored .to() is refused)."""
    if not hasattr(session.module, "parameters"):
        return
    for param in session.module.parameters():
        if param.device.type != config.device:
            msg = f"requested {config.device} but the model's weights are on {param.device}"
            raise BenchError(msg)
        break
