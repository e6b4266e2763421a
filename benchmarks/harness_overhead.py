"""mlbox-bench against a plain loop of its backend library, on the same model and
settings, in one run.

    .venv/bin/python benchmarks/harness_overhead.py [--seconds 10] [--quick] [--parts ...]

Targets:
- Offline throughput >= 0.97 x the plain loop (best batch size for each), on the
  ResNet-50-shaped synthetic model: onnxruntime (issue 3), and PyTorch fp32 and int8
  TorchScript against a plain `torch.inference_mode` loop (issue 12; parts torch-fp32,
  torch-int8; PyTorch's default threads on both sides); TensorFlow's frozen graph against a
  plain `Session.run` loop, and LiteRT's fp32 and int8 files against a plain
  `set_tensor`/`invoke` loop (issue 13; parts tf-fp32, tflite-fp32, tflite-int8; the
  libraries' default threads on both sides; the int8 file's inputs quantized beforehand on
  both sides, as mlbox-bench quantizes its samples when it loads them);
- harness overhead per sample <= 20 us on a tiny model, Offline and Server.

The plain loop runs over the same samples mlbox-bench keeps loaded (mlperf.conf's
performance sample count, 1024 for resnet50: 616 MB), in consecutive slices, which is
its best case. Looping over one cache-hot batch would measure a different thing: the
tiny model reads its input at memory speed, and a hot batch runs ~2.5x faster than the
same work over 616 MB of samples.

Every mlbox-bench run is its own process, as users run it. Ratios are measured here,
in this run, on this machine; absolute times vary between machines and runs. This is
not a test: it prints figures and exits 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import Figures

from mlbox_bench.cli import tighten_timer_slack

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 32)
SAMPLES = 1024  # mlperf.conf's performance_sample_count for resnet50
# The tiny model runs single-threaded in both: a 2-thread session contends with LoadGen's
# threads on small machines and the comparison would measure the scheduler, not us.
TINY_INTRAOP = 1


def samples() -> np.ndarray:
    """Inputs like mlbox-bench's synthetic ones: 8-bit pixels minus a mean."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (SAMPLES, 3, 224, 224), dtype=np.uint8).astype(np.float32) - np.float32(118)


def torch_samples(data: np.ndarray) -> np.ndarray:
    """The same pixels in torchvision's preprocessing range, as mlbox-bench makes them."""
    return (data + np.float32(118)) * np.float32(1 / (255 * 0.226)) - np.float32(0.449 / 0.226)


def make_torch_models(workdir: Path) -> dict[str, Path]:
    sys.path[:0] = [str(REPO / "toolkit")]
    from mlbox.synthetic import torch_model_bytes

    models = {}
    for name, generator in (("torch-fp32", "resnet50-torch"), ("torch-int8", "resnet50-torch-int8")):
        path = workdir / f"{name}.pt"
        path.write_bytes(torch_model_bytes(generator, 0))
        models[name] = path
    return models


def plain_torch_throughput(model: Path, data: np.ndarray, batch: int, seconds: float, intraop: int) -> float:
    """samples/s of a TorchScript module under inference_mode over consecutive slices."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in 2.13 (still supported)
        module = torch.jit.load(str(model)).eval()
    starts = range(0, len(data) - batch + 1, batch)
    with torch.inference_mode():
        for start in list(starts)[:3]:
            module(torch.from_numpy(data[start : start + batch]))
        runs, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < seconds:
            start = starts[runs % len(starts)]
            module(torch.from_numpy(data[start : start + batch])).argmax(1)
            runs += 1
    return runs * batch / (time.perf_counter() - begin)


TF_PARTS = {
    "tf-fp32": ("resnet50-tf", ".pb"),
    "tflite-fp32": ("resnet50-tflite", ".tflite"),
    "tflite-int8": ("resnet50-tflite-int8", ".tflite"),
}


def make_tf_models(workdir: Path, parts: set[str]) -> dict[str, Path]:
    """mlbox's synthetic twins: the frozen ResNet-50 v1.5 graph and the TFLite files."""
    sys.path[:0] = [str(REPO / "toolkit")]
    from mlbox.synthetic_tf import tf_model_bytes

    models = {}
    for part in sorted(parts):
        generator, suffix = TF_PARTS[part]
        path = workdir / f"{part}{suffix}"
        path.write_bytes(tf_model_bytes(generator, 0))
        models[part] = path
    return models


def nhwc_samples(data: np.ndarray) -> np.ndarray:
    """The same pixels in TensorFlow's layout (mlbox-bench makes NHWC samples for these models)."""
    return np.ascontiguousarray(data.transpose(0, 2, 3, 1))


