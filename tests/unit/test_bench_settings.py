from __future__ import annotations

import json

import pytest

from mlbox_bench.cli import main
from mlbox_bench.settings import SettingsError, parse_settings


def test_precedence_flag_over_mlbox_over_cm_over_default() -> None:
    env = {"MLBOX_SCENARIO": "Server", "CM_MLPERF_LOADGEN_SCENARIO": "SingleStream", "CM_MLPERF_EXEC_MODE": "parallel"}
    s, _ = parse_settings(["--scenario", "MultiStream"], env)
    assert (s.scenario, s.sources["scenario"]) == ("MultiStream", "flag --scenario")
    s, _ = parse_settings([], env)
    assert (s.scenario, s.sources["scenario"]) == ("Server", "MLBOX_SCENARIO")
    s, _ = parse_settings([], {"CM_MLPERF_LOADGEN_SCENARIO": "SingleStream"})
    assert (s.scenario, s.sources["scenario"]) == ("SingleStream", "CM_MLPERF_LOADGEN_SCENARIO")
    s, _ = parse_settings([], {})
    assert s.scenario == "Offline"
    assert "scenario" not in s.sources
    s, _ = parse_settings([], env)
    assert s.execmode == "parallel"


def test_cm_flag_spellings_work_as_given() -> None:
    s, _ = parse_settings(
        [
            "--modelpath",
            "m.onnx",
            "--output_dir",
            "o",
            "--concurrency",
            "3",
            "--ep",
            "CPUExecutionProvider",
            "--execmode",
            "parallel",
            "--interop",
            "2",
            "--intraop",
            "1",
            "--runner",
            "threadpool",
            "--samples",
            "64",
            "--scenario",
            "offline",
        ],
        {},
    )
    assert (s.modelpath, s.output_dir, s.concurrency, s.execmode, s.interop, s.intraop, s.runner, s.samples) == (
        "m.onnx",
        "o",
        3,
        "parallel",
        2,
        1,
        "threadpool",
        64,
    )
    assert s.scenario == "Offline"  # case-normalised: LoadGen's config lookups are case-sensitive


def test_misspelt_mlbox_variable_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="unknown environment variable MLBOX_SCENARO; did you mean MLBOX_SCENARIO"):
        parse_settings([], {"MLBOX_SCENARO": "Server"})


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--concurrency", "two"], {}, "flag --concurrency: 'two' is not a whole number"),
        ([], {"CM_MLPERF_INTRAOP": "-1"}, "CM_MLPERF_INTRAOP: '-1' must be 0 or more"),
        ([], {"MLBOX_SCENARIO": "Servr"}, "MLBOX_SCENARIO: 'Servr' is not one of .*did you mean 'Server'"),
        (["--duration", "0"], {}, "must be greater than 0"),
    ],
)
def test_bad_values_name_their_source(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, env)


def test_print_settings_reports_value_and_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CM_MLPERF_EXEC_MODE", "parallel")
    assert main(["--print-settings", "--scenario", "Server"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == {"value": "Server", "source": "flag --scenario"}
    assert out["execmode"] == {"value": "parallel", "source": "CM_MLPERF_EXEC_MODE"}
    assert out["runner"] == {"value": "inline", "source": "default"}


def test_bad_env_exits_2_with_the_name(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLBOX_DURATON", "5")
    assert main([]) == 2
    assert "MLBOX_DURATON" in capsys.readouterr().err
