"""`mlbox results`: a table across result.json files and a latency-percentile plot.

The plot is a self-contained HTML page with an inline SVG: no plotting library, and it
opens in any browser, also on a machine with no network.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbox.errors import MlboxError
from mlbox.run import RUN_RECORD

PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


@dataclass(frozen=True)
class Run:
    path: Path  # the directory holding result.json
    result: dict[str, Any]
    record: dict[str, Any]  # mlbox-run.json, when `mlbox run` made the run

    @property
    def image(self) -> str:
        return str(self.record.get("image") or self.result.get("model", {}).get("path", "?"))

    @property
    def digest(self) -> str:
        digests = self.record.get("repo_digests") or []
        if digests:
            return str(digests[0]).rpartition("@")[2]
        return str(self.record.get("image_id") or "")

    def percentile_ms(self, p: str) -> float | None:
        percentiles = self.result.get("latency_ns", {}).get("percentiles", {})
        value = percentiles.get(f"{p}_percentile")
        return None if value is None else float(value) / 1e6


def collect(dirs: list[Path]) -> list[Run]:
    runs = []
    for root in dirs:
        if not root.exists():
            msg = f"{root} does not exist"
            raise MlboxError(msg, hint="pass directories that hold result.json files (default: ./results)")
        for path in sorted(root.rglob("result.json")):
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                msg = f"{path} is not a readable result.json: {err}"
                raise MlboxError(msg) from None
            record_path = path.parent / RUN_RECORD
            record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
            runs.append(Run(path.parent, result, record))
    return runs


def table_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        metric = run.result.get("metric", {})
        value = metric.get("value")
        p99 = run.percentile_ms("99.00")
        rows.append(
            [
                str(run.path),
                run.image,
                run.digest[:19],
                str(run.result.get("scenario", "?")),
                "-" if value is None else f"{value:g} {metric.get('unit', '')}".strip(),
                str(run.result.get("validity", "?")),
                "-" if p99 is None else f"{p99:.3f}",
            ]
        )
    return rows


def plot_html(runs: list[Run]) -> str:
    """Latency percentiles (ms, log scale) per run, one polyline each."""
    import math

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
