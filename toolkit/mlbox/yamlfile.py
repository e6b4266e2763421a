"""YAML as mlbox reads it (the catalog, the configuration file): bounded and unambiguous.

PyYAML's safe loader builds an aliased node once and shares it, so a 1 KB "billion laughs"
loads at once and then costs exponential time and memory to whatever walks the result
(validation, an error message that prints it). And a key given twice is legal to PyYAML:
the last one silently wins, so a second `defaults:` block changes every image. Both are
refused here, before anything is built, with the line they are on.
"""

from __future__ import annotations

import gc
from typing import Any

import yaml

from mlbox_bench.errors import cut

# Aliases may grow a document to this many nodes, or to 10x its own nodes if that is more:
# plenty for sharing a package list, far too little for a billion laughs.
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64  # mlbox's files nest a handful of levels; the constructor recurses per level
MAX_CHARS = 64 * 1024 * 1024  # a 10,000-variant catalog is 3.4 MB

# libyaml's parser when PyYAML has it (several times faster on a large catalog)
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlProblem(ValueError):
    """A document mlbox will not read; the message is one line. Callers name the file."""


def load(text: str) -> Any:
    """The document's data (None for an empty one); YamlProblem when it is not valid YAML,
    repeats a key, nests too deep or expands too far through aliases."""
    if len(text) > MAX_CHARS:
        msg = f"{len(text):,} characters is more than mlbox reads ({MAX_CHARS:,})"
        raise YamlProblem(msg)
    loader = _Loader(text)
    collecting = gc.isenabled()
    # Composing makes a node object per value and no cycles (a recursive alias is refused
    # below and then collected): the cyclic collector, run again and again as the nodes
    # pile up, took 80% of the time. A 10,000-variant catalog: 1.0 s -> 0.2 s.
    gc.disable()
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_node(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:  # the problem and its place, not libyaml's multi-line excerpt
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = f"not valid YAML: {err.problem or err.context}{where}"
        raise YamlProblem(msg) from None
    except yaml.YAMLError as err:
        msg = f"not valid YAML: {_one_line(str(err))}"
        raise YamlProblem(msg) from None
    finally:
        loader.dispose()
        if collecting:
            gc.enable()


def check_node(root: yaml.Node) -> None:
    """Refuse repeated keys, nesting deeper than MAX_DEPTH, recursive aliases and alias
    expansion past the limit. Iterative, and each node is visited once: bounded work."""
    size: dict[int, int] = {}  # id(node) -> nodes it stands for once aliases are expanded
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    open_nodes: set[int] = set()
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        if children_done:
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            open_nodes.discard(key)
            continue
        if key in size:
            continue  # an alias of a node already measured
        if key in open_nodes:
            msg = f"a recursive alias at line {node.start_mark.line + 1}"
            raise YamlProblem(msg)
        if depth > MAX_DEPTH:
            msg = f"nested more than {MAX_DEPTH} levels deep at line {node.start_mark.line + 1}"
            raise YamlProblem(msg)
        if isinstance(node, yaml.MappingNode):
            _refuse_repeated_keys(node)
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node))
    expanded, own = size[id(root)], len(size)
    if expanded > max(MAX_EXPANDED_NODES, 10 * own):
        msg = f"aliases expand {own:,} nodes to {expanded:,} (a limit of {max(MAX_EXPANDED_NODES, 10 * own):,})"
        raise YamlProblem(msg)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _refuse_repeated_keys(node: yaml.MappingNode) -> None:
    first: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue  # `<<` merge keys may repeat: later keys override merged ones by design
        line = key.start_mark.line + 1
        seen = first.get((key.tag, key.value))
        if seen is not None:
            msg = f"key {_one_line(key.value)!r} at line {line} repeats the one at line {seen}"
            raise YamlProblem(msg + " (YAML would keep only the last)")
        first[(key.tag, key.value)] = line


def _one_line(text: str, limit: int = 80) -> str:
    """The first line (PyYAML's messages go on with a snippet of the document), cut."""
    return cut(text.strip().splitlines()[0] if text.strip() else "", limit)
