"""`mlbox bake` and `mlbox publish-record` without an engine or a builder: the bake file is
checked by the Bake file reference's rules, and against what `mlbox build` and `mlbox push`
make of the same inputs."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlbox import layout
from mlbox.bake import BAKE_FILE, Target, bake_file, records_from_metadata, target_name, write_bake
from mlbox.build import Inputs, build_args, build_image
from mlbox.catalog import load_catalog
from mlbox.cli import main
from mlbox.errors import OutputError, RecordError
from mlbox.fetch import ModelFile
from mlbox.paths import packaged_catalog, templates
from mlbox.plan import BuildPlan, make_plan, select
from mlbox.publish import Registry, make_record, parse_registry, push_image
from mlbox.wheelhouse import LOCK_FILE
from tests.support.bake import check_bake_file
from tests.support.fake_engine import FakeEngine
from tests.unit.test_publish import FakeRegistry, closed_port, serve_registry

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REGISTRY = parse_registry("registry.example.com/ml")
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
CONFIG = "sha256:" + "c" * 64
CPU, CUDA = "resnet50-cpu-synthetic", "resnet50-cuda-synthetic"


def plan_for(device: str) -> BuildPlan:
    spec = select(load_catalog(packaged_catalog()), model="resnet50", device=device, variant="synthetic")
    return make_plan(spec, templates())


def fake_inputs(root: Path, plan: BuildPlan) -> Inputs:
    """A model file and wheelhouses with the layout prepare_inputs gives (no download)."""
    root.mkdir(parents=True, exist_ok=True)
    model = root / plan.spec.variant_spec.file
    model.write_bytes(b"onnx " + plan.spec.device.encode())
    houses = {}
    for house in plan.wheelhouses:
        folder = root / house.folder
        folder.mkdir()
        (folder / f"{house.folder}_pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
        (folder / LOCK_FILE).write_text(f"{house.folder}_pkg==1.0 --hash=sha256:{'0' * 64}\n")
        houses[house.folder] = folder
    return Inputs(ModelFile(model, "f" * 64, "0" * 32, "test"), houses)


def dockerfile_labels(dockerfile: str, args: Mapping[str, str]) -> dict[str, str]:
    """The labels the Dockerfile's LABEL instruction gives, its ${ARG}s filled from ``args``."""
    instruction = [line for line in dockerfile.replace("\\\n", " ").splitlines() if line.startswith("LABEL ")][-1]
    labels = {}
    for word in shlex.split(instruction.removeprefix("LABEL ")):
        key, _, value = word.partition("=")
        labels[key] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return labels


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """`mlbox build` stamps MLBOX_CREATED with the time: the same time for both sides."""
    import mlbox.build

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Clock:
            return cls.fromtimestamp(CREATED.timestamp(), tz)

    monkeypatch.setattr(mlbox.build, "datetime", Clock)
    return CREATED


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_target_names_the_tags_and_labels_mlbox_build_and_push_give(
    device: str, tmp_path: Path, frozen_clock: datetime
) -> None:
    plan = plan_for(device)
    inputs = fake_inputs(tmp_path / "inputs", plan)
    engine = FakeEngine()
    built = build_image(plan, engine, inputs, on_line=lambda _: None)
    [(_, (tag, buildargs))] = [call for call in engine.calls if call[0] == "build"]

    local = bake_file([Target(target_name(plan), plan, build_args(plan, inputs))], tmp_path, None)
    [target] = local["target"].values()
    assert target["tags"] == [built.tag] == [tag]
    assert target["args"] == buildargs
    assert target["labels"] == dockerfile_labels(plan.dockerfile, buildargs)
    assert set(target["labels"]) == {k for k, _ in plan.labels} | set(layout.BUILD_ARG_LABELS.values())

    engine.images[built.tag]["Config"]["Labels"] = target["labels"]
    pushed = push_image(engine, built.tag, REGISTRY, None, records=tmp_path / "records.jsonl", on_progress=print)
    remote = bake_file([Target(target_name(plan), plan, build_args(plan, inputs))], tmp_path, REGISTRY)
    assert remote["target"][target_name(plan)]["tags"] == pushed.record["tags"]


