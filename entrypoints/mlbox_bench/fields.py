"""The one table of LoadGen fields: which TestSettings field an mlbox-bench setting sets
in each scenario, and the user.conf key LoadGen reads for the same thing.

Settings keep human units (seconds, milliseconds, percent); TestSettings and user.conf
have LoadGen's own. Everything that moves a value between the three goes through this
table: reading a user.conf into settings, applying settings to TestSettings, and writing
the user.conf that reproduces a run.

LoadGen's user.conf parser (TestSettings::FromConfig, LoadGen 6.0) reads integer keys
with strtoull, so a Server ``target_latency`` of 12.5 becomes 12 ms there: that unit is
WHOLE_MS, and the settings refuse a fraction where a user.conf must reproduce the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")


def _loadgen_int(text: str) -> int:
    return int(float(text))  # LoadGen accepts "600000" and "600000.0" for integer keys


def _number_text(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _whole(value: float) -> str:
    if not float(value).is_integer():
        msg = f"{value} is not a whole number of milliseconds (LoadGen's user.conf reads whole ms here)"
        raise ValueError(msg)
    return str(int(value))


@dataclass(frozen=True)
class Unit:
    to_ts: Callable[[Any], Any]  # setting -> TestSettings value
    to_conf: Callable[[Any], str]  # setting -> user.conf text
    from_conf: Callable[[str], Any]  # user.conf text -> setting (ValueError if not a number)


SECONDS_AS_MS = Unit(lambda s: round(s * 1000), lambda s: str(round(s * 1000)), lambda t: _loadgen_int(t) / 1000)
COUNT = Unit(int, lambda n: str(int(n)), _loadgen_int)
RATE = Unit(float, _number_text, float)
PERCENT = Unit(lambda p: float(p) / 100.0, _number_text, float)
MS_AS_NS = Unit(lambda ms: round(ms * 1_000_000), _number_text, float)
WHOLE_MS_AS_NS = Unit(lambda ms: round(ms * 1_000_000), _whole, lambda t: float(_loadgen_int(t)))


@dataclass(frozen=True)
class Field:
    setting: str  # the Settings attribute (mlbox-bench units)
    conf_key: str  # the user.conf key (LoadGen units)
    ts_field: str  # the TestSettings attribute
    unit: Unit


def _table() -> dict[str, dict[str, Field]]:
    rows: list[tuple[str, str, Unit, Mapping[str, str]]] = [
        ("duration", "min_duration", SECONDS_AS_MS, dict.fromkeys(SCENARIOS, "min_duration_ms")),
        ("max_duration", "max_duration", SECONDS_AS_MS, dict.fromkeys(SCENARIOS, "max_duration_ms")),
        ("min_query_count", "min_query_count", COUNT, dict.fromkeys(SCENARIOS, "min_query_count")),
        ("max_query_count", "max_query_count", COUNT, dict.fromkeys(SCENARIOS, "max_query_count")),
        (
            "performance_sample_count",
            "performance_sample_count_override",
            COUNT,
            dict.fromkeys(SCENARIOS, "performance_sample_count_override"),
        ),
        ("samples_per_query", "samples_per_query", COUNT, {"MultiStream": "multi_stream_samples_per_query"}),
        ("target_qps", "target_qps", RATE, {"Server": "server_target_qps", "Offline": "offline_expected_qps"}),
        (
            "latency_percentile",
            "target_latency_percentile",
            PERCENT,
            {
                "SingleStream": "single_stream_target_latency_percentile",
                "MultiStream": "multi_stream_target_latency_percentile",
                "Server": "server_target_latency_percentile",
            },
        ),
    ]
    table: dict[str, dict[str, Field]] = {sc: {} for sc in SCENARIOS}
    for setting, key, unit, where in rows:
        for scenario, ts_field in where.items():
            table[scenario][setting] = Field(setting, key, ts_field, unit)
    # target_latency: expected query latency in the streams, the latency bound in Server.
    table["SingleStream"]["target_latency"] = Field(
        "target_latency", "target_latency", "single_stream_expected_latency_ns", MS_AS_NS
    )
    table["MultiStream"]["target_latency"] = Field(
        "target_latency", "target_latency", "multi_stream_expected_latency_ns", MS_AS_NS
    )
    table["Server"]["target_latency"] = Field(
        "target_latency", "target_latency", "server_target_latency_ns", WHOLE_MS_AS_NS
    )
    return table


TABLE = _table()
# Every setting that has a LoadGen field in some scenario.
SETTINGS = frozenset(name for per_scenario in TABLE.values() for name in per_scenario)

# Every key LoadGen's TestSettings::FromConfig looks up in a user.conf or mlperf.conf
# (loadgen/test_settings_internal.cc, LoadGen 6.0). LoadGen ignores any other key without
# a word, so a misspelt one would silently not take effect: mlbox-bench refuses it.
LOADGEN_CONF_KEYS = frozenset(
    [
        "accuracy_log_probability",
        "accuracy_log_rng_seed",
        "accuracy_log_sampling_target",
        "accuracy_sample_count_override",
        "coalesce_queries",
        "infer_token_latencies",
        "max_async_queries",
        "max_duration",
        "max_query_count",
        "min_duration",
        "min_query_count",
        "mode",
        "performance_issue_same",
        "performance_issue_same_index",
        "performance_issue_unique",
        "performance_sample_count_override",
        "print_timestamps",
        "qsl_rng_seed",
        "sample_concatenate_permutation",
        "sample_index_rng_seed",
        "samples_per_query",
        "schedule_rng_seed",
        "target_latency",
        "target_latency_percentile",
        "target_qps",
        "test05",
        "test05_qsl_rng_seed",
        "test05_sample_index_rng_seed",
        "test05_schedule_rng_seed",
        "token_latency_scaling_factor",
        "tpot_latency",
        "ttft_latency",
        "use_token_latencies",
    ]
)


def field(setting: str, scenario: str) -> Field | None:
    return TABLE[scenario].get(setting)


def scenarios_of(setting: str) -> list[str]:
    return [sc for sc in SCENARIOS if setting in TABLE[sc]]


def test_settings_values(values: Mapping[str, Any], scenario: str) -> dict[str, Any]:
    """TestSettings field -> value (LoadGen's type and unit) for these settings."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        f = TABLE[scenario][name]
        out[f.ts_field] = f.unit.to_ts(value)
    return out


def apply(ts: Any, values: Mapping[str, Any], scenario: str) -> dict[str, Any]:
    applied = test_settings_values(values, scenario)
    for ts_field, value in applied.items():
        setattr(ts, ts_field, value)
    return applied


def user_conf_lines(values: Mapping[str, Any], model: str, scenario: str) -> list[str]:
    """``model.Scenario.key = value`` lines that make LoadGen set these values."""
    return [
        f"{model}.{scenario}.{TABLE[scenario][name].conf_key} = {TABLE[scenario][name].unit.to_conf(value)}"
        for name, value in values.items()
    ]
