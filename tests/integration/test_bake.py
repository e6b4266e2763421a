"""`mlbox bake` output built by BuildKit, and its pushed digest back as a publish record.

No buildx here (Debian 12 has no package; it is not on PyPI), so `docker buildx bake`
itself cannot run. The engine's own BuildKit can: Debian's docker CLI (/usr/bin/docker,
from docker.io) with DOCKER_BUILDKIT=1 builds a target's context with the target's tags,
labels, build arguments and platform, which is what bake asks a builder for; only the
registry cache export (cache-to) needs a buildx builder. The push that `bake --push`
makes is made through the engine, and mlbox is handed the metadata file bake writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlbox.engine import DockerEngine
from tests.integration.conftest import Served
from tests.support.bake import check_bake_file
from tests.support.engine import Mlbox, registry_digest

pytestmark = [pytest.mark.docker, pytest.mark.registry]

DEBIAN_DOCKER = Path("/usr/bin/docker")  # docker.io's CLI: a newer client-only one may come first on PATH
CREATED = "org.opencontainers.image.created"


def buildkit_build(target: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    argv = [
        str(DEBIAN_DOCKER),
        "build",
        "--progress=plain",
        "--file",
        str(Path(target["context"]) / target["dockerfile"]),
    ]
    for tag in target["tags"]:
        argv += ["--tag", tag]
    for key, value in target["labels"].items():
        argv += ["--label", f"{key}={value}"]
    for key, value in target["args"].items():
        argv += ["--build-arg", f"{key}={value}"]
    for platform in target["platforms"]:
        argv += ["--platform", platform]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(
        [*argv, target["context"]], env=env, capture_output=True, text=True, timeout=1800, check=False
    )


@pytest.fixture
def buildkit_images(docker_client: Any) -> Iterator[list[str]]:
    """Tags the test builds with BuildKit: removed afterwards with the BuildKit cache records
    the build made (the session guard knows images, not build cache; a record can go only
    once no image uses it). Records that existed before stay, and so do shared ones: those
    are layers of images in the engine's store (the base image's), not cache."""

    def records() -> set[str]:
        return {r["ID"] for r in docker_client.df().get("BuildCache") or [] if not r.get("Shared")}

    before = records()
    tags: list[str] = []
    try:
        yield tags
    finally:
        from docker.errors import NotFound

        for tag in tags:
            with contextlib.suppress(NotFound):  # another session's guard may have removed it
                docker_client.api.remove_image(tag, force=True)
        left: set[str] = set()
        for _ in range(20):  # a record goes only after the records built on it: newest first, in rounds
            left = records() - before
            if not left:
                break
            for record in left:
                docker_client.api.prune_builds(filters={"id": [record]})
        assert not left, f"BuildKit cache records left behind: {left}"


def records(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "published.jsonl").read_text().splitlines()]


def test_a_baked_context_builds_with_buildkit_and_its_digest_becomes_a_publish_record(
    served: Served,
    base_image: str,
    shared_cache: Path,
    registry: str,
    tmp_path: Path,
    docker_client: Any,
    buildkit_images: list[str],
    mlbox: Mlbox,
    namespace: str,
) -> None:
    assert DEBIAN_DOCKER.is_file(), "Debian's docker.io CLI is missing: scripts/with-engine.sh installs it"
    state = tmp_path / "state"
    env = {"MLBOX_CATALOG": str(served.catalog), "MLBOX_STATE_DIR": str(state)}
    out = tmp_path / "bake"
    baked = mlbox(
        "bake",
        "--model",
        "tiny",
        "--base-image",
        base_image,
        "--registry",
        f"{registry}/bake",
        "--out",
        str(out),
        env=env,
    )
    assert baked.returncode == 0, baked.stderr[-3000:]
    assert baked.stdout.strip() == str(out / "docker-bake.json")
    definition = json.loads((out / "docker-bake.json").read_text())
    check_bake_file(definition)
    target = definition["target"]["tiny-cpu"]
    assert target["tags"] == [f"{registry}/bake/{namespace}:tiny-cpu"]  # what `mlbox push --registry` names it
    classic = docker_client.images.get(served.tag).labels  # the session's `mlbox build` of the same inputs
    assert {k: v for k, v in target["labels"].items() if k != CREATED} == {
        k: v for k, v in classic.items() if k != CREATED
    }

    buildkit_images.extend(target["tags"])
    built = buildkit_build(target)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "exporting to image" in built.stderr  # BuildKit's output, not the classic builder's
    image = docker_client.images.get(target["tags"][0])
    assert image.labels == target["labels"]
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Architecture"] == target["platforms"][0].split("/")[1]

    # What `docker buildx bake --push --metadata-file` does next: push, and write the metadata.
    repository, _, tag = target["tags"][0].rpartition(":")
    digest = DockerEngine().push(repository, tag, auth=None, on_progress=lambda _: None)
    assert digest == registry_digest(registry, f"bake/{namespace}", "tiny-cpu")
    metadata = {
        "tiny-cpu": {
            "containerimage.config.digest": image.id,
            "containerimage.digest": digest,
            "image.name": target["tags"][0],
        },
        "buildx.build.warnings": [],
    }
    (out / "metadata.json").write_text(json.dumps(metadata))
    recorded = mlbox("publish-record", str(out / "metadata.json"), "--registry", f"{registry}/bake", env=env)
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.strip() == f"{registry}/bake/{namespace}@{digest}"

    pushed = mlbox("push", "--model", "tiny", "--registry", f"{registry}/pushed", env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    from_bake, from_push = records(state)
    assert from_bake.keys() == from_push.keys()
    assert from_bake["verified"] == from_push["verified"] == "registry"  # publish-record asked the registry
    assert from_bake["image"] == from_push["image"] == served.tag
    assert from_bake["image_id"] == image.id
    assert from_bake["labels"] == image.labels
    listed = mlbox("list", "--json", "--model", "tiny", env=env)
    assert json.loads(listed.stdout)[0]["pushed"] == [f"{registry}/bake/{namespace}@{digest}", pushed.stdout.strip()]
