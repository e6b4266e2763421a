"""RetinaNet on real parts: the catalog's synthetic detection image (the full-size twin of
MLCommons' resnext50_32x4d_fpn.onnx: 800x800, ResNeXt50-32x4d FPN, post-processing in the
graph) built as a user builds it, then short Offline and SingleStream runs with no network.

A sample costs about 2.5 s on a 2-core machine, so the runs are a few queries each and their
verdict is not the point (--allow-invalid): what is, is that the image knows its task (the
catalog's, as MLBOX_DEFAULT_TASK) and that mlbox-bench answers LoadGen with detections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.images.conftest import build
from tests.support.engine import Mlbox, result_of, run_container

# Generating the 150 MB twin and building its image take minutes on a busy machine.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

# A handful of queries at a rate the machine keeps: no calibration run, a short run.
SHORT = {
    "Offline": ["--duration", "1", "--samples", "4", "--min-query-count", "4", "--target-qps", "0.5"],
    "SingleStream": [
        "--duration",
        "1",
        "--samples",
        "4",
        "--min-query-count",
        "4",
        "--max-query-count",
        "4",
        "--target-latency",
        "4000",
    ],
}


@pytest.fixture(scope="module")
def retinanet(base_image: str, mlbox: Mlbox) -> str:
    tag = build(mlbox, base_image, "synthetic", model="retinanet")
    assert tag.endswith(":retinanet-cpu-synthetic")
    return tag


def test_the_image_says_it_detects_and_carries_the_detection_scorer(retinanet: str, docker_client: Any) -> None:
    image = docker_client.images.get(retinanet)
    labels = image.labels
    assert (labels["mlbox.model.task"], labels["mlbox.model.mlperf_name"]) == ("detection", "retinanet")
    assert (labels["mlbox.weights"], labels["mlbox.model.file"]) == ("synthetic", "resnext50_32x4d_fpn_synthetic.onnx")
    assert "pycocotools==2.0.11" in labels["mlbox.backend.packages"].split()
    assert "MLBOX_DEFAULT_TASK=detection" in image.attrs["Config"]["Env"]
    check = (
        "import onnxruntime as ort, pycocotools.cocoeval;"
        "s = ort.InferenceSession('/opt/mlbox/model/resnext50_32x4d_fpn_synthetic.onnx');"
        "print([(i.name, i.shape) for i in s.get_inputs()], [o.name for o in s.get_outputs()])"
    )
    out = docker_client.containers.run(
        retinanet, ["-c", check], entrypoint="python3", remove=True, network_mode="none"
    ).decode()
    assert "[('images', [1, 3, 800, 800])] ['boxes', 'scores', 'labels']" in out


@pytest.mark.parametrize("scenario", list(SHORT))
def test_the_image_runs_detection_with_no_network(
    scenario: str, retinanet: str, docker_client: Any, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    code, logs = run_container(
        docker_client,
        retinanet,
        ["--scenario", scenario, *SHORT[scenario], "--allow-invalid"],
        results=out,
        timeout=900,
    )
    assert code == 0, logs[-6000:]
    result = result_of(out)
    assert result["effective_settings"]["scenario"] == scenario
    assert result["sources"]["task"] == "MLBOX_DEFAULT_TASK (image)"
    assert result["model"]["weights"] == "synthetic"
    assert (result["backend"]["name"], result["backend"]["provider"]) == ("onnxruntime", "CPUExecutionProvider")
    detail = (out / "mlperf_log_detail.txt").read_text()
    logged = {
        e["key"]: e["value"]
        for e in (json.loads(line.split(":::MLLOG ", 1)[1]) for line in detail.splitlines() if ":::MLLOG" in line)
    }
    assert logged["effective_scenario"] == scenario
    assert logged["result_samples_per_second" if scenario == "Offline" else "result_mean_latency_ns"] > 0
