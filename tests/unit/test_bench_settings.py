from __future__ import annotations

import json
import os
from pathlib import Path

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
    with pytest.raises(
        SettingsError, match="unknown environment variable MLBOX_SCENARO; did you mean 'MLBOX_SCENARIO'"
    ):
        parse_settings([], {"MLBOX_SCENARO": "Server"})


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("CM_MLPERF_LOADGEN_SCENARO", "CM_MLPERF_LOADGEN_SCENARIO"),
        ("MLC_MLPERF_RUNER", "MLC_MLPERF_RUNNER"),
        ("CM_MLPERF_INTRAOPS", "CM_MLPERF_INTRAOP"),
        ("MLC_ML_MODEL_FILE_WITHPATH", "MLC_ML_MODEL_FILE_WITH_PATH"),
    ],
)
def test_a_misspelt_mlc_or_cm_variable_is_refused_with_the_closest_name(name: str, meant: str) -> None:
    with pytest.raises(SettingsError, match=f"unknown environment variable {name}; did you mean '{meant}'"):
        parse_settings([], {name: "x"})


def test_mlcommons_automations_own_variables_pass() -> None:
    """CM and MLC set hundreds of variables of their own, some a letter away from the
    harness's (the app's list of scenarios): those are not typos."""
    own = {
        "CM_MLPERF_LOADGEN_SCENARIOS": "Offline,Server",
        "MLC_MLPERF_LOADGEN_SCENARIOS": "Offline",
        "CM_MLPERF_EXECUTION_MODE": "valid",
        "CM_MLPERF_LOADGEN_MODE": "performance",
        "CM_ML_MODEL_FILE": "resnet50_v1.onnx",
        "CM_HOST_OS_TYPE": "linux",
        "MLC_TMP_CURRENT_SCRIPT_PATH": "/tmp",
    }
    settings, _ = parse_settings([], own)
    assert settings.scenario == "Offline"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--concurrency", "two"], {}, "flag --concurrency: 'two' is not a whole number"),
        ([], {"CM_MLPERF_INTRAOP": "-1"}, "CM_MLPERF_INTRAOP: '-1' is out of range: 0 to 1,024"),
        ([], {"MLBOX_SCENARIO": "Servr"}, "MLBOX_SCENARIO: 'Servr' is not one of .*did you mean 'Server'"),
        (["--duration", "0"], {}, "out of range: above 0"),
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


# One value per option that differs from its default; flags that take no value are None.
SAMPLE_VALUES = {
    "scenario": "Server",
    "mode": "accuracy",
    "modelpath": "m.onnx",
    "model_format": "torchscript",
    "preprocessing": "torchvision",
    "input_shape": "3,32,32",
    "model": "retinanet",
    "task": "detection",
    "dataset": "/data/imagenet",
    "preprocessed_dir": "/tmp/prep",
    "data_format": "NHWC",
    "duration": "2.5",
    "max_duration": "30",
    "target_qps": "40",
    "target_latency": "12.5",
    "latency_percentile": "90",
    "min_query_count": "100",
    "max_query_count": "1000",
    "samples": "500",
    "performance_sample_count": "64",
    "samples_per_query": "4",
    "user_conf": "/etc/user.conf",
    "audit_conf": "/etc/audit.config",
    "compliance": "TEST01",
    "max_batchsize": "8",
    "runner": "processpool",
    "tune": "off",
    "batch_window": "1.5",
    "samples_on_device": None,
    "concurrency": "4",
    "ep": "CUDAExecutionProvider",
    "ep_options": "prefer_nhwc=1",
    "execmode": "parallel",
    "intraop": "3",
    "interop": "2",
    "torch_threads": "3",
    "torch_interop_threads": "2",
    "half": None,
    "channels_last": None,
    "torch_compile": None,
    "torch_compile_mode": "reduce-overhead",
    "model_code": "/code",
    "model_cfg": "/code/cfg.json",
    "tf_intra_op_threads": "3",
    "tf_inter_op_threads": "2",
    "tf_input": "images:0",
    "tf_output": "probabilities",
    "tflite_threads": "3",
    "output_dir": "/out",
    "submission_layout": None,
    "system_name": "box1",
    "submitter": "acme",
    "division": "open",
    "submission_round": "v6.0",
    "allow_invalid": None,
    "weights": "synthetic",
    "device": "cuda",
    "backend": "pytorch",
}


