"""Image references and registries follow the engines' grammar (distribution/reference)."""

from __future__ import annotations

import pytest

from mlbox.cli import main
from mlbox.errors import PushError
from mlbox.publish import Registry, parse_registry
from mlbox.reference import Reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("debian:bookworm-slim", Reference(None, "debian", "bookworm-slim", None)),
        ("mlbox-base:bookworm", Reference(None, "mlbox-base", "bookworm", None)),
        ("nvidia/cuda:12.4.1-runtime", Reference(None, "nvidia/cuda", "12.4.1-runtime", None)),
        ("localhost:5000/ml/x:1", Reference("localhost:5000", "ml/x", "1", None)),
        ("Registry.Example.com/a__b/c-d", Reference("Registry.Example.com", "a__b/c-d", None, None)),
        (f"r.io/x@{DIGEST}", Reference("r.io", "x", None, DIGEST)),
        (f"x:1@{DIGEST}", Reference(None, "x", "1", DIGEST)),
    ],
)
def test_references_the_engines_accept(text: str, parts: Reference) -> None:
    assert parse_reference(text) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a/../../b:x", "'a/../../b' is not a repository path"),
        ("-/ml", "'-/ml' is not a repository path"),
        ("Debian:12", "'Debian' is not a repository path"),
        ("localhost:99999/x", "port 99999 is not between 1 and 65535"),
        ("-bad.io/x", "'-bad.io' is not a registry host"),
        ("x:-1", "tag '-1' must be"),
        ("x:" + "t" * 129, "must be letters, digits"),
        ("x@sha256:abc", "the digest after '@' must be"),
        (":tag", "the name is empty"),
        ("a" * 256, "longer than 255"),
        ("x\n--flag", "is not a repository path"),
    ],
)
def test_references_the_engines_refuse(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:  # noqa: PT011 (the message is checked below)
        parse_reference(text)
    assert message in str(err.value)


def test_registries() -> None:
    assert parse_registry("localhost:5000/ml/team") == Registry("localhost:5000", "ml/team")
    for bad, message in [
        ("../ml", "'..' is not a registry host"),
        ("-/ml", "'-' is not a registry host"),
        ("localhost:99999/ml", "port 99999 is not between 1 and 65535"),
        ("registry.example.com", "it has no /NAMESPACE"),
        ("http://r.io/ml", "is not a registry host"),
        ("r.io/ML", "'ML' is not a repository path"),
    ]:
        with pytest.raises(PushError) as err:
            parse_registry(bad)
        assert message in str(err.value), bad


def test_a_base_image_with_dot_dot_components_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-m", "resnet50", "--base-image", "a/../../b:x"]) != 0
    err = capsys.readouterr().err
    assert "--base-image: 'a/../../b:x' is not an image reference: 'a/../../b' is not a repository path" in err
