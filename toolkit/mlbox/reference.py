"""Image references and registries, by the grammar the engines use
(github.com/distribution/reference): what reaches a FROM line, a tag or a manifest is
checked here first, so `a/../../b:x`, a registry `-/ml` or a port 99999 never get that far.

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component ( "/" path-component )*
    domain    := host [ ":" port ]       (the first component, when it has "." or ":" or is localhost)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_DOMAIN = re.compile(rf"(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?")
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME = 255  # the engines' limit on a repository name, domain included


@dataclass(frozen=True)
class Reference:
    domain: str | None  # host[:port], None for a name without one (docker.io, or local)
    path: str
    tag: str | None
    digest: str | None


def parse_reference(text: str) -> Reference:
    """The parts of an image reference; ValueError saying what is wrong."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        msg = "the digest after '@' must be sha256: and 64 lower-case hex digits"
        raise ValueError(msg)
    name, tag = rest, None
    colon, slash = rest.rfind(":"), rest.rfind("/")
    if colon > slash:  # a ':' after the last '/' starts the tag (before it, a port)
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            msg = f"tag {tag!r} must be letters, digits, '_', '.' or '-' (at most 128, not starting with '.' or '-')"
            raise ValueError(msg)
    if not name:
        msg = "the name is empty"
        raise ValueError(msg)
    if len(name) > MAX_NAME:
        msg = f"the name is longer than {MAX_NAME} characters"
        raise ValueError(msg)
    first, sep, path = name.partition("/")
    domain: str | None = None
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain = check_domain(first)
    else:
        path = name
    return Reference(domain, check_path(path), tag, digest or None)


def check_domain(text: str) -> str:
    """A registry host with an optional port (1-65535); ValueError if it is not one."""
    match = _DOMAIN.fullmatch(text)
    if match is None:
        msg = f"{text!r} is not a registry host: letters, digits and '-' in dot-separated names, optionally :PORT"
        raise ValueError(msg)
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        msg = f"port {match['port']} is not between 1 and 65535"
        raise ValueError(msg)
    return text


def check_path(text: str) -> str:
    """A repository path (NAMESPACE, or NAMESPACE/NAME); ValueError if it is not one."""
    if not _PATH.fullmatch(text):
        msg = (
            f"{text!r} is not a repository path: lower-case letters and digits, separated by "
            "'.', '_', '__' or dashes, in components joined by '/'"
        )
        raise ValueError(msg)
    return text
