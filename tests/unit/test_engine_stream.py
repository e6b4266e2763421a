from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlbox.engine import BuildStep, DockerEngine, build_step, follow_build
from mlbox.errors import BuildError
from mlbox.wheelhouse import platform_tags


def test_build_stream_lines_are_passed_on_as_they_come() -> None:
    seen: list[str] = []
    stream: Iterator[dict[str, Any]] = iter(
        [{"stream": "Step 1/2 : FROM x\n"}, {"stream": " ---> abc\n"}, {"aux": {"ID": "sha256:" + "a" * 64}}]
    )
    assert follow_build(stream, seen.append) == "sha256:" + "a" * 64
    assert seen == ["Step 1/2 : FROM x", " ---> abc"]


def test_error_chunk_raises_with_the_failing_step_and_last_lines() -> None:
    stream: Iterator[dict[str, Any]] = iter(
        [
            {"stream": "Step 3/9 : RUN false\n"},
            {"stream": "some output\n"},
            {"error": "boom", "errorDetail": {"message": "The command '/bin/sh -c false' returned a non-zero code: 1"}},
            {"aux": {"ID": "sha256:never"}},
        ]
    )
    with pytest.raises(BuildError) as err:
        follow_build(stream, lambda _: None)
    text = str(err.value)
    assert "at Step 3/9 : RUN false" in text
    assert "returned a non-zero code: 1" in text
    assert "some output" in text


def test_stream_without_an_image_id_is_an_error() -> None:
    with pytest.raises(BuildError, match="without producing an image"):
        follow_build(iter([{"stream": "hello\n"}]), lambda _: None)


def test_platform_tags_cover_every_older_manylinux() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    assert "manylinux1_x86_64" in tags
    assert "manylinux_2_29_x86_64" not in tags


def test_buildah_steps_give_a_failed_build_its_context() -> None:
    """Podman's builder names steps `[2/2] STEP 3/6: ...` and ends with Docker's aux ID chunk."""
    stream: Iterator[dict[str, Any]] = iter(
        [
            {"stream": "[2/2] STEP 3/6: RUN false\n"},
            {"stream": "about to fail\n"},
            {"error": "x", "errorDetail": {"message": 'building at STEP "RUN false": exit status 1\n'}},
        ]
    )
    with pytest.raises(BuildError) as err:
        follow_build(stream, lambda _: None)
    assert "at [2/2] STEP 3/6: RUN false" in str(err.value)
    assert "about to fail" in str(err.value)


@pytest.mark.parametrize(
    "chunks",
    [
        # Docker: the digest in an aux chunk, and in the status line.
        [
            {"status": "t: digest: sha256:" + "e" * 64 + " size: 527"},
            {"aux": {"Tag": "t", "Digest": "sha256:" + "e" * 64}},
        ],
        # Podman 4.3: only the status line.
        [
            {"status": "The push refers to repository [r/x:t]"},
            {"status": "t: digest: sha256:" + "e" * 64 + " size: 581"},
        ],
    ],
    ids=["aux-and-status-line", "status-line-only"],
)
def test_push_digest_comes_from_either_engines_stream(chunks: list[dict[str, object]]) -> None:
    from mlbox.engine import follow_push

    assert follow_push(iter(chunks), "r/x:t", lambda _: None) == "sha256:" + "e" * 64


def test_a_plain_http_registry_is_named_with_what_each_engine_needs() -> None:
    from mlbox.engine import follow_push
    from mlbox.errors import PushError

    refused = {
        "error": "x",
        "errorDetail": {"message": 'Get "https://h:5/v2/": http: server gave HTTP response to HTTPS client'},
    }
    with pytest.raises(PushError) as err:
        follow_push(iter([refused]), "h:5/x:t", lambda _: None)
    assert "insecure=true in registries.conf" in (err.value.hint or "")


class ChunkedLogs:
    """A Docker API whose followed log arrives in the given chunks, cut anywhere."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def logs(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        return iter(self.chunks)


def docker_log(chunks: list[bytes]) -> list[str]:
    engine = DockerEngine()
    engine._client = type("Client", (), {"api": ChunkedLogs(chunks)})()
    return list(engine.container_logs("c1"))


def test_a_character_cut_between_two_chunks_arrives_whole() -> None:
    text = "résumé ✓ 12 ms\nlast line without a newline".encode()
    cuts = [2, 11, 12, 20]  # inside "é", inside "✓" (twice), inside the first line's end
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert b"".join(chunks) == text
    assert docker_log(chunks) == ["résumé ✓ 12 ms", "last line without a newline"]


def test_a_log_that_ends_inside_a_character_keeps_a_replacement_mark() -> None:
    assert docker_log([b"done\nhalf \xe2\x9c"]) == ["done", "half \ufffd"]


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("Step 3/9 : RUN pip install x", BuildStep(3, 9, "RUN pip install x")),  # Docker's classic builder
        ("STEP 3/9: RUN pip install x", BuildStep(3, 9, "RUN pip install x")),  # Buildah (Podman)
        ("[2/3] STEP 1/6: FROM base AS deps", BuildStep(1, 6, "FROM base AS deps")),  # Buildah, multi-stage
        (" ---> Running in 0a1b2c", None),
        ("Step three", None),
    ],
)
def test_one_parser_reads_both_builders_step_lines(line: str, step: BuildStep | None) -> None:
    assert build_step(line) == step


def test_the_live_status_follows_podmans_steps_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The terminal display and the executor read steps with the same parser: under Podman
    the status line moved on with Buildah's `STEP n/m:` lines too."""
    from mlbox import ui

    shown: list[str] = []

    class Status:
        def __enter__(self) -> Status:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, text: str) -> None:
            shown.append(text)

    monkeypatch.setattr(ui.console, "status", lambda *a, **k: Status())
    monkeypatch.setattr(ui.console, "print", lambda *a, **k: None)
    with ui.build_display("mlbox:x") as on_line:
        for line in ("[1/2] STEP 1/3: FROM base AS deps", "output", "Step 2/4 : COPY a b"):
            on_line(line)
    assert shown == ["building mlbox:x: step 1/3 FROM base AS deps", "building mlbox:x: step 2/4 COPY a b"]
