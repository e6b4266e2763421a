"""mlbox-bench on a GPU against plain loops of its libraries, in one run, as ratios.

    python benchmarks/gpu.py [--seconds 5] [--out DIR]        # on a GPU machine
    python benchmarks/gpu.py --cpu --quick                    # the same parts on the CPU

On the synthetic ResNet-50 v1.5 (random weights, the MLPerf I/O), 1024 samples in host
memory (mlperf.conf's performance sample count), batch 256 for the plain loops:

- onnxruntime fp32: a plain loop with numpy inputs, and with IOBinding and the input
  already in GPU memory; mlbox-bench Offline with its defaults (the runner search) and
  with --samples-on-device. Target: defaults >= 0.95 x the best plain loop.
- onnxruntime fp16 (mlbox's converter, fp32 I/O kept, prefer_nhwc=1): plain IOBinding
  loop against mlbox-bench (--samples-on-device). Target >= 0.95. The fp16 model's top-1
  agreement with fp32's on the samples (random weights: agreement, not accuracy).
- PyTorch fp16 channels-last (TorchScript): a plain loop with device inputs against
  mlbox-bench (--half --channels-last --samples-on-device). Target >= 0.9.
- Server: mlbox-bench's find-peak with onnxruntime fp16 against its own Offline.
  Target: peak >= 0.8 x Offline. SingleStream: its p90 against a plain batch-1 loop.

Each mlbox-bench run is its own process, as users run it. Parts that fail print their
error and the run goes on. This is not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "toolkit"), str(REPO / "entrypoints")]
SAMPLES = 1024


def samples(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (SAMPLES, 3, size, size), dtype=np.uint8).astype(np.float32) - np.float32(118)


def make_models(work: Path, cpu: bool) -> dict[str, Path]:
    from mlbox.catalog import Derive, Variant
    from mlbox.convert import derived_model
    from mlbox.fetch import digests
    from mlbox.synthetic import build, torch_model_bytes

    models = {"onnx-fp32": work / "resnet50.onnx", "torchscript": work / "resnet50.pt"}
    models["onnx-fp32"].write_bytes(build("resnet50", 0).SerializeToString())
    fp16 = Variant(
        description="fp16",
        framework="onnx",
        precision="fp16",
        backend="onnxruntime",
        file="resnet50_fp16.onnx",
        derive=Derive(source="fp32", convert="fp16"),
    )
    models["onnx-fp16"] = derived_model(fp16, models["onnx-fp32"], digests(models["onnx-fp32"])[1], work / "cache")
    models["torchscript"].write_bytes(torch_model_bytes("resnet50-torch", 0))
    return models


def timed(run: Callable[[int], Any], count: int, seconds: float) -> float:
    """samples/s of ``run(i)`` (a batch of ``count``) over ``seconds`` after 5 warm-ups."""
    for i in range(5):
        run(i)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(n)
        n += 1
    return n * count / (time.perf_counter() - start)


def ort_session(model: Path, cpu: bool, options: dict[str, str] | None = None) -> Any:
    import onnxruntime as ort

    if not cpu and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    provider: Any = "CPUExecutionProvider" if cpu else ("CUDAExecutionProvider", options or {})
    return ort.InferenceSession(str(model), providers=[provider])


def ort_plain(
    model: Path,
    data: np.ndarray,
    batch: int,
    seconds: float,
    cpu: bool,
    on_device: bool,
    options: dict[str, str] | None = None,
) -> float:
    """numpy inputs (onnxruntime copies them), or IOBinding of batches already on the GPU."""
    import onnxruntime as ort

    sess = ort_session(model, cpu, options)
    starts = list(range(0, len(data) - batch + 1, batch))
    if not on_device or cpu:
        return timed(
            lambda i: sess.run(["ArgMax:0"], {"input_tensor:0": data[starts[i % len(starts)] :][:batch]}),
            batch,
            seconds,
        )
    device = ort.OrtValue.ortvalue_from_numpy(data, "cuda", 0)
    row = data[0].nbytes

    def run(i: int) -> None:
        binding = sess.io_binding()
        binding.bind_input(
            "input_tensor:0",
            "cuda",
            0,
            np.float32,
            [batch, *data.shape[1:]],
            device.data_ptr() + starts[i % len(starts)] * row,
        )
        binding.bind_output("ArgMax:0", "cpu")
        sess.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()

    return timed(run, batch, seconds)


def torch_plain(model: Path, data: np.ndarray, batch: int, seconds: float, cpu: bool, half: bool) -> float:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in recent PyTorch (still supported)
        torch._C._jit_set_profiling_executor(False)  # as mlbox-bench runs TorchScript
        module = torch.jit.load(str(model), map_location="cpu" if cpu else "cuda").eval()
    device = torch.device("cpu" if cpu else "cuda")
    dtype = torch.float16 if half and not cpu else torch.float32
    if not cpu:
        module = module.to(dtype=dtype, memory_format=torch.channels_last)
    with torch.inference_mode():
        x = torch.from_numpy(data).to(device, dtype=dtype)
        if not cpu:
            x = x.contiguous(memory_format=torch.channels_last)
        starts = list(range(0, len(data) - batch + 1, batch))

        def run(i: int) -> None:
            module(x[starts[i % len(starts)] :][:batch]).argmax(1).cpu()

        return timed(run, batch, seconds)


def bench(out: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mlbox_bench", "--output-dir", str(out), "--allow-invalid", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "entrypoints"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        msg = f"mlbox-bench exited {proc.returncode}: {' '.join(args)}\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def metric(r: dict[str, Any]) -> float:
    return float(r["metric"]["value"] or 0)


def how(r: dict[str, Any]) -> str:
    """What the run really did: the plan (searched or asked for) and the largest batch."""
    h = r["harness"]
    plan = h["runner"]
    picked = f"searched {len(h['tuning']['tried'])} plans, " if h.get("tuning") else ""
    return (
        f"[{picked}{plan['runner']} x{plan['workers']}, batch {plan.get('offline_batch') or plan['batch']}, "
        f"largest run {h['observed']['largest_batch']}]"
    )


def colour_top1(work: Path, name: str, model: Path, dataset: Path, *flags: str) -> float:
    r = bench(
        work / f"acc-{name}",
        "--modelpath",
        str(model),
        "--mode",
        "accuracy",
        "--dataset",
        str(dataset),
        "--preprocessed-dir",
        str(work / "prep"),
        *flags,
    )
    return float(r["accuracy"]["top1"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--quick", action="store_true", help="1-second measurements, smaller batches (a smoke run)")
    parser.add_argument("--cpu", action="store_true", help="run the same parts on the CPU (no GPU here)")
    parser.add_argument("--out", type=Path, help="also write the table (and each part as it ends) here")
    parser.add_argument("--parts", default="ort-fp32,ort-fp16,torch,server,single", help="comma-separated subset")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    batch = 8 if args.cpu else 256
    parts = set(args.parts.split(","))
    rows: list[tuple[str, str]] = []
    log = (args.out / "gpu-benchmark.txt").open("w") if args.out else None

    def row(name: str, value: str) -> None:
        rows.append((name, value))
        print(f"{name}: {value}", flush=True)
        if log:
            log.write(f"{name}: {value}\n")
            log.flush()

    def part(name: str, body: Callable[[], None]) -> None:
        if name not in parts:
            return
        try:
            body()
        except Exception as err:  # one part failing must not lose the others' figures
            row(f"{name} FAILED", f"{type(err).__name__}: {err}".splitlines()[0][:300])
            traceback.print_exc()

    from mlbox_bench.report import host_info

    host = host_info()
    row("host", f"{host['cpu']} x{host['cpus']}; GPUs {host['gpus'] or 'none'}")
    device = ["--ep", "CPUExecutionProvider"] if args.cpu else ["--ep", "CUDAExecutionProvider"]
    torch_device = ["--device", "cpu" if args.cpu else "cuda"]
    duration = ["--duration", str(seconds)]
    with tempfile.TemporaryDirectory(prefix="mlbox-gpu-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        models = make_models(work, args.cpu)
        data = samples(224)
        row("setup", f"models and samples in {time.perf_counter() - t:.0f} s")
        nhwc = {} if args.cpu else {"prefer_nhwc": "1"}
        options = ["--ep-options", "prefer_nhwc=1"] if nhwc else []

        def ort_fp32() -> None:
            numpy_loop = ort_plain(models["onnx-fp32"], data, batch, seconds, args.cpu, on_device=False)
            bound = ort_plain(models["onnx-fp32"], data, batch, seconds, args.cpu, on_device=True)
            row("ort fp32 plain loop, numpy inputs", f"{numpy_loop:.0f} samples/s")
            row("ort fp32 plain loop, IOBinding, input on the device", f"{bound:.0f} samples/s")
            r = bench(work / "o32", "--modelpath", str(models["onnx-fp32"]), *device, *duration)
            best = max(numpy_loop, bound)
            row("ort fp32 mlbox-bench Offline, defaults", f"{metric(r):.0f} = {metric(r) / best:.3f} x best {how(r)}")
            if args.cpu:
                return
            r = bench(work / "o32d", "--modelpath", str(models["onnx-fp32"]), *device, *duration, "--samples-on-device")
            row("ort fp32 mlbox-bench --samples-on-device", f"{metric(r):.0f} = {metric(r) / bound:.3f} x IOB {how(r)}")
            fixed = ["--tune", "off", "--runner", "threadpool", "--concurrency", "4", "--max-batchsize", "256"]
            for n, extra in enumerate(([], ["--samples-on-device"])):
                r = bench(
                    work / f"o32f{n}", "--modelpath", str(models["onnx-fp32"]), *device, *duration, *fixed, *extra
                )
                row(f"ort fp32 mlbox-bench tp4 b256 {extra}", f"{metric(r):.0f} {how(r)}")

        def ort_fp16() -> None:
            plain = ort_plain(models["onnx-fp16"], data, batch, seconds, args.cpu, on_device=not args.cpu, options=nhwc)
            extra = [] if args.cpu else ["--samples-on-device"]
            r = bench(work / "o16", "--modelpath", str(models["onnx-fp16"]), *device, *options, *duration, *extra)
            row("ort fp16 plain loop (IOBinding, prefer_nhwc)", f"{plain:.0f} samples/s")
            row("ort fp16 mlbox-bench Offline", f"{metric(r):.0f} = {metric(r) / plain:.3f} x plain {how(r)}")
            # Accuracy on a generated dataset: the synthetic ResNet's random weights answer
            # one class whatever the input (and overflow in fp16).
            from tests.support.colors import colour_classifier, colour_dataset

            from mlbox.catalog import Derive, Variant
            from mlbox.convert import derived_model
            from mlbox.fetch import digests

            dataset, _ = colour_dataset(work / "colours", count=60, wrong=6)
            fp32 = colour_classifier(work / "colour.onnx")
            v16 = Variant(
                description="fp16",
                framework="onnx",
                precision="fp16",
                backend="onnxruntime",
                file="colour16.onnx",
                derive=Derive(source="fp32", convert="fp16"),
            )
            fp16 = derived_model(v16, fp32, digests(fp32)[1], work / "cache")
            a32 = colour_top1(work, "c32", fp32, dataset, *device)
            a16 = colour_top1(work, "c16", fp16, dataset, *device, *options)
            row("ort fp16 top-1 / fp32 top-1, generated dataset", f"{a16:.3f} / {a32:.3f} = {a16 / a32:.3f}")

        def torch_part() -> None:
            plain = torch_plain(models["torchscript"], data, batch, seconds, args.cpu, half=True)
            flags = [] if args.cpu else ["--half", "--channels-last", "--samples-on-device"]
            ours = metric(
                bench(
                    work / "t16",
                    "--modelpath",
                    str(models["torchscript"]),
                    *torch_device,
                    *flags,
                    *duration,
                    "--max-batchsize",
                    str(batch),
                )
            )
            label = "torch fp32" if args.cpu else "torch fp16 channels-last"
            row(f"{label} plain loop (TorchScript, input on the device)", f"{plain:.0f} samples/s")
            row(f"{label} mlbox-bench Offline", f"{ours:.0f} samples/s = {ours / plain:.3f} x plain (>= 0.9)")
            if not args.cpu:
                from tests.support.colors import colour_classifier_torch, colour_dataset

                dataset, _ = colour_dataset(work / "tcolours", count=60, wrong=6)
                model = colour_classifier_torch(work / "colour.pt")
                a32 = colour_top1(work, "t32", model, dataset, *torch_device)
                a16 = colour_top1(work, "t16", model, dataset, *torch_device, "--half", "--channels-last")
                row(
                    "torch fp16 top-1 / fp32 top-1 on a generated dataset",
                    f"{a16:.3f} / {a32:.3f} = {a16 / a32:.3f} (>= 0.99)",
                )

        def server() -> None:
            model = models["onnx-fp32" if args.cpu else "onnx-fp16"]
            extra = [] if args.cpu else ["--samples-on-device", *options]
            offline = metric(bench(work / "so", "--modelpath", str(model), *device, *extra, *duration))
            peak = bench(
                work / "sp",
                "--modelpath",
                str(model),
                *device,
                *extra,
                "--scenario",
                "Server",
                "--mode",
                "find-peak",
                "--duration",
                str(max(2.0, seconds / 2)),
            )
            value = float(peak["metric"]["value"] or 0)
            row("Server find-peak", f"{value:.0f} q/s = {value / offline:.3f} x Offline {how(peak)} {peak['validity']}")
            row("Server find-peak errors", str(peak["loadgen_errors"][:3])[:300])
            fixed = bench(
                work / "sf",
                "--modelpath",
                str(model),
                *device,
                *extra,
                "--scenario",
                "Server",
                "--target-qps",
                f"{0.8 * offline:.0f}",
                *duration,
            )
            lat = fixed.get("latency_ns", {}).get("percentiles", {}).get("99.00_percentile")
            row("Server at 0.8 x Offline", f"{fixed['validity']} {metric(fixed):.0f}/s p99 {lat} ns {how(fixed)}")

        def single() -> None:
            plain_rate = ort_plain(models["onnx-fp32"], data, 1, seconds, args.cpu, on_device=False)
            r = bench(
                work / "ss", "--modelpath", str(models["onnx-fp32"]), *device, "--scenario", "SingleStream", *duration
            )
            p90 = float(r["plain_metric"]["value"]) / 1e6
            plain_ms = 1000 / plain_rate
            row(
                "SingleStream p90 (mlbox-bench) vs plain batch-1 latency",
                f"{p90:.3f} ms vs {plain_ms:.3f} ms = {p90 / plain_ms:.3f}",
            )

        part("ort-fp32", ort_fp32)
        part("ort-fp16", ort_fp16)
        part("torch", torch_part)
        part("server", server)
        part("single", single)
    print()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
