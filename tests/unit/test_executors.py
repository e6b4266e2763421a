"""The executors against the fake engine: staging a build context, push, run.

Each capability is also exercised against the real engine in tests/integration/; these
cover the paths a real engine rarely takes (a refused push, a start that fails, Ctrl-C).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from mlbox import layout
from mlbox.build import Inputs, build_image, stage_context
from mlbox.catalog import load_catalog
from mlbox.engine import Mount
from mlbox.errors import EngineError, PushError, RunError
from mlbox.fetch import ModelFile
from mlbox.paths import packaged_catalog, templates
from mlbox.plan import BuildPlan, make_plan, select
from mlbox.publish import Credentials, parse_registry, push_image
from mlbox.run import RUN_RECORD, RunOptions, run_benchmark
from mlbox.wheelhouse import LOCK_FILE
from tests.support.fake_engine import FakeEngine

MODEL_SHA = "f" * 64


@pytest.fixture
def plan() -> BuildPlan:
    spec = select(load_catalog(packaged_catalog()), model="resnet50", device="cpu", variant="synthetic")
    return make_plan(spec, templates())


@pytest.fixture
def inputs(tmp_path: Path, plan: BuildPlan) -> Inputs:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx bytes")
    houses = {}
    for house in plan.wheelhouses:
        folder = tmp_path / "houses" / house.folder
        folder.mkdir(parents=True)
        (folder / f"{house.folder}_pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
        (folder / LOCK_FILE).write_text(f"{house.folder}_pkg==1.0 --hash=sha256:{'0' * 64}\n")
        houses[house.folder] = folder
    return Inputs(ModelFile(model, MODEL_SHA, "0" * 32, "test"), houses)


def test_the_build_context_holds_exactly_what_the_plan_lists(plan: BuildPlan, inputs: Inputs, tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    stage_context(context, plan, inputs)
    files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
    model_file = f"{layout.CONTEXT_MODEL}/{plan.spec.variant_spec.file}"
    assert {"Dockerfile", model_file, layout.LAUNCHER, "wheels/requirements.lock", "loadgen/requirements.lock"} <= files
    assert (context / "Dockerfile").read_text() == plan.dockerfile
    assert (context / model_file).read_bytes() == b"onnx bytes"
    # The harness is the installed package, without bytecode caches.
    harness = {f.removeprefix("app/mlbox_bench/") for f in files if f.startswith("app/mlbox_bench/")}
    assert {"cli.py", "settings.py", "run.py", "runners.py"} <= harness
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # Every entry is the plan's: nothing staged that the plan does not name.
    assert all(any(f == e.dest or f.startswith(e.dest + "/") for e in plan.context) for f in files)
    # Readable by the image's non-root user; only the launcher is executable.
    modes = {f: stat.S_IMODE((context / f).stat().st_mode) for f in files}
    assert modes[layout.LAUNCHER] == 0o755
    assert {m for f, m in modes.items() if f != layout.LAUNCHER} == {0o644}


def test_build_fills_every_build_argument_and_cleans_its_context(plan: BuildPlan, inputs: Inputs) -> None:
    engine = FakeEngine()
    result = build_image(plan, engine, inputs, on_line=lambda line: None)
    [(_, (tag, buildargs))] = [c for c in engine.calls if c[0] == "build"]
    assert tag == plan.spec.tag == result.tag
    assert set(buildargs) == set(layout.BUILD_ARGS)
    assert buildargs["MLBOX_MODEL_SHA256"] == MODEL_SHA
    assert "Dockerfile" in engine.built_contexts[0]
    assert result.image_id.startswith("sha256:")


def _published(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "published.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_push_records_the_digest_and_keeps_the_remote_tag(tmp_path: Path) -> None:
    engine = FakeEngine(images={"mlbox:a-cpu": {"Id": "sha256:1", "Config": {"Labels": {"mlbox.model": "a"}}}})
    registry = parse_registry("127.0.0.1:5000/ml")
    published = push_image(
        engine, "mlbox:a-cpu", registry, None, records=tmp_path / "published.jsonl", on_progress=lambda line: None
    )
    assert published.reference == f"127.0.0.1:5000/ml/mlbox@{engine.digest}"
    assert "127.0.0.1:5000/ml/mlbox:a-cpu" in engine.images
    [record] = _published(tmp_path)
    assert record["digest"] == engine.digest
    assert record["labels"] == {"mlbox.model": "a"}


@pytest.mark.parametrize("failure", [PushError("unauthorized"), KeyboardInterrupt()], ids=["refused", "interrupted"])
def test_a_push_that_does_not_finish_removes_its_tag_and_writes_no_record(
    failure: BaseException, tmp_path: Path
) -> None:
    engine = FakeEngine(images={"mlbox:a-cpu": {"Id": "sha256:1"}}, fail={"push": failure})
    with pytest.raises(type(failure)):
        push_image(
            engine,
            "mlbox:a-cpu",
            parse_registry("r.example/ml"),
            Credentials("u", "p"),
            records=tmp_path / "published.jsonl",
            on_progress=lambda line: None,
        )
    assert set(engine.images) == {"mlbox:a-cpu"}
    assert ("untag", ("r.example/ml/mlbox:a-cpu",)) in engine.calls
    assert _published(tmp_path) == []


def test_pushing_an_image_that_was_never_built_touches_nothing(tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(PushError, match="cannot push mlbox:ghost-cpu: image mlbox:ghost-cpu not found"):
        push_image(
            engine,
            "mlbox:ghost-cpu",
            parse_registry("r.example/ml"),
            None,
            records=tmp_path / "published.jsonl",
            on_progress=lambda line: None,
        )
    assert [n for n in engine.names() if n in ("tag", "push")] == []


IMAGE = "mlbox:a-cpu"


def _engine(**kwargs: Any) -> FakeEngine:
    labels = {"mlbox.device": "cpu"}
    return FakeEngine(
        images={IMAGE: {"Id": "sha256:1", "RepoDigests": ["r/x@sha256:2"], "Config": {"Labels": labels}}}, **kwargs
    )


def _record(out: Path) -> dict[str, object]:
    return dict(json.loads((out / RUN_RECORD).read_text()))


def test_run_streams_the_log_records_the_run_and_removes_the_container(tmp_path: Path) -> None:
    engine = _engine(log_lines=["one", "two"], exit_code=4)
    out = tmp_path / "results"
    seen: list[str] = []
    code = run_benchmark(engine, IMAGE, ["--scenario", "Server"], RunOptions(out), on_line=seen.append)
    assert (code, seen) == (4, ["one", "two"])
    [(_, (spec,))] = [c for c in engine.calls if c[0] == "create_container"]
    assert spec.network == "none"
    assert spec.gpus is False
    assert spec.command == ("--scenario", "Server")
    assert spec.mounts == (Mount(out.resolve(), layout.RESULTS_DIR),)
    assert spec.tmpfs == ()

    record = _record(out)
    assert (record["exit_code"], record["image_id"], record["repo_digests"]) == (4, "sha256:1", ["r/x@sha256:2"])
    assert engine.containers == {}


def test_a_read_only_run_still_has_a_writable_tmp(tmp_path: Path) -> None:
    engine = _engine()
    run_benchmark(engine, IMAGE, [], RunOptions(tmp_path / "r", read_only=True), on_line=lambda line: None)
    [(_, (spec,))] = [c for c in engine.calls if c[0] == "create_container"]
    assert (spec.read_only, spec.tmpfs) == (True, ("/tmp",))


def test_a_container_that_does_not_start_is_removed_and_leaves_no_record(tmp_path: Path) -> None:
    engine = _engine(fail={"start_container": EngineError("the engine refused to start the container")})
    with pytest.raises(EngineError):
        run_benchmark(engine, IMAGE, [], RunOptions(tmp_path / "results"), on_line=lambda line: None)
    assert "remove_container" in engine.names()
    assert engine.containers == {}
    assert not (tmp_path / "results" / RUN_RECORD).exists()


def test_no_gpu_runtime_is_a_run_error_with_a_hint(tmp_path: Path) -> None:
    refused = EngineError('could not select device driver "" with capabilities: [[gpu]]')
    engine = _engine(fail={"start_container": refused})
    with pytest.raises(RunError, match="cannot give GPUs") as err:
        run_benchmark(engine, IMAGE, [], RunOptions(tmp_path / "r", gpus="all"), on_line=lambda line: None)
    assert "nvidia-container-toolkit" in (err.value.hint or "")
    assert engine.containers == {}


def test_ctrl_c_stops_the_container_records_its_code_and_removes_it(tmp_path: Path) -> None:
    engine = _engine(log_lines=["a", "b", "c"], interrupt_after=1)
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(engine, IMAGE, [], RunOptions(out), on_line=lambda line: None)
    names = engine.names()
    assert names.index("stop_container") < names.index("remove_container")
    assert _record(out)["exit_code"] == 143  # the harness got SIGTERM
    assert engine.containers == {}


def test_losing_the_engine_mid_run_still_records_and_removes(tmp_path: Path) -> None:
    engine = _engine(fail={"wait_container": EngineError("lost the Docker engine")})
    out = tmp_path / "results"
    with pytest.raises(EngineError):
        run_benchmark(engine, IMAGE, [], RunOptions(out), on_line=lambda line: None)
    assert _record(out)["exit_code"] is None
    assert engine.containers == {}


def test_an_image_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    engine = FakeEngine()
    with pytest.raises(EngineError, match="not found"):
        run_benchmark(engine, "mlbox:ghost", [], RunOptions(tmp_path / "r"), on_line=lambda line: None)
    assert "create_container" not in engine.names()
    assert not (tmp_path / "r").exists()
