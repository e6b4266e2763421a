"""`mlbox k8s` without a cluster: every manifest is validated by kubernetes-validate against
the Kubernetes API schemas (strict: an unknown field is an error), and what a pod would run
is replayed through mlbox-bench's own parser and `mlbox results`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mlbox import layout
from mlbox.catalog import load_catalog
from mlbox.cli import main
from mlbox.errors import RecordError
from mlbox.k8s import MatrixError, Options, Published, dns_name, find_published, manifests, shm_quantity
from mlbox.paths import packaged_catalog
from mlbox.plan import select
from mlbox.publish import make_record, parse_registry
from mlbox.results import collect, table_rows
from mlbox.spec import ImageSpec
from mlbox_bench.settings import parse_settings

KUBERNETES = "1.37.0"  # the newest release kubernetes-validate ships schemas for
REGISTRY = parse_registry("registry.example.com/ml")
# `mlbox k8s --all` for the synthetic ResNet50 images; the output folder comes next.
K8S_ALL = ["k8s", "--all", "-m", "resnet50", "--variant", "synthetic", "--registry", "registry.example.com/ml", "--out"]
CPU_DIGEST, CUDA_DIGEST = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def spec(device: str) -> ImageSpec:
    return select(load_catalog(packaged_catalog()), model="resnet50", device=device, variant="synthetic")


def records() -> list[dict[str, Any]]:
    return [
        make_record(
            spec("cpu").tag, REGISTRY, "sha256:" + "0" * 64, image_id=None, labels={}, verified="registry"
        ),  # superseded
        make_record(
            spec("cpu").tag, REGISTRY, CPU_DIGEST, image_id="sha256:" + "c" * 64, labels={}, verified="registry"
        ),
        make_record(spec("cuda").tag, REGISTRY, CUDA_DIGEST, image_id=None, labels={}, verified="registry"),
        make_record(
            spec("cuda").tag,
            parse_registry("elsewhere.example/x"),
            "sha256:" + "9" * 64,
            image_id=None,
            labels={},
            verified="registry",
        ),
    ]


def published() -> list[Published]:
    return find_published([spec("cpu"), spec("cuda")], records(), REGISTRY)


OPTS = Options(
    run="r1",
    scenarios=("Offline", "server"),
    matrix=(("concurrency", ("1", "2")),),
    bench_args=("--duration", "60"),
    namespace="bench",
)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_every_manifest_is_valid_kubernetes() -> None:
    run, collect_docs = manifests(published(), OPTS)
    assert [d["kind"] for d in run] == [
        "PersistentVolumeClaim",
        "NetworkPolicy",
        "ConfigMap",
        "Job",
        "ConfigMap",
        "Job",
    ]
    for doc in [*run, *collect_docs]:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        assert doc["metadata"]["namespace"] == "bench"


def test_images_are_pinned_by_the_digest_of_their_newest_record() -> None:
    cpu, cuda = published()
    assert cpu.reference == f"registry.example.com/ml/mlbox@{CPU_DIGEST}"
    assert cpu.tag == "registry.example.com/ml/mlbox:resnet50-cpu-synthetic"
    assert cuda.reference == f"registry.example.com/ml/mlbox@{CUDA_DIGEST}"
    run, collect_docs = manifests([cpu, cuda], OPTS)
    jobs = by_kind(run, "Job")
    for job, image in zip(jobs, (cpu, cuda), strict=True):
        pod = job["spec"]["template"]["spec"]
        assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {image.reference}
    assert collect_docs[0]["spec"]["containers"][0]["image"] == cpu.reference


def test_a_digest_the_registry_did_not_confirm_is_pointed_out(caplog: pytest.LogCaptureFixture) -> None:
    unchecked = {**records()[2], "verified": "metadata-only"}
    [cuda] = find_published([spec("cuda")], [unchecked], REGISTRY)
    assert f"{cuda.reference}: its digest comes from bake's metadata and was not checked" in caplog.text
    caplog.clear()
    find_published([spec("cuda")], records(), REGISTRY)
    assert "not checked" not in caplog.text


def test_pods_run_locked_down_and_cuda_pods_get_gpus() -> None:
    run, collect_docs = manifests(published(), OPTS)
    cpu_job, cuda_job = by_kind(run, "Job")
    for pod in [cpu_job["spec"]["template"]["spec"], cuda_job["spec"]["template"]["spec"], collect_docs[0]["spec"]]:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == layout.IMAGE_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
    cuda = cuda_job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert cuda == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    assert "resources" not in cpu_job["spec"]["template"]["spec"]["containers"][0]
    volumes = {v["name"]: v for v in cpu_job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert volumes["tmp"]["emptyDir"] == {}
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == "mlbox-r1-results"
    [policy] = by_kind(run, "NetworkPolicy")
    assert policy["spec"] == {"podSelector": {"matchLabels": {"mlbox/run": "r1"}}, "policyTypes": ["Ingress", "Egress"]}
    assert "ingress" not in policy["spec"]  # no rule: nothing allowed
    assert "egress" not in policy["spec"]


def test_a_private_registry_is_pulled_from_with_a_secret_the_user_made() -> None:
    run, collect_docs = manifests(published(), Options(run="r1", pull_secret="regcred"))
    for pod in [d["spec"]["template"]["spec"] for d in by_kind(run, "Job")] + [collect_docs[0]["spec"]]:
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    for doc in [*run, *collect_docs]:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert "imagePullSecrets" not in manifests(published(), OPTS)[1][0]["spec"]


def test_resources_are_requested_as_they_are_limited() -> None:
    opts = Options(run="r1", cpu="8", memory="16Gi", gpus_per_pod=2)
    run, _ = manifests(published(), opts)
    resources = by_kind(run, "Job")[1]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "2"}


def pod_runs(job: dict[str, Any], configmap: dict[str, Any], index: int, root: Path) -> list[str]:
    """The argv mlbox-bench gets in the pod with completion index ``index``, the ConfigMap
    mounted at ``root`` as Kubernetes mounts it."""
    for key, value in configmap["data"].items():
        (root / key).write_text(value)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"] for e in container["env"]}
    assert "COMPLETION_INDEX" in env
    return [
        a.replace("$(COMPLETION_INDEX)", str(index)).replace("/etc/mlbox/matrix", str(root)) for a in container["args"]
    ]


def test_each_completion_index_runs_its_cell_of_the_matrix(tmp_path: Path) -> None:
    run, _ = manifests(published(), OPTS)
    config, job = run[2], run[3]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 4
    assert job["spec"]["parallelism"] == 1
    seen = []
    for index in range(4):
        settings, _ = parse_settings(pod_runs(job, config, index, tmp_path), {})
        seen.append((settings.scenario, settings.concurrency, settings.duration, settings.output_dir))
    results = "/results/r1/resnet50-cpu-synthetic"
    assert seen == [
        ("Offline", 1, 60.0, f"{results}/0"),
        ("Offline", 2, 60.0, f"{results}/1"),
        ("Server", 1, 60.0, f"{results}/2"),
        ("Server", 2, 60.0, f"{results}/3"),
    ]
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][-1] == f"{results}/$(COMPLETION_INDEX)/mlbox-run.json"


def test_mlbox_results_reads_a_collected_run(tmp_path: Path) -> None:
    """After `kubectl cp`: each cell's directory holds result.json and the init container's
    mlbox-run.json; `mlbox results` shows the image and its digest."""
    run, _ = manifests(published(), Options(run="r1", scenarios=("Offline",)))
    config = run[2]
    cell = tmp_path / "r1" / "resnet50-cpu-synthetic" / "0"
    cell.mkdir(parents=True)
    (cell / "mlbox-run.json").write_text(config["data"]["0.run.json"])
    (cell / "result.json").write_text(
        json.dumps({"scenario": "Offline", "validity": "VALID", "metric": {"value": 9.5}})
    )
    [row] = table_rows(collect([tmp_path]))
    assert row[1:5] == ["registry.example.com/ml/mlbox:resnet50-cpu-synthetic", CPU_DIGEST[:19], "Offline", "9.5"]


def test_without_a_record_for_the_registry_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RecordError, match=r"not published to registry\.example\.com/ml: mlbox:resnet50-cpu-synthetic"):
        find_published([spec("cpu")], records()[3:], REGISTRY)
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    (tmp_path / "published.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()[2:]))
    out = tmp_path / "k8s"
    assert main([*K8S_ALL, str(out)]) == 20
    err = capsys.readouterr().err
    assert "error: not published to registry.example.com/ml: mlbox:resnet50-cpu-synthetic (" in err
    assert "resnet50-cuda" not in err.split("hint:")[0]  # the cuda image has a record
    assert "mlbox publish-record M.json --registry registry.example.com/ml" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scenario", "Serve"], "did you mean 'Server'?"),
        (["--matrix", "concurency=1,2"], "--matrix concurency: not an mlbox-bench option"),
        (["--matrix", "concurrency=1,x"], "--matrix concurrency"),
        (["--matrix", "output_dir=/a,/b"], "one mlbox sets per cell"),
        (["--matrix", "concurrency"], "expected OPTION=V1,V2"),
        (["--matrix", "dataset=/data\n--allow-invalid"], "--matrix dataset: '/data\\n--allow-invalid' has a control"),
        (["--scenario", "Offline", "--", "--scenario", "Server"], "flags set --scenario, which mlbox sets per cell"),
        (["--", "--output-dir", "/x"], "flags set --output-dir"),
        (["--", "--duraton", "5"], "mlbox-bench does not know --duraton"),
        (["--", "--duration", "soon"], "--duration soon"),
        (["--", "@/etc/args"], "@FILE arguments"),
        (["--run-name", "Run_1"], "run name 'Run_1'"),
        (["--cpu", "eight"], "--cpu 'eight' is not a Kubernetes quantity"),
        (["--shm-size", "2 GB"], "neither a Docker size"),
    ],
)
def test_what_a_pod_would_refuse_is_a_usage_error_here(
    extra: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    (tmp_path / "published.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    argv = [
        "k8s",
        "-m",
        "resnet50",
        "--variant",
        "synthetic",
        "--registry",
        "registry.example.com/ml",
        "--out",
        str(tmp_path / "k8s"),
        "--run-name",
        "r1",
        *extra,
    ]
    assert main(argv) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "k8s").exists()


def test_mlbox_k8s_writes_the_run_and_the_collect_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    (tmp_path / "published.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    monkeypatch.setenv("MLBOX_SCENARIOS", "Offline Server")  # a repeatable option's variable: whitespace-separated
    out = tmp_path / "k8s"
    argv = [
        *K8S_ALL,
        str(out),
        "--run-name",
        "r1",
        "--namespace",
        "bench",
        "--",
        "--duration",
        "60",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "r1.yaml"), str(out / "r1-collect.yaml")]
    written = (out / "r1.yaml").read_text()
    assert "&id" not in written  # no YAML anchors for people to chase
    assert "  0.args: |\n    --scenario\n    Offline\n    --output-dir\n" in written
    docs = list(yaml.safe_load_all(written))
    assert (
        docs
        == manifests(
            published(),
            Options(run="r1", scenarios=("Offline", "Server"), bench_args=("--duration", "60"), namespace="bench"),
        )[0]
    )
    text = (out / "r1-collect.yaml").read_text()
    assert "#   kubectl cp bench/mlbox-r1-collect:/results/r1 results/r1\n" in text
    assert "#   mlbox results results/r1\n" in text
    [pod] = yaml.safe_load_all(text)
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "mlbox-r1-results", "readOnly": True}


def test_names_fit_kubernetes_limits() -> None:
    assert (
        dns_name("mlbox", "r1", "resnet50-cuda-onnx-opset8-fp32-nvidiabase")
        == "mlbox-r1-resnet50-cuda-onnx-opset8-fp32-nvidiabase"
    )
    long = dns_name("mlbox", "20261126-021500", "resnet50-cuda-onnx-opset8-fp32-onnxruntime-nvidiabase")
    assert len(long) <= 52
    assert long.startswith("mlbox-20261126-021500-resnet50-cuda")
    assert long != dns_name("mlbox", "20261126-021500", "resnet50-cuda-onnx-opset8-fp32-onnxruntime-cudapix")
    assert [shm_quantity(s) for s in ("2g", "512m", "1Gi")] == ["2Gi", "512Mi", "1Gi"]
    with pytest.raises(MatrixError):
        shm_quantity("lots")


def test_k8s_replaces_only_the_manifests_mlbox_wrote_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path))
    (tmp_path / "published.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "r2-collect.yaml").write_text("# the user's own\n")
    assert main([*K8S_ALL, str(out), "--run-name", "r1"]) == 0
    assert main([*K8S_ALL, str(out), "--run-name", "r1"]) == 0  # its own files: replaced
    capsys.readouterr()
    assert main([*K8S_ALL, str(out), "--run-name", "r2"]) == 25
    assert "already holds r2-collect.yaml, which mlbox did not write there" in " ".join(capsys.readouterr().err.split())
    assert not (out / "r2.yaml").exists()
    assert (out / "r2-collect.yaml").read_text() == "# the user's own\n"
    assert main([*K8S_ALL, str(out), "--run-name", "r2", "--force"]) == 0
    assert (out / "r2-collect.yaml").read_text().startswith("#")
    assert (out / "r2-collect.yaml").read_text() != "# the user's own\n"
