"""mlbox-bench on the host with real LoadGen and onnxruntime, on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlbox_bench.cli import main


def test_offline_short_run_is_valid_and_writes_logs(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"  # created by the harness
    rc = main(["--modelpath", str(tiny_model), "--duration", "1", "--samples", "64", "--output_dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "result.json"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    assert result["validity"] == "VALID"
    assert result["scenario"] == "Offline"
    assert result["metric"]["name"] == "result_samples_per_second"
    assert result["metric"]["value"] > 0
    assert result["backend"]["provider"] == "CPUExecutionProvider"
    assert result["effective_settings"]["min_duration_ms"] == 1000
    assert result["model"]["path"] == str(tiny_model)


def test_cuda_on_a_cpu_host_is_refused(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--modelpath", str(tiny_model), "--ep", "CUDAExecutionProvider", "--output_dir", str(tmp_path)])
    assert rc == 3
    assert "CUDAExecutionProvider is not available" in capsys.readouterr().err
    assert not (tmp_path / "result.json").exists()
