"""The TensorFlow backend: frozen graphs (MLCommons' ``resnet50_v1.pb``) loaded as the
reference's ``backend_tf.py`` loads them (a GraphDef, ``optimize_for_inference``, a TF1
graph and session), and SavedModels (their serving signature, in a session too). Inputs
are NHWC, as the published graph's ``input_tensor:0``; the output answered to LoadGen is
``ArgMax:0`` when the graph has one.

Options: ``--tf-intra-op-threads``/``--tf-inter-op-threads`` (the session's ConfigProto,
per session, as the reference sets them), ``--tf-input``/``--tf-output`` (a frozen graph
records neither; the reference's ``--inputs``/``--outputs``), and ``--device cpu|cuda``:
a CUDA request runs on the GPU (checked by tracing one run) or fails, never on the CPU.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlbox_bench.backends import Facts, ModelIO, Output, native_noise_dropped, select_one
from mlbox_bench.errors import BenchError, quote
from mlbox_bench.options import Option, SettingsError, thread_count

if TYPE_CHECKING:
    from mlbox_bench.settings import Settings

THREAD_SAFE = True  # Session.run may be called from several threads at once
DEFAULT_INPUT = "input_tensor:0"  # MLCommons' ResNet50 graph (the reference's resnet50-tf profile)
DEFAULT_OUTPUTS = ("ArgMax:0", "softmax_tensor:0")  # the first the graph has answers LoadGen
METADATA_NODE = "mlbox.json"  # a string constant in mlbox's synthetic graphs: what the file is
SERVING_TAGS = ["serve"]
# What TensorFlow writes from C++ while it loads, before its logging reads TF_CPP_MIN_LOG_LEVEL.
IMPORT_NOISE = re.compile(r"All log messages before absl::InitializeLog|\] oneDNN custom operations are on")


def _tensor(text: str) -> str:
    """One tensor (or signature key): `input_tensor:0`, `input_tensor`. The reference's
    --inputs/--outputs take lists; mlbox-bench feeds one input and answers one output."""
    if not text or "," in text or any(c.isspace() for c in text):
        msg = f"{quote(text)} is not one tensor name (e.g. input_tensor:0)"
        msg += "; mlbox-bench feeds one input and reads one output"
        raise SettingsError(msg)
    return text


OPTIONS: tuple[Option, ...] = (
    Option(
        "tf_intra_op_threads",
        thread_count,
        "TensorFlow intra-op threads of each session (ConfigProto.intra_op_parallelism_threads; 0: TensorFlow decides)",
        default=0,
    ),
    Option(
        "tf_inter_op_threads",
        thread_count,
        "TensorFlow inter-op threads of each session (ConfigProto.inter_op_parallelism_threads; 0: TensorFlow decides)",
        default=0,
    ),
    Option(
        "tf_input",
        _tensor,
        "TensorFlow input tensor, or SavedModel signature key (default: input_tensor:0, else the only placeholder)",
        flags=("--inputs",),
    ),
    Option(
        "tf_output",
        _tensor,
        "TensorFlow output answered to LoadGen, tensor or signature key (default: ArgMax:0, else softmax_tensor:0)",
        flags=("--outputs",),
    ),
)


@dataclass(frozen=True)
class Config:
    """Everything a session needs; picklable, so process workers open their own."""

    modelpath: str
    model_format: str  # frozen-graph or saved-model
    device: str  # cpu or cuda
    intra_op_threads: int  # 0: TensorFlow decides
    inter_op_threads: int
    input_name: str | None  # a tensor name (frozen graph) or a signature key / tensor name (SavedModel)
    output_name: str | None
    input_shape: tuple[int, ...] | None

    @classmethod
    def from_settings(cls, s: Settings) -> Config:
        return cls(
            *s.model_file(),
            s.device,
            s.tf_intra_op_threads,
            s.tf_inter_op_threads,
            s.tf_input,
            s.tf_output,
            s.input_shape,
        )


def import_tensorflow() -> Any:
    """``import tensorflow``, with its C++ INFO lines off (a user's TF_CPP_MIN_LOG_LEVEL wins)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # INFO off; warnings and errors stay
    try:
        with native_noise_dropped(IMPORT_NOISE):
            import tensorflow as tf
    except ImportError:
        msg = "the tensorflow backend needs TensorFlow, which is not installed in this environment"
        raise BenchError(msg + " (use an mlbox tensorflow image, or pip install tensorflow-cpu)") from None
    return tf


def version() -> str:
    return str(import_tensorflow().__version__)


def _deprecations_silenced() -> Any:
    """TensorFlow logs deprecation notices for its TF1 graph API (optimize_for_inference's
    helpers, the SavedModel loader), which the reference and the published frozen graph
    need: they are about this code, not the run, so they are silenced while it loads."""
    from tensorflow.python.util import deprecation

    return deprecation.silence()


class TfSession:
    def __init__(self, sess: Any, graph: Any, io: ModelIO, config: Config, facts: dict[str, Any]) -> None:
        self.sess = sess
        self.graph = graph
        self.io = io
        self.config = config
        self.file_facts = facts
        self._input = graph.get_tensor_by_name(io.input_name)
        self._output = graph.get_tensor_by_name(io.outputs[0].name)

    def select(self, names: tuple[str, ...]) -> None:
        select_one(self.io, names)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.asarray(self.sess.run(self._output, feed_dict={self._input: batch})),)

    def facts(self) -> Facts:
        """What the session runs with, read back from it: its ConfigProto and its devices."""
        devices = [d.name for d in self.sess.list_devices()]
        options = self.sess._config  # the ConfigProto the session was made with (no public getter)
        facts: Facts = {
            "provider": f"tensorflow:{self.config.device}",
            "device": self.config.device,
            "session": {
                "intra_op_parallelism_threads": options.intra_op_parallelism_threads,
                "inter_op_parallelism_threads": options.inter_op_parallelism_threads,
                "use_per_session_threads": options.use_per_session_threads,
                "gpus_allowed": options.device_count.get("GPU", "all"),
                "session_devices": devices,
                "input": self.io.input_name,
                "output": self.io.outputs[0].name,
                **self.file_facts,
            },
        }
        return facts


