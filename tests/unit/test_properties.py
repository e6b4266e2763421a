"""Property tests: whatever a careless or hostile user feeds the loaders and parsers, the
answer is a result or one of mlbox's own errors (a sentence), never another exception,
and a refused command leaves nothing behind.

Hypothesis draws the inputs and shrinks a failure to its smallest case. The runs are
derandomized (the same examples every run: CI cannot fail by luck) and keep no example
database (nothing written into the checkout).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlbox import yamlfile
from mlbox.catalog import load_catalog
from mlbox.cli import main
from mlbox.errors import CatalogError, MlboxError
from mlbox.paths import packaged_catalog
from mlbox.publish import parse_registry
from mlbox.reference import parse_reference
from mlbox_bench import fields
from mlbox_bench.fields import SCENARIOS
from mlbox_bench.settings import OPTIONS, SettingsError, parse_settings
from tests.support.fake_engine import FakeEngine, use_fake_engine

PROPERTY = settings(
    max_examples=40,
    deadline=None,  # a busy 2-core machine: time is not the property
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text a user may type or a file may hold: any code point (control characters, surrogates
# aside: a file's bytes are decoded first), and the characters grammars care about.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
GRAMMAR_TEXT = st.text(st.sampled_from("aZ09._-:/@\n\t $&;'\"\\*{}[]#=!|<>%"), max_size=60)
TEXT = st.one_of(ANY_TEXT, GRAMMAR_TEXT)

# YAML values: scalars of every kind, nested lists and mappings.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20
)


def refusal(call: Callable[[], object], *allowed: type[BaseException]) -> BaseException | None:
    """The error ``call`` raised, if it is one of ``allowed``; None when it succeeded. Any
    other exception propagates: the property fails."""
    try:
        call()
    except allowed as err:
        return err
    return None


def catalog_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(packaged_catalog().read_text(encoding="utf-8"))
    return data


@st.composite
def mutated_catalogs(draw: st.DrawFn) -> str:
    """The shipped catalog with a few of its nodes replaced, removed or repeated."""
    data = catalog_data()
    for _ in range(draw(st.integers(1, 3))):
        node: Any = data
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):  # a key repeated (the last would have won silently)
        lines = text.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        text = "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    return text


@PROPERTY
@given(st.one_of(TEXT, VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True))))
def test_any_yaml_text_loads_or_is_a_yaml_problem(text: str) -> None:
    err = refusal(lambda: yamlfile.load(text), yamlfile.YamlProblem)
    assert "\n" not in str(err or "")  # a sentence, not the file reprinted


WORDS = st.text(st.sampled_from("abcxyz019_"), min_size=1, max_size=8)
PLAIN = st.recursive(
    st.one_of(st.integers(), WORDS), lambda inner: st.dictionaries(WORDS, inner, min_size=1, max_size=4), max_leaves=12
)


@PROPERTY
@given(st.dictionaries(WORDS, PLAIN, min_size=1, max_size=5), st.data())
def test_a_repeated_key_anywhere_is_refused(data: dict[str, Any], draw: st.DataObject) -> None:
    """YAML lets the last of two equal keys win; in a catalog that silently changes every
    image (a second `defaults:`), so it is refused at any depth."""
    lines = yaml.safe_dump(data, sort_keys=False).splitlines(keepends=True)
    i = draw.draw(st.sampled_from([n for n, line in enumerate(lines) if ":" in line]))
    block = [lines[i]]  # the key's line and, for a mapping value, the lines under it
    indent = len(lines[i]) - len(lines[i].lstrip())
    for line in lines[i + 1 :]:
        if len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    with pytest.raises(yamlfile.YamlProblem, match="repeats the one at line"):
        yamlfile.load("".join([*lines[: i + len(block)], *block, *lines[i + len(block) :]]))


@PROPERTY
@given(mutated_catalogs())
def test_any_catalog_loads_or_is_a_catalog_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "images.yaml"
        path.write_text(text, encoding="utf-8")
        err = refusal(lambda: load_catalog(path), CatalogError)
        assert len(str(err or "")) < 5000  # a few lines naming the bad fields, not the catalog


@PROPERTY
@given(
    text=mutated_catalogs(),
    command=st.sampled_from(["list", "render"]),
    model=st.sampled_from(["resnet50", "retinanet", "x"]),
)
def test_any_catalog_gives_mlbox_a_result_or_a_sentence_and_no_leftover(
    text: str, command: str, model: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_engine(monkeypatch, FakeEngine())  # `list` asks the engine what is built
    with tempfile.TemporaryDirectory() as folder:
        catalog, out = Path(folder) / "images.yaml", Path(folder) / "out"
        catalog.write_text(text, encoding="utf-8")
        argv = ["--catalog", str(catalog), command, "-m", model]
        code = main([*argv, "--out", str(out)] if command == "render" else argv)
        err = capsys.readouterr().err
        assert code != 1, err  # 1: a crash
        assert "Traceback" not in err
        if code != 0:
            assert not out.exists()  # a refused render writes nothing


CONF_KEYS = st.sampled_from(sorted(fields.LOADGEN_CONF_KEYS))
CONF_MODELS = st.sampled_from(["resnet50", "*", "retinanet", "gpt-j", "resnet50.x"])
CONF_LINES = st.one_of(
    st.builds(
        "{}.{}.{} = {}".format,
        CONF_MODELS,
        st.sampled_from([*SCENARIOS, "*", "Servr"]),
        st.one_of(CONF_KEYS, TEXT),
        st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats().map(str), TEXT),
    ),
    TEXT,
)


@PROPERTY
@given(st.lists(CONF_LINES, max_size=8), st.binary(max_size=40))
def test_any_user_conf_is_read_or_refused(lines: list[str], noise: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for content in ("\n".join(lines).encode(errors="surrogatepass"), noise):
            conf = Path(folder) / "user.conf"
            conf.write_bytes(content)
            argv = ["--user-conf", str(conf)]
            err = refusal(lambda: parse_settings(argv, {}), SettingsError)  # noqa: B023 (called at once)
            assert "\n" not in str(err or "")


FLAGS = sorted(o.all_flags[0] for o in OPTIONS)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(FLAGS), TEXT), min_size=1, max_size=4))
def test_any_flag_value_is_parsed_or_refused(pairs: list[tuple[str, str]]) -> None:
    """Numbers are range-checked before anything is made of them: no value allocates.
    argparse's own refusals (a value that looks like a flag, one given to a switch) print
    its usage and exit 2, as every argparse program does."""
    argv = [part for pair in pairs for part in pair]
    err = refusal(lambda: parse_settings(argv, {}), SettingsError, SystemExit)
    if isinstance(err, SystemExit):
        assert err.code == 2
    else:
        assert len(str(err or "").splitlines()) <= 1


@PROPERTY
@given(st.dictionaries(st.sampled_from(sorted({o.env for o in OPTIONS})), TEXT, min_size=1, max_size=4))
def test_any_variable_value_is_parsed_or_refused(env: dict[str, str]) -> None:
    err = refusal(lambda: parse_settings([], env), SettingsError)
    assert len(str(err or "").splitlines()) <= 1


@PROPERTY
@given(TEXT)
def test_any_registry_or_image_reference_is_parsed_or_refused(text: str) -> None:
    if refusal(lambda: parse_registry(text), MlboxError) is None:
        registry = parse_registry(text)  # accepted: only what the grammar allows
        assert ".." not in registry.namespace
        assert not registry.host.startswith("-")
    refusal(lambda: parse_reference(text), ValueError)