# Settings that apply in some scenarios only: the scenario each sample value is read in.
SCENARIO_FOR = {"target_latency": "Server", "latency_percentile": "Server", "samples_per_query": "MultiStream"}


def test_every_option_is_in_the_table_above() -> None:
    from mlbox_bench.settings import OPTIONS

    assert {o.name for o in OPTIONS} == set(SAMPLE_VALUES)


# The backends that read each backend option: onnxruntime declares ep and samples_on_device,
# which pytorch reads too (its SHARED_OPTIONS).
BACKEND_OWNERS = {
    "samples_on_device": ("onnxruntime", "pytorch"),
    "ep": ("onnxruntime", "pytorch"),
    "ep_options": ("onnxruntime",),
    "execmode": ("onnxruntime",),
    "intraop": ("onnxruntime",),
    "interop": ("onnxruntime",),
    "torch_threads": ("pytorch",),
    "torch_interop_threads": ("pytorch",),
    "half": ("pytorch",),
    "channels_last": ("pytorch",),
    "torch_compile": ("pytorch",),
    "torch_compile_mode": ("pytorch",),
    "model_code": ("pytorch",),
    "model_cfg": ("pytorch",),
    "tf_intra_op_threads": ("tensorflow",),
    "tf_inter_op_threads": ("tensorflow",),
    "tf_input": ("tensorflow",),
    "tf_output": ("tensorflow",),
    "tflite_threads": ("tflite",),
}


def test_backend_options_are_declared_by_their_backends_and_listed_with_their_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    from dataclasses import replace

    from mlbox_bench.backends import BACKENDS
    from mlbox_bench.settings import BY_NAME, OPTIONS

    declared = {}
    shared = []
    for backend in BACKENDS:
        module = importlib.import_module(f"mlbox_bench.backends.{backend}")
        for opt in module.OPTIONS:
            assert not opt.owner, f"{backend} spells {opt.name}'s owner: the table derives it"
            assert opt.name not in declared, f"{opt.name} is declared twice"
            declared[opt.name] = (backend, opt)
        shared += [(backend, name) for name in getattr(module, "SHARED_OPTIONS", ())]
    for backend, name in shared:
        assert declared[name][0] != backend, f"{backend} shares its own {name}"
    assert {name: BY_NAME[name].owner for name in declared} == BACKEND_OWNERS
    assert len(OPTIONS) == len(BY_NAME)  # no option twice
    # The settings module's own rows are for every run: no backend row is declared there.
    assert {o.name for o in OPTIONS if o.owner} == set(declared)
    for name, (_, opt) in declared.items():
        assert BY_NAME[name] == replace(opt, owner=BACKEND_OWNERS[name])
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option's help
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for _, opt in declared.values():
        (line,) = (line for line in lines if opt.help in line)
        assert line.endswith(f"[env {', '.join((opt.env, *opt.aliases))}]"), line
        assert all(flag in "\n".join(lines) for flag in opt.all_flags)
    with pytest.raises(SettingsError, match="ep is a onnxruntime/pytorch option; this run uses tflite"):
        parse_settings(["--backend", "tflite", "--ep", "CPUExecutionProvider"], {})