def open_session(config: Config) -> TfSession:
    tf = import_tensorflow()
    gpus = _check_device(tf, config)
    options = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=config.intra_op_threads,
        inter_op_parallelism_threads=config.inter_op_threads,
        use_per_session_threads=True,  # each session (replicated worker) has its own pools, as the reference's
        allow_soft_placement=True,  # ops without a GPU kernel go to the CPU; the trace below checks the rest
    )
    if config.device == "cpu":
        options.device_count["GPU"] = 0  # a CPU run stays on the CPU on a GPU host too
    else:
        options.gpu_options.allow_growth = True  # take GPU memory as needed, not all of it at once
    with _deprecations_silenced():
        if config.model_format == "saved-model":
            graph, sess, inp, out, others, facts = _load_saved_model(tf, config, options)
        elif config.model_format == "frozen-graph":
            graph, sess, inp, out, facts = _load_frozen_graph(tf, config, options)
            others = []
        else:
            msg = f"the tensorflow backend does not load --model-format {config.model_format}"
            raise BenchError(msg)
    session = TfSession(sess, graph, _describe(sess, graph, inp, out, others, config), config, facts)
    if config.device == "cuda":
        session.file_facts["gpu_ops"] = _check_gpu_used(tf, session)
        session.file_facts["gpus"] = gpus
    return session


def _check_device(tf: Any, config: Config) -> list[str]:
    """A CUDA request needs a GPU TensorFlow can use: refuse before TensorFlow quietly
    places everything on the CPU. Returns the GPUs' names."""
    if config.device != "cuda":
        return []
    if not tf.test.is_built_with_cuda():
        msg = (
            f"--device cuda was requested but this TensorFlow {tf.__version__} is a CPU-only build "
            "(tensorflow-cpu): use an mlbox tensorflow cuda image, or pip install 'tensorflow[and-cuda]'"
        )
        raise BenchError(msg)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        msg = "--device cuda was requested but TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty)"
        raise BenchError(
            msg + ": run on a GPU machine with the GPUs passed to the container (`mlbox run` does: --gpus all)"
        )
    return [str(tf.config.experimental.get_device_details(g).get("device_name", g.name)) for g in gpus]


def _read_frozen_graph(tf: Any, path: str) -> Any:
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except OSError as err:
        msg = f"cannot read {path}: {err.strerror}"
        raise BenchError(msg) from None
    except DecodeError:
        msg = f"{path} is not a frozen TensorFlow graph (a serialized GraphDef)"
        raise BenchError(msg + "; a SavedModel is a directory (--model-format saved-model)") from None
    return graph_def