def test_the_bake_file_follows_the_bake_reference_and_groups_by_model_and_device(tmp_path: Path) -> None:
    plans = [plan_for("cpu"), plan_for("cuda")]
    path = write_bake(
        plans,
        tmp_path / "bake",
        registry=REGISTRY,
        created=CREATED,
        prepare=lambda plan: fake_inputs(tmp_path / "inputs" / plan.spec.device, plan),
    )
    definition = json.loads(path.read_text())
    check_bake_file(definition)
    cpu, cuda = "resnet50-cpu-synthetic", "resnet50-cuda-synthetic"
    assert definition["group"] == {
        "default": {"targets": [cpu, cuda]},
        "resnet50": {"targets": [cpu, cuda]},
        "cpu": {"targets": [cpu]},
        "cuda": {"targets": [cuda]},
    }
    target = definition["target"][cuda]
    assert target["context"] == str((tmp_path / "bake" / cuda).resolve())
    assert target["platforms"] == ["linux/amd64"]
    assert target["args"] == {"MLBOX_CREATED": "2026-01-02T03:04:05Z", "MLBOX_MODEL_SHA256": "f" * 64}
    assert target["cache-from"] == ["type=registry,ref=registry.example.com/ml/mlbox-cache:resnet50-cuda-synthetic"]
    assert target["cache-to"] == [target["cache-from"][0] + ",mode=max"]
    assert (tmp_path / "bake" / cuda / "Dockerfile").read_text() == plans[1].dockerfile


def test_each_context_is_what_mlbox_build_sends_its_engine(tmp_path: Path) -> None:
    plan = plan_for("cpu")
    inputs = fake_inputs(tmp_path / "inputs", plan)
    engine = FakeEngine()
    build_image(plan, engine, inputs, on_line=lambda _: None)
    write_bake([plan], tmp_path / "bake", registry=None, created=CREATED, prepare=lambda _: inputs)
    context = tmp_path / "bake" / target_name(plan)
    staged = {str(p.relative_to(context)): p.read_bytes() for p in sorted(context.rglob("*")) if p.is_file()}
    assert staged == engine.built_contexts[0]


def test_a_failure_leaves_no_bake_file_and_no_half_staged_context(tmp_path: Path) -> None:
    out = tmp_path / "bake"
    first = [plan_for("cpu")]
    write_bake(first, out, registry=None, created=CREATED, prepare=lambda p: fake_inputs(tmp_path / "a", p))
    assert (out / BAKE_FILE).is_file()

    def prepare(plan: BuildPlan) -> Inputs:
        if plan.spec.device == "cuda":
            msg = "the download failed"
            raise RecordError(msg)
        return fake_inputs(tmp_path / "b", plan)

    with pytest.raises(RecordError):
        write_bake([plan_for("cpu"), plan_for("cuda")], out, registry=None, created=CREATED, prepare=prepare)
    assert not (out / BAKE_FILE).exists()  # the old one named contexts that were being replaced
    assert sorted(p.name for p in out.iterdir()) == [".mlbox-written", "resnet50-cpu-synthetic"]


def metadata(*targets: str, registry: str = "registry.example.com/ml") -> dict[str, Any]:
    """What `docker buildx bake --push --metadata-file` writes (the buildx reference's example)."""
    out: dict[str, Any] = {
        name: {
            "buildx.build.ref": "builder/builder0/0fjb6ubs52xx3vygf6fgdl611",
            "containerimage.config.digest": CONFIG,
            "containerimage.descriptor": {"digest": DIGEST, "mediaType": "application/vnd.oci.image.manifest.v1+json"},
            "containerimage.digest": DIGEST,
            "image.name": f"{registry}/mlbox:{name}",
        }
        for name in targets
    }
    out["buildx.build.warnings"] = []
    return out


def baked(tmp_path: Path, registry: Registry = REGISTRY) -> dict[str, Any]:
    plans = [plan_for("cpu"), plan_for("cuda")]
    path = write_bake(
        plans,
        tmp_path / "bake",
        registry=registry,
        created=CREATED,
        prepare=lambda plan: fake_inputs(tmp_path / "inputs" / plan.spec.device, plan),
    )
    return dict(json.loads(path.read_text()))


def in_registry(registry: Registry, local_tag: str) -> str | None:
    """What the registry answers for every tag here: the metadata's digest."""
    return DIGEST