def plain_tf_throughput(model: Path, data: np.ndarray, batch: int, seconds: float, intraop: int) -> float:
    """samples/s of Session.run(ArgMax:0) over consecutive slices, the graph loaded as the
    reference loads it (optimize_for_inference, a TF1 session), with TensorFlow's threads."""
    from mlbox_bench.backends.tensorflow import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.tools.optimize_for_inference_lib import optimize_for_inference
    from tensorflow.python.util import deprecation

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(model.read_bytes())
    with deprecation.silence():
        graph_def = optimize_for_inference(graph_def, ["input_tensor"], ["ArgMax"], tf.float32.as_datatype_enum, False)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    options = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intraop, inter_op_parallelism_threads=intraop)
    sess = tf.compat.v1.Session(graph=graph, config=options)
    x, y = graph.get_tensor_by_name("input_tensor:0"), graph.get_tensor_by_name("ArgMax:0")
    starts = range(0, len(data) - batch + 1, batch)
    for start in list(starts)[:3]:
        sess.run(y, {x: data[start : start + batch]})
    runs, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        start = starts[runs % len(starts)]
        sess.run(y, {x: data[start : start + batch]})
        runs += 1
    sess.close()
    return runs * batch / (time.perf_counter() - begin)


def plain_tflite_throughput(model: Path, data: np.ndarray, batch: int, seconds: float, intraop: int) -> float:
    """samples/s of one LiteRT interpreter resized to the batch: set_tensor, invoke, the
    label (the ArgMax output, or the argmax of the scores) over consecutive slices.
    ``data`` is already in the input's type (quantized for an int8 file)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=intraop or None)
    inp = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    out = next((o for o in outputs if o["name"].startswith("ArgMax")), outputs[0])
    interpreter.resize_tensor_input(inp["index"], [batch, *data.shape[1:]], strict=False)
    interpreter.allocate_tensors()

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        answer: np.ndarray = interpreter.get_tensor(out["index"])
        return answer if answer.ndim == 1 else np.argmax(answer, axis=1)

    starts = range(0, len(data) - batch + 1, batch)
    for start in list(starts)[:3]:
        run(data[start : start + batch])
    runs, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        start = starts[runs % len(starts)]
        run(data[start : start + batch])
        runs += 1
    return runs * batch / (time.perf_counter() - begin)


def quantized_like_the_file(model: Path, data: np.ndarray) -> np.ndarray:
    """``data`` as mlbox-bench loads it for this file: quantized with the input's scale and
    zero point when the input is an integer type."""
    from ai_edge_litert.interpreter import Interpreter

    from mlbox_bench.backends import quantize

    inp = Interpreter(model_path=str(model)).get_input_details()[0]
    scale, zero_point = inp["quantization"]
    if inp["dtype"] == np.float32:
        return data
    parts = [quantize(data[i : i + 64], inp["dtype"], scale, zero_point) for i in range(0, len(data), 64)]
    return np.concatenate(parts)


def make_models(workdir: Path) -> dict[str, Path]:
    sys.path[:0] = [str(REPO / "toolkit")]
    from mlbox.synthetic import build

    models = {}
    for name in ("resnet50", "tiny"):
        path = workdir / f"{name}.onnx"
        path.write_bytes(build(name, 0).SerializeToString())
        models[name] = path
    return models


def session(model: Path, intraop: int) -> Any:
    import onnxruntime as ort

    ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intraop
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def plain_throughput(model: Path, data: np.ndarray, batch: int, seconds: float, intraop: int) -> float:
    """samples/s of session.run over consecutive slices of ``data``, after a warm-up."""
    sess = session(model, intraop)
    starts = range(0, len(data) - batch + 1, batch)
    for start in list(starts)[:3]:
        sess.run(["ArgMax:0"], {"input_tensor:0": data[start : start + batch]})
    runs, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        start = starts[runs % len(starts)]
        sess.run(["ArgMax:0"], {"input_tensor:0": data[start : start + batch]})
        runs += 1
    return runs * batch / (time.perf_counter() - begin)


def plain_latency_ns(model: Path, data: np.ndarray, gap_s: float, intraop: int, runs: int = 2000) -> float:
    """Median time of one single-sample session.run, walking over ``data``, pausing
    ``gap_s`` between runs (a run after a pause is slower than back to back: caches
    and clocks cool down, as they do between Server arrivals)."""
    tighten_timer_slack()  # sleep as precisely as mlbox-bench does
    sess = session(model, intraop)
    for i in range(20):
        sess.run(["ArgMax:0"], {"input_tensor:0": data[i : i + 1]})
    times = []
    for i in range(runs):
        x = data[i % len(data) : i % len(data) + 1]
        if gap_s:
            time.sleep(gap_s)
        t = time.perf_counter_ns()
        sess.run(["ArgMax:0"], {"input_tensor:0": x})
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times)


def null_sut_p50_ns(work: Path, qps: float, seconds: float) -> float:
    """LoadGen's own Server latency on this machine: a SUT that answers inside the issue
    callback, with no inference and no hand-off (same timer slack as mlbox-bench)."""
    out = work / "null-sut"
    subprocess.run([sys.executable, __file__, "--null-sut", str(out), str(qps), str(seconds)], check=True)
    for line in (out / "mlperf_log_summary.txt").read_text().splitlines():
        if line.startswith("50.00 percentile latency (ns)"):
            return float(line.split(":")[1])
    sys.exit(f"no p50 latency in {out}/mlperf_log_summary.txt")


def run_null_sut(out: Path, qps: float, seconds: float) -> None:
    import mlperf_loadgen as lg

    tighten_timer_slack()  # as mlbox-bench does
    answer = np.zeros((1, 1), dtype=np.int64)

    def issue(query_samples: list[Any]) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, answer.ctypes.data, 8) for q in query_samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(SAMPLES, SAMPLES, lambda _: None, lambda _: None)
    ts = lg.TestSettings()
    ts.FromConfig("", "resnet50", "Server", 0)
    ts.scenario, ts.mode = lg.TestScenario.Server, lg.TestMode.PerformanceOnly
    ts.min_duration_ms, ts.min_query_count, ts.server_target_qps = int(seconds * 1000), 459, float(qps)
    settings = lg.LogSettings()
    out.mkdir(parents=True, exist_ok=True)
    settings.log_output.outdir = str(out)
    lg.StartTestWithLogSettings(sut, qsl, ts, settings, str(out / "no-audit.config"))


def handoff_ns(gap_s: float, runs: int = 3000) -> float:
    """Median time for a thread blocked on a queue to wake up and see an item put there,
    at the Server pace: the floor of any runner that keeps LoadGen's issue thread free."""
    import queue
    import threading

    tighten_timer_slack()
    q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    waits: list[int] = []

    def worker() -> None:
        while (t := q.get()) is not None:
            waits.append(time.perf_counter_ns() - t)

    thread = threading.Thread(target=worker)
    thread.start()
    for _ in range(runs):
        time.sleep(gap_s)
        q.put(time.perf_counter_ns())
    q.put(None)
    thread.join()
    return statistics.median(waits)