def file_metadata(graph_def: Any) -> dict[str, Any]:
    """mlbox's note in a synthetic graph (a string constant named mlbox.json), if any."""
    for node in graph_def.node:
        if node.name == METADATA_NODE and node.op == "Const":
            values = node.attr["value"].tensor.string_val
            try:
                facts = json.loads(values[0]) if values else None
            except ValueError:
                return {}
            return facts if isinstance(facts, dict) else {}
    return {}


def _pick_names(graph_def: Any, config: Config) -> tuple[str, str]:
    """The input and output tensors: given, else MLCommons' names, else the only placeholder."""
    nodes = {n.name: n for n in graph_def.node}

    def tensor(name: str) -> str:
        return name if ":" in name else name + ":0"

    def exists(name: str) -> bool:
        return name.rsplit(":", 1)[0] in nodes

    if config.input_name:
        inp = tensor(config.input_name)
    elif exists(DEFAULT_INPUT):
        inp = DEFAULT_INPUT
    else:
        placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
        if len(placeholders) != 1:
            msg = f"{config.modelpath} has no {DEFAULT_INPUT} and {len(placeholders)} placeholders"
            raise BenchError(msg + f" ({', '.join(placeholders[:5])}): name the input with --tf-input")
        inp = placeholders[0] + ":0"
    if config.output_name:
        out = tensor(config.output_name)
    else:
        found = [name for name in DEFAULT_OUTPUTS if exists(name)]
        if not found:
            msg = f"{config.modelpath} has none of {', '.join(DEFAULT_OUTPUTS)}: name the output with --tf-output"
            raise BenchError(msg)
        out = found[0]
    for what, name in (("--tf-input", inp), ("--tf-output", out)):
        if not exists(name):
            msg = f"{what} {name}: {config.modelpath} has no node {name.rsplit(':', 1)[0]!r}"
            raise BenchError(msg)
    return inp, out


def _load_frozen_graph(tf: Any, config: Config, options: Any) -> tuple[Any, Any, str, str, dict[str, Any]]:
    """As the reference: optimize_for_inference for a float32 input, else uint8, else the
    graph as it is; imported without a name prefix, so the tensors keep their names."""
    from tensorflow.python.tools.optimize_for_inference_lib import optimize_for_inference

    graph_def = _read_frozen_graph(tf, config.modelpath)
    facts: dict[str, Any] = {"format": "frozen-graph"}
    noted = file_metadata(graph_def)
    if noted:
        facts["file"] = noted
    inp, out = _pick_names(graph_def, config)
    graph = tf.Graph()
    optimized = None
    ends = ([inp.split(":")[0]], [out.split(":")[0]])
    for dtype in (tf.float32, tf.uint8):
        try:
            candidate = optimize_for_inference(graph_def, *ends, dtype.as_datatype_enum, False)
            with graph.as_default():
                tf.compat.v1.import_graph_def(candidate, name="")
        except ValueError:
            graph = tf.Graph()
            continue
        optimized = dtype.name
        break
    if optimized is None:
        try:
            with graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except ValueError as err:
            msg = f"TensorFlow cannot import the graph {config.modelpath}: {err}"
            raise BenchError(msg) from None
    facts["optimize_for_inference"] = optimized or "not applicable (graph imported as is)"
    return graph, tf.compat.v1.Session(graph=graph, config=options), inp, out, facts


def _load_saved_model(tf: Any, config: Config, options: Any) -> tuple[Any, Any, str, str, list[str], dict[str, Any]]:
    """A SavedModel's serving signature, loaded into a TF1 session (as TensorFlow Serving
    does): its one input; the output --tf-output names, else one named ArgMax, else the
    class ids (an integer output), else the first. Returns the other outputs too: their
    shapes may tell the class count."""
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph, config=options)
    try:
        with graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(sess, SERVING_TAGS, config.modelpath)
    except (OSError, RuntimeError, ValueError) as err:
        msg = f"TensorFlow cannot load the SavedModel {config.modelpath} (tags {SERVING_TAGS}): {err}"
        raise BenchError(msg) from None
    signatures = dict(meta.signature_def)
    name = "serving_default" if "serving_default" in signatures else next(iter(sorted(signatures)), None)
    if name is None:
        msg = f"the SavedModel {config.modelpath} has no signature to run"
        raise BenchError(msg)
    sig = signatures[name]
    inputs = {key: info.name for key, info in sig.inputs.items()}
    outputs = {key: info.name for key, info in sig.outputs.items()}
    inp = _pick_signature_tensor(inputs, config.input_name, "--tf-input", config.modelpath)
    integer = {key: n for key, n in outputs.items() if graph.get_tensor_by_name(n).dtype.is_integer}
    out = _pick_signature_tensor(outputs, config.output_name, "--tf-output", config.modelpath, integer)
    key = next(k for k, n in outputs.items() if n == out)
    facts = {"format": "saved-model", "signature": name, "tags": SERVING_TAGS, "signature_output": key}
    return graph, sess, inp, out, [n for n in outputs.values() if n != out], facts


