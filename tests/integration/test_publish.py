"""Publishing and running on real parts: Debian's docker-registry on 127.0.0.1 (with and
without htpasswd auth), pull back by digest, `mlbox run` as a non-root user, results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Served, catalog_with
from tests.support.engine import AuthRegistry, Mlbox, registry_digest

pytestmark = [pytest.mark.docker, pytest.mark.registry]


def env_for(served: Served, state: Path, **extra: str) -> dict[str, str]:
    return {"MLBOX_CATALOG": str(served.catalog), "MLBOX_STATE_DIR": str(state), **extra}


def records(state: Path) -> list[dict[str, Any]]:
    path = state / "published.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("auth", [False, True], ids=["open", "htpasswd"])
def test_push_pull_by_digest_and_run(
    auth: bool,
    served: Served,
    registry: str,
    auth_registry: AuthRegistry,
    tmp_path: Path,
    docker_client: Any,
    mlbox: Mlbox,
    namespace: str,
) -> None:
    address = auth_registry.address if auth else registry
    creds = {"MLBOX_REGISTRY_USERNAME": auth_registry.username, "MLBOX_REGISTRY_PASSWORD": auth_registry.password}
    env = env_for(served, tmp_path, **(creds if auth else {}))
    result = mlbox("push", "--model", "tiny", "--registry", f"{address}/bench", env=env)
    assert result.returncode == 0, result.stderr
    reference = result.stdout.strip().splitlines()[-1]
    name, _, digest = reference.partition("@")
    assert name == f"{address}/bench/{namespace}"
    basic = (auth_registry.username, auth_registry.password) if auth else None
    assert digest == registry_digest(address, f"bench/{namespace}", "tiny-cpu", basic)
    # Per-layer progress: each layer ends pushed, already there, or mounted from another repository.
    assert re.search(r"\| \w+: (Pushed|Layer already exists|Mounted from)", result.stderr), result.stderr
    [record] = records(tmp_path)
    assert record["digest"] == digest
    assert record["references"] == [reference]
    assert record["image"] == served.tag
    assert record["labels"]["mlbox.model.sha256"]

    # Pull back by digest (the local copy removed first) and run what came back.
    docker_client.images.remove(f"{name}:tiny-cpu")
    auth_config = {"username": auth_registry.username, "password": auth_registry.password} if auth else None
    pulled = docker_client.images.pull(name, tag=digest, auth_config=auth_config)
    assert reference in pulled.attrs["RepoDigests"]
    out = tmp_path / "results"
    out.mkdir()
    # The pulled image runs; a short run's verdict is not the point (--allow-invalid: exit 0).
    run = mlbox(
        "run",
        "--image",
        reference,
        "--results",
        str(out),
        "--",
        "--scenario",
        "SingleStream",
        "--duration",
        "0.2",
        "--samples",
        "16",
        "--allow-invalid",
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == str(out / "result.json")
    assert reference in json.loads((out / "mlbox-run.json").read_text())["repo_digests"]
    docker_client.images.remove(reference)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong password", "unauthorized"),
        ("unreachable registry", "refused the push"),
        ("missing image", "not found"),
    ],
)
def test_refused_pushes_leave_no_record_and_no_tag(
    case: str,
    message: str,
    served: Served,
    auth_registry: AuthRegistry,
    tmp_path: Path,
    docker_client: Any,
    mlbox: Mlbox,
    namespace: str,
) -> None:
    address, model = auth_registry.address, "tiny"
    env = env_for(served, tmp_path, MLBOX_REGISTRY_USERNAME="mlbox", MLBOX_REGISTRY_PASSWORD=auth_registry.password)
    if case == "wrong password":
        env["MLBOX_REGISTRY_PASSWORD"] = "not-the-password"
    elif case == "unreachable registry":
        address = "127.0.0.1:9"
    else:  # a catalog image that was never built
        model = "ghost"
        env["MLBOX_CATALOG"] = str(catalog_with(tmp_path, namespace, "ghost", "http://127.0.0.1:9/x", "0" * 32))

    def tags() -> set[str]:  # this worker's (others build and push beside it)
        return {t for i in docker_client.images.list() for t in i.tags if namespace in t}

    tags_before = tags()
    result = mlbox("push", "--model", model, "--registry", f"{address}/bench", env=env)
    assert result.returncode == 16, result.stderr
    assert message in result.stderr.lower()
    assert "hint:" in result.stderr
    assert result.stdout == ""
    assert records(tmp_path) == []
    assert tags() == tags_before


def test_build_and_push_with_a_password_keeps_it_out_of_the_image(
    served: Served, base_image: str, auth_registry: AuthRegistry, tmp_path: Path, docker_client: Any, mlbox: Mlbox
) -> None:
    args = [
        "build",
        "--model",
        "tiny",
        "--base-image",
        base_image,
        "--push",
        "--registry",
        f"{auth_registry.address}/secret",
        "--username",
        auth_registry.username,
        "--password-stdin",
    ]
    proc = mlbox(*args, env=env_for(served, tmp_path), stdin=auth_registry.password + "\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    secret = auth_registry.password
    assert secret not in proc.stdout + proc.stderr
    assert secret not in (tmp_path / "published.jsonl").read_text()
    for cmd in (["history", "--no-trunc", served.tag], ["inspect", served.tag]):
        shown = subprocess.run(["docker", *cmd], capture_output=True, text=True, check=True).stdout
        assert secret not in shown, cmd
    layers = docker_client.api.get_image(served.tag)  # the image's whole content, as a tar stream
    assert not any(secret.encode() in chunk for chunk in layers)


def test_mlbox_run_as_a_non_root_user_leaves_files_owned_by_that_user(
    served: Served, tmp_path: Path, docker_client: Any
) -> None:
    """Run the CLI itself as uid/gid 65534 (with the docker socket's group), read-only root."""
    import shutil
    import tempfile

    uid = gid = 65534
    # pytest's own temp dirs are private to root: use a directory the user can reach.
    out = Path(tempfile.mkdtemp(prefix="mlbox-nonroot-")) / "results"
    out.parent.chmod(0o755)
    request_cleanup = out.parent
    out.mkdir()
    os.chown(out, uid, gid)
    socket_gid = Path("/var/run/docker.sock").stat().st_gid
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLBOX_")}
    env["HOME"] = str(out)
    env["XDG_CONFIG_HOME"] = str(out / ".config")  # the session's config home is root's
    cmd = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        f"--groups={socket_gid}",
        sys.executable,
        "-m",
        "mlbox",
        "run",
        "--image",
        served.tag,
        "--results",
        str(out),
        "--read-only",
        "--",
        "--scenario",
        "Offline",
        "--duration",
        "0.2",
        "--samples",
        "16",
        "--allow-invalid",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() == str(out / "result.json")
        files = [p for p in out.rglob("*") if p.is_file()]
        names = {p.name for p in files}
        assert {"result.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt", "mlbox-run.json"} <= names
        assert {(p.stat().st_uid, p.stat().st_gid) for p in files} == {(uid, gid)}
        assert json.loads((out / "mlbox-run.json").read_text())["read_only"] is True
    finally:
        shutil.rmtree(request_cleanup)


def test_run_exits_with_the_benchmarks_code_and_results_tabulates(served: Served, tmp_path: Path, mlbox: Mlbox) -> None:
    out = tmp_path / "results"
    invalid = ["--scenario", "Server", "--target-qps", "500", "--duration", "0.1", "--target-latency", "0.001"]
    proc = mlbox("run", "--image", served.tag, "--results", str(out / "a"), "--", *invalid)
    assert proc.returncode == 4, proc.stderr[-2000:]  # INVALID, passed through
    # A VALID run, with the headroom to stay VALID on a busy machine: SingleStream has no
    # latency bound, so only its length and query count decide.
    proc = mlbox(
        "run",
        "--image",
        served.tag,
        "--results",
        str(out / "b"),
        "--",
        "--scenario",
        "SingleStream",
        "--duration",
        "3",
        "--samples",
        "16",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plot = tmp_path / "latency.html"
    table = mlbox("results", str(out), "--plot", str(plot))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split() == ["RUN", "IMAGE", "DIGEST", "SCENARIO", "METRIC", "VALIDITY", "P99", "MS"]
    assert any("Server" in line and "INVALID" in line for line in lines)
    assert any("SingleStream" in line and "VALID" in line and "INVALID" not in line for line in lines)
    html = plot.read_text()
    assert html.count("<polyline") == 2
    assert "p99.9" in html


def doctor_lines(stdout: str) -> dict[str, str]:
    """CHECK -> ok / FAIL / - from doctor's table."""
    marks = {}
    for line in stdout.splitlines()[1:]:
        match = re.match(r"^(.+?)\s{2,}(ok|FAIL|-)(\s|$)", line)
        assert match, f"not a doctor line: {line!r}"
        marks[match.group(1).strip()] = match.group(2)
    return marks


def test_doctor_checks_engine_registry_and_login(
    auth_registry: AuthRegistry, base_image: str, tmp_path: Path, mlbox: Mlbox
) -> None:
    env = {
        "MLBOX_REGISTRY_USERNAME": auth_registry.username,
        "MLBOX_REGISTRY_PASSWORD": auth_registry.password,
        "MLBOX_CACHE_DIR": str(tmp_path),
    }
    registry = f"{auth_registry.address}/x"
    ok = mlbox("doctor", "--registry", registry, "--base-image", base_image, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    marks = doctor_lines(ok.stdout)
    assert marks == {
        "engine": "ok",
        f"base image {base_image}": "ok",
        "disk: mlbox cache": "ok",
        "disk: docker storage": "ok",
        f"registry {auth_registry.address}": "ok",
        "GPU runtime": "-",
    }, ok.stdout
    assert "login accepted" in ok.stdout

    wrong = mlbox(
        "doctor", "--registry", registry, "--base-image", base_image, env={**env, "MLBOX_REGISTRY_PASSWORD": "nope"}
    )
    assert wrong.returncode == 1
    marks = doctor_lines(wrong.stdout)
    assert marks[f"registry {auth_registry.address}"] == "FAIL"
    assert "login refused" in wrong.stdout
    assert [check for check, mark in marks.items() if mark == "FAIL"] == [f"registry {auth_registry.address}"]

    missing = mlbox("doctor", "--base-image", "mlbox-test/absent:1", env=env)
    assert missing.returncode == 1
    assert doctor_lines(missing.stdout)["base image mlbox-test/absent:1"] == "FAIL"
    assert "mlbox base --set-default" in missing.stdout
