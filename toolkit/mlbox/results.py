"""`mlbox results`: a table across result.json files and a latency-percentile plot.

The plot is a self-contained HTML page with an inline SVG: no plotting library, and it
opens in any browser, also on a machine with no network.
"""

from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbox.errors import MlboxError, quote
from mlbox.files import NotText, read_text
from mlbox.run import RUN_RECORD

log = logging.getLogger(__name__)

PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


@dataclass(frozen=True)
class Run:
    path: Path  # the directory holding result.json
    result: dict[str, Any]
    record: dict[str, Any]  # mlbox-run.json, when `mlbox run` made the run

    @property
    def image(self) -> str:
        return str(self.record.get("image") or (self.result.get("model") or {}).get("path") or "?")

    @property
    def digest(self) -> str:
        digests = self.record.get("repo_digests") or []
        if digests:
            return str(digests[0]).rpartition("@")[2]
        return str(self.record.get("image_id") or "")

    def percentile_ms(self, p: str) -> float | None:
        percentiles = (self.result.get("latency_ns") or {}).get("percentiles") or {}
        value = percentiles.get(f"{p}_percentile")
        return None if value is None else float(value) / 1e6


def collect(dirs: list[Path]) -> list[Run]:
    """The runs under ``dirs``. A result.json mlbox cannot use (unreadable, not JSON, a
    field of the wrong type) is skipped with a warning naming it, and an unusable
    mlbox-run.json is ignored so: one bad file must not hide a table of good ones."""
    runs = []
    for root in dirs:
        try:
            root.stat()
        except FileNotFoundError:
            msg = f"{root} does not exist"
            raise MlboxError(msg, hint="pass directories that hold result.json files (default: ./results)") from None
        except OSError as err:
            msg = f"cannot read {root}: {err.strerror}"
            raise MlboxError(msg, hint="pass directories that hold result.json files (default: ./results)") from None
        for path in sorted(root.rglob("result.json")):
            try:
                result = _load(path, RESULT_FIELDS)
            except ValueError as err:
                log.warning("%s; skipped", err)
                continue
            if result.get("complete") is False:  # mlbox-bench set an unfinished run aside (incomplete/)
                log.info("%s: a run that did not finish (%s); skipped", path, quote(result.get("reason")))
                continue
            record: dict[str, Any] = {}
            if (path.parent / RUN_RECORD).is_file():
                try:
                    record = _load(path.parent / RUN_RECORD, RECORD_FIELDS)
                except ValueError as err:
                    log.warning("%s; ignored", err)
            runs.append(Run(path.parent, result, record))
    return runs


# What `mlbox results` reads from each file, by key path, and what it must be when present
# (null counts as absent).
TEXT, OBJECT, NUMBER, LATENCY, LIST = "text", "an object", "a finite number", "a finite number >= 0", "a list"
RESULT_FIELDS: dict[tuple[str, ...], str] = {
    ("scenario",): TEXT,
    ("validity",): TEXT,
    ("model",): OBJECT,
    ("model", "path"): TEXT,
    ("metric",): OBJECT,
    ("metric", "value"): NUMBER,
    ("metric", "unit"): TEXT,
    ("latency_ns",): OBJECT,
    ("latency_ns", "percentiles"): OBJECT,
    **{("latency_ns", "percentiles", f"{p}_percentile"): LATENCY for p in PERCENTILES},
}
RECORD_FIELDS: dict[tuple[str, ...], str] = {("image",): TEXT, ("image_id",): TEXT, ("repo_digests",): LIST}


def _load(path: Path, fields: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError, a sentence naming the file, when it cannot
    be read or one of ``fields`` (parents listed before their children) is not as expected."""
    if not path.is_file():  # a directory, a dangling symlink, a FIFO (reading one would wait forever)
        msg = f"{path} is not a regular file"
        raise ValueError(msg)
    try:
        data = json.loads(read_text(path))
    except OSError as err:
        msg = f"cannot read {path}: {err.strerror}"
        raise ValueError(msg) from None
    except NotText:
        raise  # a sentence naming the file already
    except ValueError as err:
        msg = f"{path} is not JSON ({err})"
        raise ValueError(msg) from None
    except RecursionError:
        msg = f"{path} nests too deeply"
        raise ValueError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path} is not a JSON object: {quote(data)}"
        raise ValueError(msg)
    for keys, expected in fields.items():
        parent: Any = data
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        value = parent.get(keys[-1]) if isinstance(parent, dict) else None
        if value is not None and not _is(value, expected):
            msg = f"{path}: {'.'.join(keys)} is {quote(value)}, not {expected}"
            raise ValueError(msg)
    return data


def _is(value: object, expected: str) -> bool:
    if expected in (NUMBER, LATENCY):
        # json reads NaN, Infinity and 1e999 (inf) as floats; a 400-digit integer fits no float
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        try:
            return math.isfinite(value) and (expected == NUMBER or value >= 0)
        except OverflowError:
            return False
    kind = {TEXT: str, OBJECT: dict, LIST: list}[expected]
    return isinstance(value, kind)


def table_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        metric = run.result.get("metric") or {}
        value = metric.get("value")
        p99 = run.percentile_ms("99.00")
        rows.append(
            [
                str(run.path),
                run.image,
                run.digest[:19],
                str(run.result.get("scenario") or "?"),
                "-" if value is None else f"{value:g} {metric.get('unit') or ''}".strip(),
                str(run.result.get("validity") or "?"),
                "-" if p99 is None else f"{p99:.3f}",
            ]
        )
    return rows


def plot_html(runs: list[Run]) -> str:
    """Latency percentiles (ms, log scale) per run, one polyline each."""
    series = [(run, [run.percentile_ms(p) for p in PERCENTILES]) for run in runs]
    values = [v for _, vs in series for v in vs if v]
    if not values:
        msg = "no latency percentiles in these results to plot"
        raise MlboxError(msg)
    lo, hi = math.log10(min(values)), math.log10(max(values))
    hi = hi if hi > lo else lo + 1
    width, height, left, top, bottom = 760, 360, 70, 20, 40
    plot_w, plot_h = width - left - 20, height - top - bottom

    def x(i: int) -> float:
        return left + plot_w * i / (len(PERCENTILES) - 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - (math.log10(v) - lo) / (hi - lo))

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="sans-serif" font-size="12">'
    ]
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>')
    for i, p in enumerate(PERCENTILES):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 15}" text-anchor="middle">p{float(p):g}</text>')
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= k <= hi:
            parts.append(f'<text x="{left - 8}" y="{y(10**k):.1f}" text-anchor="end">{10**k:g} ms</text>')
            parts.append(
                f'<line x1="{left}" y1="{y(10**k):.1f}" x2="{left + plot_w}" y2="{y(10**k):.1f}" stroke="#eee"/>'
            )
    legend = []
    for n, (run, vs) in enumerate(series):
        colour = colours[n % len(colours)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs) if v)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        label = f"{run.image} {run.result.get('scenario', '')} {run.result.get('validity', '')} ({run.path})"
        legend.append(f'<li style="color:{colour}">{html.escape(label)}</li>')
    parts.append("</svg>")
    return (
        "<!doctype html><meta charset=utf-8><title>mlbox: latency percentiles</title>"
        "<h1 style='font-family:sans-serif'>Latency percentiles per run (ms, log scale)</h1>"
        + "".join(parts)
        + "<ul style='font-family:sans-serif'>"
        + "".join(legend)
        + "</ul>\n"
    )
