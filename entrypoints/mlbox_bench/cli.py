"""mlbox-bench: parse settings once, run LoadGen, write result.json, exit with the verdict."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from mlbox_bench import __version__
from mlbox_bench.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_USAGE, EXIT_VALID, BenchError
from mlbox_bench.settings import Settings, SettingsError, parse_settings

log = logging.getLogger("mlbox-bench")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="mlbox-bench: %(message)s", stream=sys.stderr)
    try:
        settings, print_only = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as err:
        print(f"mlbox-bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if print_only:
        print(json.dumps(settings.describe(), indent=2))
        return EXIT_VALID
    _exit_on_signals()
    try:
        return run(settings)
    except BenchError as err:
        print(f"mlbox-bench: error: {err}", file=sys.stderr)
        return EXIT_ERROR


def run(s: Settings) -> int:
    from mlbox_bench.backend import OnnxRuntimeBackend
    from mlbox_bench.harness import run_loadgen
    from mlbox_bench.results import build_result, file_sha256, host_info, parse_detail_log, write_json_atomic

    output_dir = Path(s.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)  # LoadGen skips the run without it
    except OSError as err:
        msg = f"cannot create output directory {output_dir}: {err.strerror}"
        raise BenchError(msg + " (mount a writable directory there)") from None
    if s.weights == "synthetic":
        log.warning("SYNTHETIC WEIGHTS: this model has random weights; performance only, accuracy is meaningless")
    backend = OnnxRuntimeBackend(s)
    log.info(
        "%s %s run: model %s on %s (%s, runner %s, %d worker(s))",
        s.scenario,
        s.mode,
        s.modelpath,
        backend.provider,
        s.execmode,
        s.runner,
        1 if s.runner == "inline" else s.concurrency,
    )
    facts = run_loadgen(s, backend, output_dir)
    detail = output_dir / "mlperf_log_detail.txt"
    if not detail.is_file():
        msg = f"LoadGen wrote no {detail}"
        raise BenchError(msg)
    result = build_result(parse_detail_log(detail), s.scenario)
    assert s.modelpath is not None
    result.update(
        {
            "mode": s.mode,
            "model": {
                "name": s.model,
                "path": s.modelpath,
                "sha256": file_sha256(Path(s.modelpath)),
                "weights": s.weights,
            },
            "backend": {
                "name": s.backend,
                "version": backend.version,
                "provider": backend.provider,
                "execmode": s.execmode,
                "intraop": s.intraop,
                "interop": s.interop,
            },
            "runner": {"name": s.runner, "concurrency": s.concurrency, "max_batchsize": s.max_batchsize},
            "harness": {"name": "mlbox-bench", "version": __version__, **facts},
            "host": host_info(),
            "settings": {k: v["value"] for k, v in s.describe().items()},
        }
    )
    write_json_atomic(output_dir / "result.json", result)
    metric = result["metric"]
    log.info("%s: %s = %s %s", result["validity"], metric["name"], metric["value"], metric["unit"])
    print(output_dir / "result.json")
    if result["validity"] == "VALID" or s.allow_invalid:
        return EXIT_VALID
    log.warning("LoadGen judged this run INVALID (see mlperf_log_summary.txt); --allow-invalid exits 0")
    return EXIT_INVALID


def _exit_on_signals() -> None:
    """Ctrl-C / SIGTERM: LoadGen cannot be stopped mid-test, so leave at once, non-zero."""

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        print(f"mlbox-bench: {name}: stopping; this run's results are incomplete", file=sys.stderr)
        sys.stderr.flush()
        import os

        os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