def test_bake_metadata_becomes_the_records_mlbox_push_writes(tmp_path: Path) -> None:
    definition = baked(tmp_path)
    asked: list[tuple[Registry, str]] = []

    def lookup(registry: Registry, local_tag: str) -> str | None:
        asked.append((registry, local_tag))
        return DIGEST

    [record] = records_from_metadata(
        metadata("resnet50-cpu-synthetic"), definition, None, local_repository="mlbox", lookup=lookup
    )
    assert asked == [(REGISTRY, "mlbox:resnet50-cpu-synthetic")]
    labels = definition["target"]["resnet50-cpu-synthetic"]["labels"]
    expected = make_record(
        "mlbox:resnet50-cpu-synthetic", REGISTRY, DIGEST, image_id=CONFIG, labels=labels, verified="registry"
    )
    assert {k: v for k, v in record.items() if k != "time"} == {k: v for k, v in expected.items() if k != "time"}
    assert record["references"] == [f"registry.example.com/ml/mlbox@{DIGEST}"]

    engine = FakeEngine(images={"mlbox:resnet50-cpu-synthetic": {"Id": CONFIG, "Config": {"Labels": labels}}})
    pushed = push_image(
        engine, "mlbox:resnet50-cpu-synthetic", REGISTRY, None, records=tmp_path / "r", on_progress=print
    )
    assert pushed.record.keys() == record.keys()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update({"ghost": m["resnet50-cpu-synthetic"]}), "target 'ghost', which the bake file does not"),
        (lambda m: m["resnet50-cpu-synthetic"].pop("containerimage.digest"), "has no image digest"),
        (lambda m: m["resnet50-cpu-synthetic"].update({"image.name": "mlbox:resnet50-cpu-synthetic"}), "not to"),
        (
            lambda m: m["resnet50-cpu-synthetic"].update(
                {"image.name": "other.example/ml/mlbox:resnet50-cpu-synthetic"}
            ),
            "not to registry.example.com/ml",
        ),
        (lambda m: m.pop("resnet50-cpu-synthetic"), "names no built target"),
        (
            lambda m: m["resnet50-cpu-synthetic"].update({"image.name": f"{REGISTRY.repository('mlbox')}:{CUDA}"}),
            f"pushed as registry.example.com/ml/mlbox:{CUDA}, the tag of target '{CUDA}'",
        ),
        (
            lambda m: m["resnet50-cpu-synthetic"].update({"image.name": f"{REGISTRY.repository('mlbox')}:old"}),
            "pushed as registry.example.com/ml/mlbox:old, a tag no target of the bake file has",
        ),
    ],
    ids=["unknown target", "no digest", "not pushed", "another registry", "empty", "another's tag", "no one's tag"],
)
def test_unusable_metadata_is_refused(change: Any, message: str, tmp_path: Path) -> None:
    data = metadata("resnet50-cpu-synthetic")
    change(data)
    with pytest.raises(RecordError, match=message):
        records_from_metadata(data, baked(tmp_path), REGISTRY, local_repository="mlbox", lookup=in_registry)


def test_an_unreachable_registry_is_asked_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    asked: list[str] = []

    def unreachable(registry: Registry, local_tag: str) -> str | None:
        asked.append(local_tag)
        return None

    records = records_from_metadata(
        metadata(CPU, CUDA), baked(tmp_path), REGISTRY, local_repository="mlbox", lookup=unreachable
    )
    assert asked == [f"mlbox:{CPU}"]  # one timeout per registry, not one per image
    assert [r["verified"] for r in records] == ["metadata-only"] * 2
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2  # each record says so


@pytest.fixture
def pushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    """Both targets baked for a registry on 127.0.0.1, and there under their tags with DIGEST."""
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path / "state"))
    with serve_registry() as registry:
        baked(tmp_path, parse_registry(f"{registry.address}/ml"))
        registry.manifests.update({f"ml/mlbox:{CPU}": DIGEST, f"ml/mlbox:{CUDA}": DIGEST})
        yield registry


