"""Every image family on real parts, cheaply: each backend's image (onnxruntime, PyTorch's
CPU build, tensorflow-cpu, LiteRT) built from the host's wheelhouse around a tiny twin
(tests/integration/conftest.py), then

- what the image says it carries (labels, the lock file);
- the tiny twin scoring a generated dataset mounted read-only, in the image, as the image's
  own user on a read-only root: the backend's preprocessing, label offset and accuracy;
- one short Offline run of the ResNet-50-shaped synthetic twin of the backend (the file
  `mlbox build` makes for the synthetic variants), mounted into the image.

Scenario by scenario behaviour is the unit tier's (in process); the full ResNet-50 matrix
per family is the images tier's (`make test-images`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Families, FamilySpec
from tests.support.engine import result_of, run_container

# The first test of a family builds its image (several minutes for TensorFlow on a busy machine).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

INDEX = {"pytorch": "https://download.pytorch.org/whl/cpu"}  # the backends whose pins come from another index
PREPROCESSING = {"pytorch": ("torchvision", 0)}  # else MLPerf's, offset -1 (1001 classes)


def normal(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class FamilyTests:
    """The tests of one family (a subclass per family: pytest-xdist's --dist loadscope runs
    a class's tests in one worker, which builds the family's image once)."""

    family: str

    def test_the_image_says_what_it_carries(self, families: Families, docker_client: Any) -> None:
        family = families[self.family]
        labels = docker_client.images.get(family.tag).labels
        assert (labels["mlbox.backend"], labels["mlbox.backend.version"]) == (self.family, family.spec.version)
        assert labels["mlbox.backend.index"] == INDEX.get(self.family, "pip's default index")
        assert labels["mlbox.model.file"] == family.spec.file
        lock = docker_client.containers.run(
            family.tag,
            ["-c", "cat /opt/mlbox/deps/requirements.lock"],
            entrypoint="sh",
            remove=True,
            network_mode="none",
        ).decode()
        assert "nvidia" not in lock  # no CUDA libraries in a CPU image
        pinned = {
            normal(line.split("==")[0]): line.split("==")[1].split()[0]
            for line in lock.splitlines()
            if "==" in line and not line.startswith("#")
        }
        assert all("--hash=sha256:" in line for line in lock.splitlines() if "==" in line)  # hash-pinned
        for pin in labels["mlbox.backend.packages"].split():  # the catalog's pins, as resolved into the image
            package, version = pin.split("==")
            assert pinned[normal(package.split("[")[0])] == version, pin

    def test_the_tiny_twin_scores_a_read_only_dataset_as_the_images_own_user(
        self, families: Families, docker_client: Any, colour_data: tuple[Path, float], tmp_path: Path
    ) -> None:
        family = families[self.family]
        dataset, expected = colour_data
        for path in (dataset, *dataset.rglob("*")):  # readable by the image's user, as a shared dataset is
            path.chmod(0o755 if path.is_dir() else 0o644)
        out = tmp_path / "results"
        out.mkdir()
        out.chmod(0o777)  # the image's own non-root user writes here
        code, logs = run_container(
            docker_client,
            family.tag,
            ["--mode", "accuracy", "--dataset", "/data", "--max-batchsize", "4"],
            results=out,
            read_only_mounts={dataset: "/data"},
            user="10001:10001",
            read_only=True,
            tmpfs={"/tmp": ""},
        )
        assert code == 0, logs
        result = result_of(out)
        assert result["accuracy"]["top1"] == pytest.approx(expected)
        assert (result["backend"]["preprocessing"], result["model"]["label_offset"]) == PREPROCESSING.get(
            self.family, ("mlperf", -1)
        )
        assert (result["backend"]["name"], result["backend"]["device"]) == (self.family, "cpu")
        assert result["model"]["path"] == f"/opt/mlbox/model/{family.spec.file}"  # the image's own model
        assert {p.stat().st_uid for p in out.iterdir()} == {10001}
        assert "oneDNN custom operations" not in logs  # TensorFlow's load-time INFO lines stay out

    def test_the_resnet50_twin_runs_offline_in_the_image(
        self,
        families: Families,
        resnet50_twins: Callable[[FamilySpec], Path],
        docker_client: Any,
        tmp_path: Path,
    ) -> None:
        """A ResNet-50-shaped graph through the family's backend in its image: the run's
        verdict is the machine's speed on a 1 s run, not the point (--allow-invalid)."""
        family = families[self.family]
        twin = resnet50_twins(family.spec)
        out = tmp_path / "results"
        inside = f"/models/{twin.name}"
        # --weights: the image's default names its own model's (published) weights; this file's are not.
        flags = ["--weights", "synthetic", "--scenario", "Offline", "--duration", "1", "--samples", "16"]
        code, logs = run_container(
            docker_client,
            family.tag,
            ["--modelpath", inside, *flags, "--allow-invalid"],
            results=out,
            read_only_mounts={twin: inside},
        )
        assert code == 0, logs
        result = result_of(out)
        assert result["effective_settings"]["scenario"] == "Offline"
        assert result["model"]["path"] == inside
        assert result["model"]["weights"] == "synthetic"
        assert (result["backend"]["name"], result["backend"]["device"]) == (self.family, "cpu")
        if self.family != "onnxruntime":  # the TorchScript, frozen graph and TFLite twins name their generator
            assert result["backend"]["session"]["file"]["generator"] == family.spec.twin
        detail = (out / "mlperf_log_detail.txt").read_text()
        logged = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in detail.splitlines() if ":::MLLOG" in line]
        assert next(e["value"] for e in logged if e["key"] == "result_samples_per_second") > 0


class TestOnnxruntime(FamilyTests):
    family = "onnxruntime"


class TestPyTorch(FamilyTests):
    family = "pytorch"


class TestTensorFlow(FamilyTests):
    family = "tensorflow"


class TestTFLite(FamilyTests):
    family = "tflite"
