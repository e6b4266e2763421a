"""The suite leaves the Docker engine as it found it, and never touches what the user made.

Registered by tests/conftest.py for runs that reach the engine (--run-docker, --run-images),
in the controlling process only: with pytest-xdist the workers share one engine, and what
one made must stay until every worker is done. When the run starts it records what the
engine holds; when it ends it

- checks that every container, image and tag that was there is still there, and every tag
  still names the same image (`make demo`'s mlbox:resnet50-cpu-synthetic, the base image);
- checks that every tag the run made is in its own namespace (a repository name per run,
  tests/support/engine.py's `namespace`): a test that tagged in the user's `mlbox`
  repository fails the run even if it cleaned up after itself;
- removes every container, tag, image, network and volume the run made, pass or fail, as
  jupyter/docker-stacks' TrackedContainer does per container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

RUN_VARIABLE = "PYTEST_MLBOX_RUN"  # one token per run, shared with pytest-xdist's workers


def namespace_of_run() -> str:
    """The prefix of every repository name this run tags images in (tests/support/engine.py)."""
    return "mlbox-test-" + os.environ[RUN_VARIABLE]


@dataclass(frozen=True)
class EngineState:
    """What the engine holds: container, image and network ids, tags (with the image each
    names) and volume names."""

    containers: frozenset[str]
    images: frozenset[str]
    tags: dict[str, str]
    networks: frozenset[str]
    volumes: frozenset[str]

    @classmethod
    def of(cls, client: Any) -> EngineState:
        images = client.api.images(all=True)
        return cls(
            containers=frozenset(c["Id"] for c in client.api.containers(all=True)),
            images=frozenset(i["Id"] for i in images),
            tags={t: i["Id"] for i in images for t in (i.get("RepoTags") or []) if t != "<none>:<none>"},
            networks=frozenset(n["Id"] for n in client.api.networks()),
            volumes=frozenset(v["Name"] for v in (client.api.volumes().get("Volumes") or [])),
        )


def changes_to_what_was_there(before: EngineState, after: EngineState) -> list[str]:
    """What the run did to the objects it found: each line one lost or changed object."""
    problems = [f"tag {tag} is gone" for tag in sorted(before.tags.keys() - after.tags.keys())]
    problems += [
        f"tag {tag} names another image ({before.tags[tag][7:19]} -> {after.tags[tag][7:19]})"
        for tag in sorted(before.tags.keys() & after.tags.keys())
        if before.tags[tag] != after.tags[tag]
    ]
    problems += [f"image {image[7:19]} is gone" for image in sorted(before.images - after.images)]
    problems += [f"container {cid[:12]} is gone" for cid in sorted(before.containers - after.containers)]
    return problems


def tags_outside(namespace: str, before: EngineState, after: EngineState) -> list[str]:
    """Tags the run made whose name does not carry its namespace."""
    return sorted(tag for tag in after.tags.keys() - before.tags.keys() if namespace not in tag)


def remove_new(client: Any, before: EngineState) -> list[str]:
    """Remove every container, tag, image, network and volume that is not in ``before``;
    return what was removed. Images go newest first, as children must go before parents."""
    from docker.errors import APIError, NotFound

    now = EngineState.of(client)
    removed: list[str] = []
    for cid in now.containers - before.containers:
        client.api.remove_container(cid, force=True, v=True)
        removed.append(f"container {cid[:12]}")
    for tag in sorted(now.tags.keys() - before.tags.keys()):
        try:
            client.api.remove_image(tag, force=False, noprune=True)  # only the tag: its image may be older
            removed.append(f"tag {tag}")
        except NotFound:
            pass
    pending = {i["Id"]: i["Created"] for i in client.api.images(all=True) if i["Id"] not in before.images}
    while pending:
        progress = False
        for image in sorted(pending, key=lambda i: pending[i], reverse=True):
            try:
                client.api.remove_image(image, force=True)
            except NotFound:
                pass
            except APIError:  # a child image not removed yet: next round
                continue
            del pending[image]
            removed.append(f"image {image[7:19]}")
            progress = True
        if not progress:
            removed += [f"KEPT image {image[7:19]} (could not remove)" for image in pending]
            break
    for nid in now.networks - before.networks:
        client.api.remove_network(nid)
        removed.append(f"network {nid[:12]}")
    for name in now.volumes - before.volumes:
        client.api.remove_volume(name, force=True)
        removed.append(f"volume {name}")
    return removed


def restore_tags(client: Any, before: EngineState) -> list[str]:
    """Point every tag that was there back at the image it named (a test that rebuilt a
    user's tag fails the run, and the user still gets their image back under it)."""
    now = EngineState.of(client)
    restored = []
    for tag, image in before.tags.items():
        if now.tags.get(tag) != image and image in now.images:
            repository, _, name = tag.rpartition(":")
            client.api.tag(image, repository, name, force=True)
            restored.append(tag)
    return restored


class EngineGuard:
    """The pytest plugin: records the engine when the run starts, checks and cleans when it ends."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.client: Any = None
        self.before: EngineState | None = None

    @pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts its workers
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        import docker
        from docker.errors import DockerException

        try:
            self.client = docker.from_env(version="auto")
            self.before = EngineState.of(self.client)
        except DockerException:  # the tests that need the engine fail and say why
            self.client = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.client is None or self.before is None:
            return
        after = EngineState.of(self.client)
        problems = [f"the run changed what it found: {p}" for p in changes_to_what_was_there(self.before, after)]
        problems += [
            f"the run tagged outside its namespace {self.namespace}: {t}"
            for t in tags_outside(self.namespace, self.before, after)
        ]
        removed = remove_new(self.client, self.before)
        restored = restore_tags(self.client, self.before)
        self.client.close()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            if removed:
                reporter.write_line(f"engine: removed what the run made: {len(removed)} object(s)")
            for line in removed:
                if line.startswith("KEPT"):
                    reporter.write_line(f"engine: {line}")
            for tag in restored:
                reporter.write_line(f"engine: gave {tag} back to the image it named before the run")
            for line in problems:
                reporter.write_line(f"engine: FAILED: {line}", red=True)
        if problems:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