@pytest.mark.parametrize("name", sorted(SAMPLE_VALUES))
def test_flag_variable_alias_and_image_default_give_the_same_value(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlbox_bench.settings import BY_NAME

    monkeypatch.setattr("mlbox_bench.settings.read_user_conf", lambda *a: {})  # /etc/user.conf need not exist
    opt = BY_NAME[name]
    raw = SAMPLE_VALUES[name]
    context = ["--scenario", SCENARIO_FOR[name]] if name in SCENARIO_FOR else []
    if opt.owner and "onnxruntime" not in opt.owner:  # a backend's options are read only on runs that use it
        context += ["--backend", opt.owner[0]]
    if name in ("half", "channels_last", "torch_compile"):  # CUDA's own
        context += ["--device", "cuda"]
    if name == "samples_on_device":  # GPU memory: onnxruntime's CUDA provider
        context += ["--ep", "CUDAExecutionProvider"]
    flag_args = [*context, opt.all_flags[0]] if raw is None else [*context, opt.all_flags[0], raw]
    env_value = "1" if raw is None else raw
    via_flag, _ = parse_settings(flag_args, {})
    assert via_flag.sources[name] == f"flag {opt.all_flags[0]}"
    ways = {opt.env: opt.env, opt.image_env: opt.image_env + " (image)", **{a: a for a in opt.aliases}}
    for variable, source in ways.items():
        settings = parse_settings(context, {variable: env_value})[0]
        assert getattr(settings, name) == getattr(via_flag, name), variable
        assert settings.sources[name] == source
    default = getattr(parse_settings(context, {})[0], name)
    assert getattr(via_flag, name) != default


def test_find_peak_is_only_for_server() -> None:
    with pytest.raises(SettingsError, match="find-peak searches Server"):
        parse_settings(["--mode", "find-peak"], {})
    s, _ = parse_settings(["--mode", "find-peak", "--scenario", "Server"], {})
    assert s.mode == "find-peak"


def test_performance_sample_count_cannot_exceed_samples() -> None:
    with pytest.raises(SettingsError, match="larger than --samples"):
        parse_settings(["--samples", "10", "--performance-sample-count", "20"], {})


def test_unknown_image_default_is_refused() -> None:
    with pytest.raises(SettingsError, match="MLBOX_DEFAULT_MODLEPATH; did you mean 'MLBOX_DEFAULT_MODELPATH'"):
        parse_settings([], {"MLBOX_DEFAULT_MODLEPATH": "x"})


def test_user_conf_sits_between_variables_and_image_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text("*.Server.target_qps = 75\nresnet50.*.min_query_count = 300  # comment\n*.*.mode = 1\n")
    image = {"MLBOX_DEFAULT_TARGET_QPS": "5", "MLBOX_DEFAULT_MODE": "performance"}
    s, _ = parse_settings(["--user-conf", str(conf), "--scenario", "Server"], image)
    assert (s.target_qps, s.sources["target_qps"]) == (75.0, f"user.conf {conf}")
    assert (s.min_query_count, s.mode) == (300, "accuracy")
    assert not s.set_by_user("target_qps")  # LoadGen reads it from the file itself
    s, _ = parse_settings(["--user-conf", str(conf), "--scenario", "Server"], {**image, "MLBOX_TARGET_QPS": "9"})
    assert (s.target_qps, s.sources["target_qps"]) == (9.0, "MLBOX_TARGET_QPS")
    assert s.set_by_user("target_qps")
    s, _ = parse_settings(["--scenario", "Server"], image)
    assert (s.target_qps, s.sources["target_qps"]) == (5.0, "MLBOX_DEFAULT_TARGET_QPS (image)")


def test_user_conf_lookup_order_is_loadgens(tmp_path: Path) -> None:
    from mlbox_bench.settings import read_user_conf

    conf = tmp_path / "user.conf"
    conf.write_text(
        "*.*.target_qps = 1\nresnet50.*.target_qps = 2\n*.Offline.target_qps = 3\n"
        "resnet50.Offline.target_qps = 4\nretinanet.Server.target_qps = 5\n"
    )
    assert float(read_user_conf(str(conf), "resnet50", "Offline")["target_qps"]) == 4
    assert float(read_user_conf(str(conf), "bert", "Offline")["target_qps"]) == 3
    assert float(read_user_conf(str(conf), "resnet50", "Server")["target_qps"]) == 2
    assert float(read_user_conf(str(conf), "bert", "Server")["target_qps"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("*.*.target_qps=5\n", "line 1: expected 'model.scenario.key = value'"),
        ("*.*.mode = 0\n", "mode = 0 is not supported"),
        ("*.*.min_duration = soon\n", "user.conf: min_duration = soon is not a number"),
        (
            "# a comment\n*.Offline.min_querycount = 5\n",
            "line 2: LoadGen has no setting 'min_querycount'; did you mean 'min_query_count'?",
        ),
        ("resnet50.offline.target_qps = 5\n", "scenario 'offline' is not one of SingleStream, MultiStream"),
        ("target_qps = 5\n", "'target_qps' is not model.scenario.key"),
    ],
)
def test_bad_user_conf_lines_are_refused(text: str, message: str, tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text(text)
    with pytest.raises(SettingsError, match=message):
        parse_settings(["--user-conf", str(conf)], {})


def test_missing_user_conf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read it"):
        parse_settings(["--user-conf", str(tmp_path / "nope.conf")], {})


@pytest.mark.subprocess
def test_user_conf_reaches_loadgen_once_per_process(bench_model: Path, tmp_path: Path) -> None:
    """Run in a fresh process: LoadGen reads mlperf.conf only on the first FromConfig."""
    import subprocess
    import sys

    conf = tmp_path / "user.conf"
    conf.write_text("*.SingleStream.min_query_count = 100\n*.SingleStream.target_latency = 0.005\n")
    out = tmp_path / "out"
    # --allow-invalid: what LoadGen read decides this test, not a 0.05 s run's verdict.
    flags = ["--scenario", "SingleStream", "--duration", "0.05", "--samples", "64", "--allow-invalid"]
    cmd = [sys.executable, "-m", "mlbox_bench", "--modelpath", str(bench_model), *flags]
    cmd += ["--user-conf", str(conf), "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["effective_settings"]["min_query_count"] == 100
    assert result["sources"]["user_conf"] == "flag --user-conf"
    # The file set the expected latency, so mlbox-bench does not calibrate it away.
    assert result["harness"]["calibration"] == {}
    detail = (out / "mlperf_log_detail.txt").read_text()
    assert '"key": "requested_single_stream_expected_latency_ns", "value": 5000' in detail


def test_every_variable_the_mlbox_cli_reads_is_known_to_mlbox_bench() -> None:
    """`mlbox bench` runs the harness in the same environment as `mlbox`: a variable set for
    the host tool must not be refused as a typo by the harness."""
    import click

    from mlbox.cli import cli
    from mlbox_bench.settings import BY_NAME, HOST_VARIABLES

    used: set[str] = set()
    ctx = click.Context(cli)
    commands = [cli, *(cli.get_command(ctx, name) for name in cli.list_commands(ctx))]
    for command in commands:
        assert command is not None
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str) and envvar.startswith("MLBOX_"):
                used.add(envvar)
    used |= {"MLBOX_CACHE_DIR", "MLBOX_STATE_DIR", "MLBOX_REGISTRY_USERNAME", "MLBOX_REGISTRY_PASSWORD"}  # read in code
    assert used == HOST_VARIABLES
    # ... and the harness reads none of them: one name, one meaning.
    assert {o.env for o in BY_NAME.values()} & HOST_VARIABLES == set()


def test_mlbox_bench_ignores_the_variables_that_pick_catalog_rows_for_the_host_tool(
    bench_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlbox bench` runs the harness in the host tool's environment: MLBOX_MODEL,
    MLBOX_DEVICE and MLBOX_BACKEND set there for `mlbox build` (a catalog model, a device,
    a backend) do not become the harness's MLPerf model name, device or backend."""
    from mlbox.cli import main

    monkeypatch.setenv("MLBOX_MODEL", "tiny")  # a catalog model: not an MLPerf name mlperf.conf knows
    monkeypatch.setenv("MLBOX_DEVICE", "cuda")  # the harness would refuse to run on this GPU-less host
    monkeypatch.setenv("MLBOX_BACKEND", "pytorch")  # and could not load an ONNX file with PyTorch
    out = tmp_path / "out"
    args = [
        "bench",
        "--modelpath",
        str(bench_model),
        "--output-dir",
        str(out),
        "--scenario",
        "SingleStream",
        "--duration",
        "0.2",
        "--samples",
        "16",
        "--allow-invalid",
    ]
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert (result["model"]["name"], result["backend"]["name"], result["backend"]["device"]) == (
        "resnet50",
        "onnxruntime",
        "cpu",
    )
    assert result["sources"]["model"] == "default"
    # The harness's own variables for them still work.
    monkeypatch.setenv("MLBOX_MLPERF_MODEL", "retinanet")
    s, _ = parse_settings(["--modelpath", str(bench_model)], dict(os.environ))
    assert (s.model, s.source("model")) == ("retinanet", "MLBOX_MLPERF_MODEL")


def test_an_arguments_file_stands_for_its_lines_and_later_flags_win(tmp_path: Path) -> None:
    """`mlbox k8s` gives each pod of an Indexed Job `@/etc/mlbox/matrix/<index>`."""
    cell = tmp_path / "0"
    cell.write_text("--scenario\nServer\n--output-dir\n/results/run/0\n")
    s, _ = parse_settings([f"@{cell}", "--concurrency", "3"], {})
    assert (s.scenario, s.output_dir, s.concurrency) == ("Server", "/results/run/0", 3)
    assert s.sources["scenario"] == "flag --scenario"
    s, _ = parse_settings([f"@{cell}", "--scenario", "Offline"], {})
    assert s.scenario == "Offline"


def test_user_conf_keys_are_loadgens_and_a_dotted_model_name_is_read(tmp_path: Path) -> None:
    from mlbox_bench import fields
    from mlbox_bench.settings import read_user_conf

    written = {f.conf_key for per_scenario in fields.TABLE.values() for f in per_scenario.values()}
    assert written <= fields.LOADGEN_CONF_KEYS  # every key mlbox-bench writes, LoadGen reads
    conf = tmp_path / "user.conf"
    conf.write_text("3d-unet-99.9.Offline.target_qps = 7\nother.Server.ttft_latency = 2000\n")
    assert float(read_user_conf(str(conf), "3d-unet-99.9", "Offline")["target_qps"]) == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batchsize", "1000000000"], "flag --max-batchsize: '1000000000' is out of range: 1 to 65,536"),
        (["--duration", "1e300"], "flag --duration: '1e300' is out of range: above 0, at most 604,800"),
        (["--samples", "1e12"], "flag --samples: '1e12' is not a whole number"),
        (["--samples", "100000000000"], "out of range: 1 to 10,000,000"),
        (["--target-qps", "1e12"], "out of range: above 0, at most 10,000,000"),
        (["--max-latency", "1e9"], "out of range: above 0, at most 3,600"),
        (["--concurrency", "100000"], "out of range: 1 to 1,024"),
        (["--intraop", "-1"], "out of range: 0 to 1,024"),
        (["--latency-percentile", "100"], "out of range: above 0, below 100"),
    ],
)
def test_every_number_has_a_range_checked_before_the_run(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(argv, {})
    assert message in str(err.value)


def test_help_states_each_numeric_options_range(capsys: pytest.CaptureFixture[str]) -> None:
    from mlbox_bench.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "largest batch per session run (range: 1 to 65,536) (default: 32)" in text
    assert "(range: above 0, at most 604,800)" in text


@pytest.mark.parametrize(
    "flag", ["--model", "--scenario", "--system-name", "--input-shape", "--ep-options", "--duration"]
)
def test_an_error_quotes_a_long_value_in_one_short_line(flag: str) -> None:
    value = "a\n" + "x" * 100_000
    with pytest.raises(SettingsError) as refused:
        parse_settings([flag, value], {})
    message = str(refused.value)
    assert "\n" not in message
    assert len(message) < 400
    assert "'a\\nxxx" in message
