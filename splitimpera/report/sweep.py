"""Sweep results as text (``splitimpera sweep``) and as a self-contained HTML report
(``splitimpera report`` on a sweep folder).

A sweep folder is what :func:`splitimpera.sweep.sweep` writes: ``points.parquet`` (one row per
point × design point), ``summary.parquet`` (one row per point), ``sweep.json`` (spec, axes,
counts) and ``base.yaml``. The HTML report shows the recommended split as a heatmap over two
axes (the others fixed at chosen values or marginalised: the most frequent recommendation),
where the cut moves along each axis, the Pareto front across the whole sweep, and the points
where nothing meets the QoS with what would have to change.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..errors import UserError, first_line
from ..qos import pareto_front
from .html import CSS, _Figures, _img, _png

log = logging.getLogger(__name__)

SWEEP_META = "sweep.json"  # marks a sweep folder
NO_POINT = "none feasible"


@dataclass(frozen=True)
class SweepDir:
    """A sweep folder, read: the table, the summary (one row per point), the meta (sweep.json)."""

    path: Path
    table: pd.DataFrame
    summary: pd.DataFrame
    meta: dict

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def axes(self) -> list[str]:
        return list(self.meta.get("axes", []))


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_META).is_file()


def load_sweep_dir(path: str | Path) -> SweepDir:
    """Read a sweep folder; a missing or unreadable file is a one-line UserError."""
    path = Path(path)
    try:
        meta = json.loads((path / SWEEP_META).read_text())
        table = pd.read_parquet(path / "points.parquet")
        summary = pd.read_parquet(path / "summary.parquet")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"unreadable sweep folder: {first_line(e)}", source=str(path)) from None
    return SweepDir(path, table, summary, meta)


def _choice(row) -> str:
    """A point's recommended design point as a label (``split · bottleneck``)."""
    if row["status"] != "ok":
        return row["status"]
    if pd.isna(row["recommended_split"]):
        return NO_POINT
    return f"{row['recommended_split']} · {row['recommended_bottleneck']}"


def _values_text(row, axes: list[str]) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes)


def render_sweep(res) -> str:
    """The terminal summary of a :class:`~splitimpera.sweep.SweepResult`."""
    s, m = res.summary, res.meta
    counts = {k: int(m.get(f"points_{k}", 0)) for k in ("ok", "invalid", "error")}
    ran, secs = m.get("run_points", 0), m.get("seconds", 0.0)
    rate = f", {ran / secs:.1f} points/s" if secs > 0 and ran else ""
    lines = [f"sweep {res.name}: {m.get('points', len(s))} points over {' × '.join(res.axes) or 'no axis'} "
             f"({m.get('engine', '?')} engine): {counts['ok']} ok, {counts['invalid']} invalid, {counts['error']} error"
             f"; {m.get('resumed', 0)} already done, {ran} run in {secs:.1f} s{rate}, "
             f"{m.get('prepared_groups', 0)} prepared group(s)"]
    ok = s[s["status"] == "ok"]
    if len(ok):
        labels = ok.apply(_choice, axis=1).value_counts()
        lines.append("\nRecommended design point (points):")
        width = max(len(x) for x in labels.index)
        for label, n in labels.head(12).items():
            lines.append(f"  {label:<{width}}  {n}")
        if len(labels) > 12:
            lines.append(f"  … {len(labels) - 12} more")
    bad = ok[ok["recommended_split"].isna()]
    if len(bad):
        lines.append(f"\nNo design point meets the QoS at {len(bad)} point(s); e.g.")
        for _, r in bad.head(3).iterrows():
            lines.append(f"  point {r['point']} ({_values_text(r, res.axes)}): closest {r['closest']}; would pass "
                         f"with {r['to_change']}")
    failed = s[s["status"] != "ok"]
    if len(failed):
        lines.append(f"\n{len(failed)} point(s) did not run:")
        for _, r in failed.head(5).iterrows():
            lines.append(f"  point {r['point']} ({_values_text(r, res.axes)}): {r['status']}: {r['error']}")
        if len(failed) > 5:
            lines.append(f"  … {len(failed) - 5} more in summary.csv")
    if res.path is not None:
        lines.append(f"\nwrote {res.path}/ (points.parquet, summary.parquet, summary.csv, sweep.json, sweep.yaml, base.yaml)")
    return "\n".join(lines)
