"""One MLPerf model, several names: mlperf.conf's (resnet50), the submission checker's per
round (resnet; retinanet only until v6.0), and the --task each model implies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlbox_bench import mlperf
from mlbox_bench.cli import main
from mlbox_bench.settings import SettingsError, parse_settings, read_user_conf


def test_the_table_follows_the_checkers_model_lists() -> None:
    # tools/submission/submission_checker/constants.py MODEL_CONFIG[round]["models"]
    assert [mlperf.submission_name("resnet50", r) for r in mlperf.ROUNDS] == ["resnet"] * 4
    assert mlperf.submission_name("resnet", "v6.1") == "resnet"
    assert mlperf.rounds_having("retinanet") == ("v5.0", "v5.1", "v6.0")
    assert mlperf.submission_name("retinanet", "v6.1") is None
    # A model the table does not know keeps its name everywhere, as before the table.
    assert (mlperf.conf_name("bert-99"), mlperf.submission_name("bert-99", "v6.1")) == ("bert-99", "bert-99")
    assert (mlperf.conf_name("resnet"), mlperf.conf_name("retinanet")) == ("resnet50", "retinanet")


def loadgen_settings(*args: str) -> dict[str, Any]:
    """The TestSettings load_test_settings makes, in a fresh process: LoadGen reads a
    user.conf once per process."""
    code = (
        "import json, sys, mlperf_loadgen as lg\n"
        "from mlbox_bench.run import load_test_settings\n"
        "from mlbox_bench.settings import parse_settings\n"
        "ts = load_test_settings(lg, parse_settings(sys.argv[1:], {})[0])\n"
        "names = [n for n in dir(ts) if not n.startswith('_') and n not in ('FromConfig', 'mode', 'scenario')]\n"
        "print(json.dumps({n: getattr(ts, n) for n in names}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    values: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return values


@pytest.mark.subprocess
def test_resnet_and_resnet50_get_resnet50s_mlperf_conf_rules() -> None:
    by_name = {name: loadgen_settings("--model", name, "--scenario", "Server") for name in ("resnet", "resnet50")}
    assert by_name["resnet"] == by_name["resnet50"]
    assert by_name["resnet"]["performance_sample_count_override"] == 1024  # not LoadGen's generic 0
    assert by_name["resnet"]["server_target_latency_ns"] == 15_000_000


@pytest.mark.subprocess
@pytest.mark.parametrize("written_for", ["resnet", "resnet50"])
def test_a_user_conf_applies_under_either_name(written_for: str, tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text(f"{written_for}.Offline.min_query_count = 300\nretinanet.Offline.max_query_count = 7\n")
    for name in ("resnet", "resnet50"):
        values = loadgen_settings("--model", name, "--user-conf", str(conf))
        assert (values["min_query_count"], values["performance_sample_count_override"]) == (300, 1024), name
        assert values["max_query_count"] != 7  # another model's line
        s, _ = parse_settings(["--model", name, "--user-conf", str(conf)], {})
        assert (s.min_query_count, s.source("min_query_count")) == (300, f"user.conf {conf}")
        assert s.max_query_count is None


def test_the_last_line_for_a_key_wins_under_any_name(tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Offline.min_query_count = 1\nresnet.Offline.min_query_count = 2\n")
    assert read_user_conf(str(conf), "resnet50", "Offline")["min_query_count"] == "2"
    text = mlperf.user_conf_for_loadgen(conf.read_text(), "resnet50")
    assert text == "resnet50.Offline.min_query_count = 1\nresnet50.Offline.min_query_count = 2\n"


def test_the_audit_configs_answer_to_either_name() -> None:
    from mlbox_bench.compliance import AUDIT_CONFIGS, audit_text

    assert audit_text("TEST04", "resnet") == AUDIT_CONFIGS[("TEST04", "resnet50")]


def test_a_model_the_round_lacks_is_refused_before_loadgen_runs(
    bench_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: object) -> None:
        msg = "LoadGen ran"
        raise AssertionError(msg)

    monkeypatch.setattr("mlbox_bench.run.run_loadgen", never)
    out = tmp_path / "out"
    args = ["--modelpath", str(bench_model), "--model", "retinanet", "--submission-layout", "--output-dir", str(out)]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "retinanet is not in MLPerf Inference v6.1's menu; the rounds that have it: v5.0, v5.1, v6.0" in err
    assert "pass --submission-round v6.0" in err
    assert not out.exists()


def test_the_model_directory_is_the_rounds_name() -> None:
    from mlbox_bench.layout import runs_dir, scenario_dir

    where: Any = SimpleNamespace(
        output_dir="o", division="closed", submitter="acme", system_name="box", scenario="Offline", mode="performance"
    )
    for model in ("resnet", "resnet50"):
        s = SimpleNamespace(**vars(where), model=model, submission_round="v6.1", compliance=None)
        assert scenario_dir(s) == Path("o/submission/closed/acme/results/box/resnet/Offline")
        assert runs_dir(s, "accuracy") == Path("o/runs/box/resnet/Offline/accuracy")
    s = SimpleNamespace(**vars(where), model="retinanet", submission_round="v6.0", compliance=None)
    assert scenario_dir(s).parent.name == "retinanet"


def test_a_submission_run_writes_the_rounds_directory(bench_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--modelpath", str(bench_model), "--model-name", "resnet50", "--scenario", "SingleStream", "--duration"]
    args += ["0.05", "--samples", "64", "--allow-invalid", "--submission-layout", "--output-dir", str(out)]
    assert main(args) == 0
    base = out / "submission/closed/mlbox/results/mlbox/resnet/SingleStream"
    assert (base / "performance/run_1/mlperf_log_detail.txt").is_file()
    # LoadGen reads user.conf keys under mlperf.conf's name.
    keys = [line.split()[0] for line in (base / "user.conf").read_text().splitlines() if not line.startswith("#")]
    assert keys
    assert all(k.startswith("resnet50.SingleStream.") for k in keys), keys
    assert "--submission-round v6.1" in (base / "README.md").read_text()
    assert (out / "runs/mlbox/resnet/SingleStream/performance/result.json").is_file()


IMAGE = {"MLBOX_DEFAULT_MODEL": "resnet50", "MLBOX_DEFAULT_TASK": "classification"}


@pytest.mark.parametrize(
    ("args", "env", "task", "source"),
    [
        ([], {}, "classification", "default (model resnet50)"),
        (["--model", "resnet"], {}, "classification", "default (model resnet)"),
        (["--model", "retinanet"], {}, "detection", "default (model retinanet)"),
        (["--model", "bert-99"], {}, "classification", "default"),  # unknown: as before there was a task
        (["--model", "retinanet", "--task", "Classification"], {}, "classification", "flag --task"),
        (["--model", "bert-99"], {"MLBOX_TASK": "detection"}, "detection", "MLBOX_TASK"),
        # An image's default task goes with its default model; a model the user names brings its own.
        ([], IMAGE, "classification", "MLBOX_DEFAULT_TASK (image)"),
        (["--model", "retinanet"], IMAGE, "detection", "default (model retinanet)"),
        (["--model", "retinanet", "--task", "classification"], IMAGE, "classification", "flag --task"),
    ],
)
def test_task_defaults_to_the_models_and_can_be_given(
    args: list[str], env: dict[str, str], task: str, source: str
) -> None:
    s, _ = parse_settings(args, env)
    assert (s.task, s.source("task")) == (task, source)
    assert s.set_by_user("task") == (not source.startswith("default"))


def test_an_unknown_task_is_refused() -> None:
    with pytest.raises(
        SettingsError, match="'segmentation' is not a task mlbox-bench knows \\(classification, detection\\)"
    ):
        parse_settings(["--task", "segmentation"], {})


def test_print_settings_lists_task_and_round(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-settings", "--model", "retinanet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == {"value": "detection", "source": "default (model retinanet)"}
    assert out["submission_round"] == {"value": "v6.1", "source": "default"}
