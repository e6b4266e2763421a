"""The MLPerf models mlbox-bench knows, under each of their names.

One model has several names, and each tool matches its own exactly:

- LoadGen's mlperf.conf (compiled into LoadGen) keys its rules by ``resnet50`` and
  ``retinanet``; FromConfig given another name (``resnet``) finds no rules and silently
  runs LoadGen's generic defaults (performance_sample_count 0, min_query_count 100).
  A user.conf's ``model.Scenario.key`` lines are matched against the same name.
- MLCommons' submission checker names the results directory after its round's model list
  (tools/submission/submission_checker/constants.py, MODEL_CONFIG[round]["models"]):
  ``resnet`` in every round from v5.0 on; ``retinanet`` in v5.0, v5.1 and v6.0, gone from
  v6.1.
- People say either; mlbox-bench accepts every name of a model and hands each tool its own.

A name the table does not know is passed on as given (LoadGen then warns of its generic
defaults, and the submission tree uses it as the directory name).
"""

from __future__ import annotations

from dataclasses import dataclass

# A model the table does not know runs the classification pipeline, as every model did
# before the table.
DEFAULT_TASK = "classification"

# The rounds the table describes: the keys of the checker's MODEL_CONFIG.
ROUNDS = ("v5.0", "v5.1", "v6.0", "v6.1")
# The rounds whose tree submission.py writes: from v6.0 the TEST0x folders and
# measurements.json sit in results/<system>/<model>/<Scenario>/ and the code in src/
# (constants.py COMPLIANCE_PATH, MEASUREMENTS_PATH, SRC_PATH); v5.x wanted compliance/,
# measurements/ and code/.
SUBMISSION_ROUNDS = ("v6.0", "v6.1")
DEFAULT_ROUND = "v6.1"


@dataclass(frozen=True)
class Model:
    conf_name: str  # mlperf.conf's (and so a user.conf's) name for it
    aliases: tuple[str, ...]
    task: str
    checker_names: tuple[tuple[str, str], ...]  # (round, the name its checker expects); a round without it is absent

    @property
    def names(self) -> tuple[str, ...]:
        return (self.conf_name, *self.aliases)

    @property
    def rounds(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.checker_names)

    def checker_name(self, round_: str) -> str | None:
        return dict(self.checker_names).get(round_)


MODELS: tuple[Model, ...] = (
    # constants.py: "resnet" in MODEL_CONFIG[v5.0|v5.1|v6.0|v6.1]["models"]; each round's
    # model_mapping maps "resnet50" to it. loadgen/mlperf.conf: resnet50.*.* rules.
    Model("resnet50", ("resnet",), "classification", tuple((r, "resnet") for r in ROUNDS)),
    # constants.py: "retinanet" in MODEL_CONFIG[v5.0|v5.1|v6.0]["models"], not in v6.1's.
    # loadgen/mlperf.conf: retinanet.*.* rules.
    Model("retinanet", (), "detection", tuple((r, "retinanet") for r in ("v5.0", "v5.1", "v6.0"))),
)
_BY_NAME = {name: model for model in MODELS for name in model.names}
NAMES = tuple(_BY_NAME)


def find(name: str) -> Model | None:
    """The table's entry for any of a model's names (exact, as LoadGen matches); None: unknown."""
    return _BY_NAME.get(name)


def conf_name(name: str) -> str:
    """The name to give LoadGen's FromConfig, so mlperf.conf's rules for the model apply."""
    model = find(name)
    return model.conf_name if model else name


def task_of(name: str) -> str:
    model = find(name)
    return model.task if model else DEFAULT_TASK


def submission_name(name: str, round_: str) -> str | None:
    """The results directory's name that round's checker expects; None: the round does
    not have the model. An unknown model keeps its given name."""
    model = find(name)
    return model.checker_name(round_) if model else name


def rounds_having(name: str) -> tuple[str, ...]:
    """The rounds whose menu has the model (none known for a model the table lacks)."""
    model = find(name)
    return model.rounds if model else ()


def conf_key(key: str, name: str) -> str:
    """A user.conf key with the model part of any of ``name``'s names as mlperf.conf's name.

    LoadGen matches a key's model part exactly against the one name FromConfig gets (the
    mlperf.conf name): a ``resnet.Offline.target_qps`` line would be silently dropped on a
    run LoadGen knows as ``resnet50``. Every name of the model means the model, so its lines
    apply whichever name the file or the user chose. Other models' lines and ``*`` stay.
    """
    model = find(name)
    # A model name may hold dots (3d-unet-99.9): the model part is the text before the
    # key's last two dots.
    head = key.rsplit(".", 2)[0]
    if model is None or key.count(".") < 2 or head == model.conf_name or head not in model.names:
        return key
    return model.conf_name + key[len(head) :]


def user_conf_for_loadgen(text: str, name: str) -> str:
    """A user.conf's text with every line for another name of the model keyed by the
    mlperf.conf name (see conf_key); the text itself when no line needs it."""
    lines = text.splitlines(keepends=True)
    changed = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key = stripped.split(None, 1)[0].split("=", 1)[0].split("#", 1)[0]
        new = conf_key(key, name)
        if new != key:
            indent = line[: len(line) - len(stripped)]
            lines[i] = indent + new + stripped[len(key) :]
            changed = True
    return "".join(lines) if changed else text