def bench(model: Path, out: Path, *args: str) -> dict[str, Any]:
    # Throughput is what is compared: a run that ended before its duration (its calibration
    # measured a slower rate than the run's) is LoadGen-INVALID but its rate is still measured.
    cmd = [sys.executable, "-m", "mlbox_bench", "--modelpath", str(model), "--output-dir", str(out), *args]
    cmd.append("--allow-invalid")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"mlbox-bench failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--quick", action="store_true", help="2-second measurements (a smoke run, noisy)")
    parser.add_argument(
        "--parts",
        default="resnet50,tiny-offline,tiny-server,torch-fp32,torch-int8,tf-fp32,tflite-fp32,tflite-int8",
        help="comma-separated subset to measure",
    )
    parser.add_argument("--json", type=Path, help="also write the figures there (see benchmarks/figures.py)")
    parser.add_argument("--null-sut", nargs=3, metavar=("OUT", "QPS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_sut:
        run_null_sut(Path(args.null_sut[0]), float(args.null_sut[1]), float(args.null_sut[2]))
        return 0
    seconds = 2.0 if args.quick else args.seconds
    parts = set(args.parts.split(","))
    rows: list[tuple[str, str]] = []
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="mlbox-bench-overhead-") as tmp:
        work = Path(tmp)
        models = make_models(work)
        data = samples()
        if "resnet50" in parts:
            plain, ours = offline_pair(models["resnet50"], data, work, seconds, "resnet50", 0)
            ratio = max(ours.values()) / max(plain.values())
            rows.append(
                ("resnet50 Offline throughput, mlbox-bench / plain (best batch each)", f"{ratio:.3f} (>= 0.97)")
            )
            figures.add("resnet50 onnxruntime Offline / plain", ratio, "ratio", "higher")
        if "tiny-offline" in parts:
            plain, ours = offline_pair(models["tiny"], data, work, seconds, "tiny", TINY_INTRAOP)
            overhead_us = (1 / max(ours.values()) - 1 / max(plain.values())) * 1e6
            rows.append(("tiny Offline harness overhead per sample (best batch each)", f"{overhead_us:.2f} us (<= 20)"))
            figures.add("tiny Offline harness overhead per sample", overhead_us, "us", "lower")
        torch_parts = sorted(parts & {"torch-fp32", "torch-int8"})
        if torch_parts:
            torch_models = make_torch_models(work)
            pixels = torch_samples(data)
            for part in torch_parts:
                plain, ours = offline_pair(torch_models[part], pixels, work, seconds, part, 0, plain_torch_throughput)
                ratio = max(ours.values()) / max(plain.values())
                label = f"resnet50 {part} Offline throughput, mlbox-bench / plain torch loop (best batch each)"
                rows.append((label, f"{ratio:.3f} (>= 0.97)"))
                figures.add(f"resnet50 {part} Offline / plain", ratio, "ratio", "higher")
        tf_parts = parts & set(TF_PARTS)
        if tf_parts:
            tf_models = make_tf_models(work, tf_parts)
            pixels = nhwc_samples(data)
            for part in sorted(tf_parts):
                model = tf_models[part]
                if model.suffix == ".pb":
                    plain, ours = offline_pair(model, pixels, work, seconds, part, 0, plain_tf_throughput)
                    loop = "plain Session.run loop"
                else:
                    inputs = quantized_like_the_file(model, pixels)
                    plain, ours = offline_pair(model, inputs, work, seconds, part, 0, plain_tflite_throughput)
                    loop = "plain LiteRT loop"
                label = f"resnet50 {part} Offline throughput, mlbox-bench / {loop} (best batch each)"
                rows.append((label, f"{max(ours.values()) / max(plain.values()):.3f} (>= 0.97)"))
                figures.add(
                    f"resnet50 {part} Offline / plain", max(ours.values()) / max(plain.values()), "ratio", "higher"
                )
        if "tiny-server" in parts:
            # Three medians measured at different moments are subtracted: repeat the whole
            # measurement and report the median, the single figure is noisy by a few us.
            runs = sorted(server_overhead_us(models["tiny"], data, work, seconds) for _ in range(3))
            label = "tiny Server harness overhead per sample (p50, median of 3; see above)"
            rows.append((label, f"{runs[1]:.2f} us (<= 20); runs {', '.join(f'{r:.1f}' for r in runs)}"))
            figures.add("tiny Server harness overhead p50", runs[1], "us", "lower")
    print()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    figures.write(args.json)
    return 0


def offline_pair(
    model: Path,
    data: np.ndarray,
    work: Path,
    seconds: float,
    label: str,
    intraop: int,
    plain_loop: Any = plain_throughput,
) -> tuple[dict[int, float], dict[int, float]]:
    """samples/s per batch size: the plain loop, then mlbox-bench Offline (its own process)."""
    plain = {b: plain_loop(model, data, b, seconds, intraop) for b in BATCHES}
    thread_flag = {".pt": "--torch-threads", ".pb": "--tf-intra-op-threads", ".tflite": "--tflite-threads"}
    threads = [thread_flag.get(model.suffix, "--intraop"), str(intraop)]
    ours = {}
    for b in BATCHES:
        r = bench(
            model,
            work / f"{label}-offline-{b}",
            "--scenario",
            "Offline",
            "--duration",
            str(seconds),
            "--max-batchsize",
            str(b),
            "--samples",
            str(SAMPLES),
            *threads,
        )
        ours[b] = float(r["metric"]["value"])
    for b in BATCHES:
        print(f"{label} Offline batch {b:>2}: plain {plain[b]:10.1f} samples/s, mlbox-bench {ours[b]:10.1f}")
    sys.stdout.flush()
    return plain, ours


def server_overhead_us(model: Path, data: np.ndarray, work: Path, seconds: float) -> float:
    """Server at a light load (10% of the plain single-sample rate): mlbox-bench's median
    latency minus a plain single-sample run at the same pace minus LoadGen's own median
    latency with a SUT that answers at once."""
    busy = plain_latency_ns(model, data, gap_s=0.0, intraop=TINY_INTRAOP)
    qps = 0.1 * 1e9 / busy
    lat = plain_latency_ns(model, data, gap_s=1.0 / qps, intraop=TINY_INTRAOP)
    r = bench(
        model,
        work / "tiny-server",
        "--scenario",
        "Server",
        "--duration",
        str(seconds),
        "--target-qps",
        f"{qps:.0f}",
        "--samples",
        str(SAMPLES),
        "--intraop",
        str(TINY_INTRAOP),
    )
    p50 = float(r["latency_ns"]["percentiles"]["50.00_percentile"])
    null = null_sut_p50_ns(work, qps, seconds)
    harness = (p50 - lat - null) / 1000
    wake = handoff_ns(1.0 / qps) / 1000
    print(
        f"tiny Server at {qps:.0f} QPS: mlbox-bench p50 {p50 / 1000:.1f} us"
        f" = plain run at that pace {lat / 1000:.1f} us + LoadGen with a null SUT {null / 1000:.1f} us"
        f" + harness {harness:.1f} us, of which {wake:.1f} us is a worker thread waking up"
        " (a queue hand-off measured alone at the same pace)"
    )
    return harness


if __name__ == "__main__":
    sys.exit(main())
