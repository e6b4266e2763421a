"""`mlbox k8s` on real parts, short of a cluster (none can run here): the image is pushed to
a real registry, the manifests pin the digest the registry reports and pass Kubernetes'
schemas, and each pod of the Indexed Job is replayed on Docker as the kubelet would run
it (the same image by digest, command line, user, read-only root, volumes), so the run
really happens and `mlbox results` reads what a `kubectl cp` of the claim would bring back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.integration.conftest import Served
from tests.support.engine import Mlbox, registry_digest

pytestmark = [pytest.mark.docker, pytest.mark.registry]


def replay(
    client: Any, pod: dict[str, Any], container: dict[str, Any], volumes: dict[str, Path], index: int
) -> tuple[int, str]:
    """Run one container of a pod as the kubelet would: its image, command and args with
    $(VAR)s expanded, its user and fsGroup, a read-only root, its mounts, no network."""
    env = {"COMPLETION_INDEX": str(index)} | {e["name"]: e["value"] for e in container["env"] if "value" in e}

    def expand(text: str) -> str:
        for name, value in env.items():
            text = text.replace(f"$({name})", value)
        return text

    security, own = pod["securityContext"], container["securityContext"]
    binds = {}
    tmpfs = {}
    for mount in container["volumeMounts"]:
        if mount["name"] in volumes:
            binds[str(volumes[mount["name"]])] = {
                "bind": mount["mountPath"],
                "mode": "ro" if mount.get("readOnly") else "rw",
            }
        elif mount["name"] != "shm":  # emptyDirs; /dev/shm is Docker's own below
            tmpfs[mount["mountPath"]] = "mode=1777"
    handle = client.containers.run(
        container["image"],
        [expand(a) for a in container.get("args", [])],
        entrypoint=[expand(c) for c in container["command"]] if "command" in container else None,
        detach=True,
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
        group_add=[security["fsGroup"]],
        read_only=own["readOnlyRootFilesystem"],
        cap_drop=own["capabilities"]["drop"],
        security_opt=["no-new-privileges"],
        network_mode="none",
        environment=env,
        volumes=binds,
        tmpfs=tmpfs,
        shm_size="256m",
    )
    try:
        code = int(handle.wait(timeout=300)["StatusCode"])
        return code, handle.logs().decode(errors="replace")
    finally:
        handle.remove(force=True)


def test_a_benchmark_matrix_job_runs_the_pushed_digest_and_its_results_tabulate(
    served: Served, registry: str, tmp_path: Path, docker_client: Any, mlbox: Mlbox, namespace: str
) -> None:
    env = {"MLBOX_CATALOG": str(served.catalog), "MLBOX_STATE_DIR": str(tmp_path / "state")}
    pushed = mlbox("push", "--model", "tiny", "--registry", f"{registry}/k8s", env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    digest = registry_digest(registry, f"k8s/{namespace}", "tiny-cpu")
    reference = f"{registry}/k8s/{namespace}@{digest}"

    out = tmp_path / "manifests"
    made = mlbox(
        "k8s",
        "--model",
        "tiny",
        "--registry",
        f"{registry}/k8s",
        "--scenario",
        "SingleStream",
        "--scenario",
        "Offline",
        "--run-name",
        "itest",
        "--out",
        str(out),
        "--",
        "--duration",
        "0.2",
        "--samples",
        "16",
        "--allow-invalid",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    docs = list(yaml.safe_load_all((out / "itest.yaml").read_text()))
    [collect_pod] = yaml.safe_load_all((out / "itest-collect.yaml").read_text())
    for doc in [*docs, collect_pod]:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    [job] = [d for d in docs if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {reference}

    # The claim, as fsGroup leaves it: group-owned by the image's group, setgid, group-writable.
    claim = tmp_path / "claim"
    claim.mkdir()
    os.chown(claim, 0, pod["securityContext"]["fsGroup"])
    claim.chmod(0o2775)
    matrix = tmp_path / "matrix"
    matrix.mkdir()
    for key, value in config["data"].items():
        (matrix / key).write_text(value)
    volumes = {"results": claim, "matrix": matrix}
    for index in range(job["spec"]["completions"]):
        for container in pod["initContainers"] + pod["containers"]:
            code, logs = replay(docker_client, pod, container, volumes, index)
            assert code == 0, f"{container['name']} of index {index}:\n{logs}"

    # `kubectl cp <collect pod>:/results/itest results/itest` brings back the claim's run directory.
    assert (
        collect_pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    )
    tabulated = mlbox("results", "--json", str(claim / "itest"), env=env)
    assert tabulated.returncode == 0, tabulated.stderr
    rows = json.loads(tabulated.stdout)
    assert [(r["RUN"], r["SCENARIO"]) for r in rows] == [
        (str(claim / "itest" / "tiny-cpu" / "0"), "SingleStream"),
        (str(claim / "itest" / "tiny-cpu" / "1"), "Offline"),
    ]
    assert {r["IMAGE"] for r in rows} == {f"{registry}/k8s/{namespace}:tiny-cpu"}
    assert {r["DIGEST"] for r in rows} == {digest[:19]}
    record = json.loads((claim / "itest" / "tiny-cpu" / "1" / "mlbox-run.json").read_text())
    assert record["repo_digests"] == [reference]
    assert record["args"][:2] == ["--scenario", "Offline"]