def _pick_signature_tensor(
    tensors: dict[str, str], wanted: str | None, flag: str, path: str, preferred: dict[str, str] | None = None
) -> str:
    if wanted is not None:
        for key, name in tensors.items():
            if wanted in (key, name, name.split(":")[0]):
                return name
        msg = f"{flag} {wanted}: the SavedModel {path}'s signature has {', '.join(sorted(tensors))}"
        raise BenchError(msg)
    if flag == "--tf-input" and len(tensors) != 1:
        msg = f"the SavedModel {path}'s signature has {len(tensors)} inputs ({', '.join(sorted(tensors))})"
        raise BenchError(msg + ": mlbox-bench feeds one image; name it with --tf-input")
    argmax = [name for name in tensors.values() if name.split("/")[-1].startswith("ArgMax")]
    if argmax:
        return argmax[0]
    pool = preferred or tensors
    return pool[sorted(pool)[0]]


def _describe(sess: Any, graph: Any, inp: str, out: str, others: list[str], config: Config) -> ModelIO:
    """Input shape and type from the graph; the output's shape, and an ArgMax output's
    class count, from one run of a zero sample: the ArgMax's input, or another output of
    the signature that has scores."""
    x, y = graph.get_tensor_by_name(inp), graph.get_tensor_by_name(out)
    dims = x.shape.as_list() if x.shape.rank is not None else []
    shape = config.input_shape or tuple(dims[1:])
    if not shape or any(d is None for d in shape):
        msg = f"the input {inp} of {config.modelpath} has shape {dims}: pass --input-shape (e.g. 224,224,3)"
        raise BenchError(msg)
    dtype = np.dtype(x.dtype.as_numpy_dtype)
    probes = [y.op.inputs[0] if y.op.type == "ArgMax" else y, *(graph.get_tensor_by_name(n) for n in others)]
    try:
        first, *found = sess.run([y, *probes], feed_dict={x: np.zeros((1, *shape), dtype=dtype)})
    except Exception as err:  # TensorFlow's own error, with the shape we tried
        msg = f"{config.modelpath} does not run on an input of shape {(1, *shape)}: {str(err).splitlines()[0]}"
        raise BenchError(msg + " (pass --input-shape)") from None
    scores = [np.asarray(f) for f in found if np.asarray(f).ndim == 2 and np.asarray(f).shape[-1] > 1]
    classes = scores[0].shape[-1] if scores else None
    out_dtype = np.dtype(y.dtype.as_numpy_dtype)
    output = Output(
        out,
        out_dtype.name,
        (None, *np.asarray(first).shape[1:]),
        index_range=classes if np.issubdtype(out_dtype, np.integer) else None,
    )
    return ModelIO(inp, tuple(int(d) for d in shape), dtype.type, (output,))


def ops_by_device(run_metadata: Any) -> dict[str, int]:
    """How many operations ran on each device, from a traced run's step stats."""
    return {stats.device: len(stats.node_stats) for stats in run_metadata.step_stats.dev_stats}


def gpu_ops(counts: dict[str, int]) -> int:
    return sum(n for device, n in counts.items() if "/device:GPU:" in device)


def _check_gpu_used(tf: Any, session: TfSession) -> dict[str, int]:
    """Trace one run and refuse if no operation ran on a GPU (a placement that went to
    the CPU after all). Returns the operations per device."""
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    metadata = tf.compat.v1.RunMetadata()
    x = np.zeros((1, *session.io.input_shape), dtype=session.io.input_dtype)
    session.sess.run(session._output, feed_dict={session._input: x}, options=options, run_metadata=metadata)
    counts = ops_by_device(metadata)
    if not gpu_ops(counts):
        where = ", ".join(f"{d}: {n}" for d, n in counts.items()) or "no trace"
        msg = f"--device cuda was requested but TensorFlow ran no operation of {session.config.modelpath} on a GPU"
        raise BenchError(msg + f" ({where})")
    return counts