def publish_record(
    tmp_path: Path, data: Mapping[str, Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, list[dict[str, Any]]]:
    """`mlbox publish-record` of ``data``: the exit code, stderr (one line), the records file."""
    meta = tmp_path / "bake" / "metadata.json"
    meta.write_text(json.dumps(data))
    code = main(["publish-record", str(meta)])
    err = " ".join(capsys.readouterr().err.split())
    path = tmp_path / "state" / "published.jsonl"
    return code, err, [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_publish_record_refuses_a_name_of_another_target(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = metadata(CPU, CUDA, registry=f"{pushed.address}/ml")
    data[CPU]["image.name"] = f"{pushed.address}/ml/mlbox:{CUDA}"  # A's digest under B's name
    code, err, records = publish_record(tmp_path, data, capsys)
    assert code == 20
    assert (
        f"target '{CPU}' was pushed as {pushed.address}/ml/mlbox:{CUDA}, the tag of target '{CUDA}'; "
        f"its own tags: {pushed.address}/ml/mlbox:{CPU}"
    ) in err
    assert "hint: " in err
    assert records == []  # not even the target that was right


def test_publish_record_refuses_a_name_no_target_has(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = metadata(CPU, registry=f"{pushed.address}/ml")
    data[CPU]["image.name"] = f"{pushed.address}/ml/mlbox:{CPU}-old"
    pushed.manifests[f"ml/mlbox:{CPU}-old"] = DIGEST
    code, err, records = publish_record(tmp_path, data, capsys)
    assert code == 20
    assert f"pushed as {pushed.address}/ml/mlbox:{CPU}-old, a tag no target of the bake file has" in err
    assert records == []


def test_publish_record_refuses_a_digest_the_registry_does_not_hold_for_the_tag(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed.manifests[f"ml/mlbox:{CUDA}"] = OTHER_DIGEST  # the tag moved, or the metadata is another build's
    code, err, records = publish_record(tmp_path, metadata(CPU, CUDA, registry=f"{pushed.address}/ml"), capsys)
    assert code == 20
    assert f"the registry holds {OTHER_DIGEST} for {pushed.address}/ml/mlbox:{CUDA}, not the metadata's {DIGEST}" in err
    assert "hint: the tag moved" in err
    assert records == []


def test_publish_record_refuses_a_tag_the_registry_does_not_have(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del pushed.manifests[f"ml/mlbox:{CPU}"]
    code, err, records = publish_record(tmp_path, metadata(CPU, CUDA, registry=f"{pushed.address}/ml"), capsys)
    assert code == 20
    assert f"{pushed.address}/ml/mlbox:{CPU} is not in the registry, so it was not pushed there" in err
    assert records == []


def test_publish_record_checks_each_digest_with_the_registry(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, records = publish_record(tmp_path, metadata(CPU, CUDA, registry=f"{pushed.address}/ml"), capsys)
    assert (code, err) == (0, "")
    assert [(r["image"], r["digest"], r["verified"]) for r in records] == [
        (f"mlbox:{CPU}", DIGEST, "registry"),
        (f"mlbox:{CUDA}", DIGEST, "registry"),
    ]
    assert sorted(path for method, path, _ in pushed.requests if method == "HEAD") == [
        f"/v2/ml/mlbox/manifests/{CPU}",
        f"/v2/ml/mlbox/manifests/{CUDA}",
    ]


def test_an_unreachable_registry_leaves_the_metadata_digest_recorded_as_unchecked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MLBOX_STATE_DIR", str(tmp_path / "state"))
    registry = f"{closed_port()}/ml"
    baked(tmp_path, parse_registry(registry))
    code, _, records = publish_record(tmp_path, metadata(CPU, registry=registry), capsys)
    assert code == 0
    # A warning (the CLI's log goes to stderr), not a refusal: the record says what was checked.
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage() == (
        f"{registry}/mlbox:{CPU}: the registry could not be reached: digest {DIGEST} is not checked "
        "against it (recorded as metadata-only)"
    )
    assert [(r["digest"], r["verified"]) for r in records] == [(DIGEST, "metadata-only")]


def test_publish_record_appends_every_record_or_none(
    pushed: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = f"{pushed.address}/ml"
    meta = tmp_path / "bake" / "metadata.json"
    meta.write_text(json.dumps(metadata("resnet50-cpu-synthetic", "resnet50-cuda-synthetic", registry=registry)))
    assert main(["publish-record", str(meta)]) == 0  # the registry is in the pushed names
    assert capsys.readouterr().out.splitlines() == [f"{registry}/mlbox@{DIGEST}"] * 2
    lines = (tmp_path / "state" / "published.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == [
        "mlbox:resnet50-cpu-synthetic",
        "mlbox:resnet50-cuda-synthetic",
    ]

    broken = metadata("resnet50-cpu-synthetic", "resnet50-cuda-synthetic", registry=registry)
    del broken["resnet50-cuda-synthetic"]["containerimage.digest"]
    meta.write_text(json.dumps(broken))
    assert main(["publish-record", str(meta), "--registry", registry]) == 20
    err = capsys.readouterr().err
    assert "'resnet50-cuda-synthetic' has no image digest" in err
    assert "hint: build with `docker buildx bake --push --metadata-file FILE`" in err
    assert len((tmp_path / "state" / "published.jsonl").read_text().splitlines()) == 2  # none of the batch

    meta.write_text("{not json")
    assert main(["publish-record", str(meta), "--registry", registry]) == 20
    assert "is not JSON" in capsys.readouterr().err
    meta.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["publish-record", str(meta), "--registry", registry]) == 20
    assert "nests too deeply to be bake's" in capsys.readouterr().err


def test_mlbox_bake_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command wires selection, inputs and output together; downloads are faked here."""
    import mlbox.build

    monkeypatch.setattr(
        mlbox.build, "prepare_inputs", lambda plan, cache, **kw: fake_inputs(tmp_path / plan.spec.device, plan)
    )
    out = tmp_path / "bake"
    assert main(["bake", "--all", "--model", "resnet50", "--variant", "synthetic", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / BAKE_FILE)
    definition = json.loads((out / BAKE_FILE).read_text())
    check_bake_file(definition)
    assert definition["group"]["default"]["targets"] == ["resnet50-cpu-synthetic", "resnet50-cuda-synthetic"]
    assert definition["target"]["resnet50-cpu-synthetic"]["tags"] == ["mlbox:resnet50-cpu-synthetic"]
    assert "cache-to" not in definition["target"]["resnet50-cpu-synthetic"]  # no registry: nothing to cache to


def test_a_bake_replaces_only_what_mlbox_wrote_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import itertools

    import mlbox.build

    calls = itertools.count()  # fresh inputs for every bake
    monkeypatch.setattr(
        mlbox.build,
        "prepare_inputs",
        lambda plan, cache, **kw: fake_inputs(tmp_path / f"in{next(calls)}" / plan.spec.device, plan),
    )
    out = tmp_path / "bake"
    (out / "resnet50-cpu-synthetic").mkdir(parents=True)
    (out / "resnet50-cpu-synthetic" / "notes.txt").write_text("mine")
    (out / BAKE_FILE).write_text("{}")
    argv = ["bake", "--all", "--model", "resnet50", "--variant", "synthetic", "--out", str(out)]
    assert main(argv) == 25
    err = " ".join(capsys.readouterr().err.split())
    assert f"{out} already holds docker-bake.json, resnet50-cpu-synthetic, which mlbox did not write there" in err
    assert "pass --force to replace them" in err
    assert sorted(p.name for p in out.iterdir()) == [BAKE_FILE, "resnet50-cpu-synthetic"]  # untouched
    assert (out / BAKE_FILE).read_text() == "{}"
    assert (out / "resnet50-cpu-synthetic" / "notes.txt").read_text() == "mine"
    assert main([*argv, "--force"]) == 0
    assert not (out / "resnet50-cpu-synthetic" / "notes.txt").exists()
    assert main(argv) == 0  # what mlbox wrote there, it may replace


def test_what_was_written_before_a_failure_is_recorded_once(tmp_path: Path) -> None:
    from mlbox.files import WRITTEN, refuse_to_replace, writing_into

    out = tmp_path / "out"
    out.mkdir()

    def stage_a_then_fail() -> None:
        with writing_into(out, ["a", "b"], force=False) as wrote:
            (out / "a").write_text("staged")
            wrote("a")
            msg = "the second download failed"
            raise RecordError(msg)

    with pytest.raises(RecordError):
        stage_a_then_fail()
    assert (out / WRITTEN).read_text() == "a\n"  # a is mlbox's: the next run may replace it
    (out / "b").write_text("the user's")
    with pytest.raises(OutputError, match="already holds b, which mlbox did not write there"):
        refuse_to_replace(out, ["a", "b"], force=False)
