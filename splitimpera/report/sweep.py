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
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..errors import UserError
from ..plain import ms
from ..qos import pareto_front
from ..results.sweep import SweepDir, load_sweep_dir
from .html import CSS, img
from .plots import new_axes, png_bytes

log = logging.getLogger(__name__)

NO_POINT = "none feasible"


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
             f"{m.get('prepared_groups', 0)} prepared group(s)"
             + ("; SimPy simulates each point on its own (not batched)" if m.get("evaluation") == "per point" else "")]
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


# --------------------------------------------------------------------------------------------
# HTML report


def _axis_order(sd: SweepDir, axis: str) -> list:
    """An axis's values in display order: numbers ascending, anything else as the spec lists them."""
    col = sd.summary[axis]
    if isinstance(col.dtype, pd.CategoricalDtype):  # binned: the bins in order
        return [c for c in col.cat.categories if (col == c).any()]
    vals = list(dict.fromkeys(col.tolist()))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
        return sorted(vals)
    return vals


MAX_CELLS = 10  # a numeric axis with more values (random samples) is drawn in this many bins


def binned(sd: SweepDir, axes: list[str]) -> SweepDir:
    """``sd`` with each numeric axis of ``axes`` that has more than :data:`MAX_CELLS` values
    (a random one) replaced by its quantile bin, labelled ``low–high``, in the summary."""
    s = sd.summary.copy()
    for a in axes:
        v = s[a]
        if v.nunique() > MAX_CELLS and pd.api.types.is_numeric_dtype(v):
            bins = pd.qcut(v, MAX_CELLS // 2, duplicates="drop")
            labels = {c: f"{c.left:.3g}–{c.right:.3g}" for c in bins.cat.categories}
            s[a] = pd.Categorical(bins.map(labels), categories=list(labels.values()), ordered=True)
    return SweepDir(sd.path, sd.table, s, sd.meta)


def parse_fixed(items: list[str] | None, sd: SweepDir) -> dict[str, Any]:
    """``["axis=value", …]`` (``--fix``) → {axis: value as the summary holds it}; a UserError
    names an unknown axis or value."""
    out: dict[str, Any] = {}
    for item in items or []:
        axis, sep, text = item.partition("=")
        if not sep or axis not in sd.axes:
            raise UserError(f"expected AXIS=VALUE with an axis of the sweep ({', '.join(sd.axes)}), got {item!r}",
                            source="report", field="--fix")
        match = [v for v in _axis_order(sd, axis) if str(v) == text or _same_number(v, text)]
        if not match:
            raise UserError(f"{axis} has no value {text!r} (values: {', '.join(map(str, _axis_order(sd, axis)))})",
                            source="report", field="--fix")
        out[axis] = match[0]
    return out


def _same_number(v, text: str) -> bool:
    try:
        return isinstance(v, (int, float, np.integer, np.floating)) and float(text) == float(v)
    except ValueError:
        return False


def heatmap_axes(sd: SweepDir, x: str | None, y: str | None) -> tuple[str, str | None]:
    """The heatmap's axes: as given (checked), else the first two axes with more than one value."""
    varied = [a for a in sd.axes if sd.summary[a].nunique() > 1]
    for given, opt in ((x, "--x"), (y, "--y")):
        if given is not None and given not in sd.axes:
            raise UserError(f"not an axis of the sweep ({', '.join(sd.axes)})", source="report", field=opt)
    if x is None:
        x = next((a for a in varied if a != y), None) or (sd.axes[0] if sd.axes else None)
    if x is None:
        raise UserError("the sweep has no axis to draw", source=str(sd.path))
    if y is None:
        y = next((a for a in varied if a != x), None)
    return x, y


def choice_grid(sd: SweepDir, x: str, y: str | None, fixed: dict[str, Any]) -> pd.DataFrame:
    """Per cell (y value, x value): ``split`` (the split recommended most often among the
    cell's points, the other axes fixed at ``fixed`` or marginalised; ``none feasible`` or the
    status where the points did not give one), ``bottleneck`` (its bottleneck when the same at
    all those points, else how many), ``share`` (of the cell's points where that split is
    recommended), ``points``, and ``device_share`` (the fraction of the model's FLOPs on the
    device at that split; NaN without a split)."""
    s = sd.summary
    for axis, v in fixed.items():
        s = s[s[axis] == v]
    s = s.assign(label=np.where(s["status"] != "ok", s["status"], s["recommended_split"].fillna(NO_POINT)))
    t = sd.table
    flops = t.drop_duplicates("split").set_index("split")
    share = (flops["head_flops"] / (flops["head_flops"] + flops["tail_flops"]).replace(0, np.nan)).to_dict()
    rows = []
    for yv in (_axis_order(sd, y) if y else [None]):
        for xv in _axis_order(sd, x):
            cell = s[(s[x] == xv) & ((s[y] == yv) if y else True)]
            if cell.empty:
                continue
            counts = cell["label"].value_counts()
            split = counts.index[0]
            bns = cell.loc[cell["label"] == split, "recommended_bottleneck"].dropna().unique()
            rows.append({"y": yv, "x": xv, "split": split,
                         "bottleneck": bns[0] if len(bns) == 1 else f"{len(bns)} bottlenecks" if len(bns) else "",
                         "share": counts.iloc[0] / len(cell), "points": len(cell),
                         "device_share": share.get(split, np.nan)})
    return pd.DataFrame(rows)


def plot_heatmap(sd: SweepDir, grid: pd.DataFrame, x: str, y: str | None) -> bytes:
    """The recommended design point per cell; colour: share of the model's FLOPs on the device."""
    from matplotlib import colormaps

    xs, ys = _axis_order(sd, x), (_axis_order(sd, y) if y else [None])
    one_bn = sd.table["bottleneck"].nunique() <= 1  # then the bottleneck goes without saying
    fig, ax = new_axes(figsize=(max(5.0, 1.45 * len(xs) + 2), max(2.4, 0.75 * len(ys) + 1.6)))
    val = np.full((len(ys), len(xs)), np.nan)
    for _, r in grid.iterrows():
        val[ys.index(r["y"]), xs.index(r["x"])] = r["device_share"]
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(val), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for _, r in grid.iterrows():
        i, j = ys.index(r["y"]), xs.index(r["x"])
        text = r["split"] + ("" if one_bn or not r["bottleneck"] else f"\n{r['bottleneck']}") + \
            (f"\n({r['share']:.0%})" if r["share"] < 1 else "")
        dark = not np.isnan(val[i, j]) and val[i, j] < 0.6
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], fontsize=8)
    ax.set_yticks(range(len(ys)), [str(v) for v in ys] if y else [""], fontsize=8)
    ax.set_xlabel(x)
    if y:
        ax.set_ylabel(y)
    ax.set_title("Recommended split (colour: share of the model's FLOPs on the device)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    return png_bytes(fig)


def cut_moves(sd: SweepDir) -> pd.DataFrame:
    """Where the recommended split changes between neighbouring values of one axis, the other
    axes held equal (a change of bottleneck alone is not a move of the cut): one row per (axis, from → to value, from → to design point) with the
    number of such neighbour pairs. Sorted by axis order, then count."""
    s = sd.summary[sd.summary["status"] == "ok"]
    s = s.assign(label=s.apply(_choice, axis=1), cut=s["recommended_split"].fillna(NO_POINT))
    rows = []
    for axis in sd.axes:
        order = _axis_order(sd, axis)
        if len(order) < 2:
            continue
        others = [a for a in sd.axes if a != axis]
        pos = {v: i for i, v in enumerate(order)}
        groups = s.groupby(others, dropna=False, sort=False) if others else [((), s)]
        for _, g in groups:
            g = g.assign(_pos=g[axis].map(pos)).sort_values("_pos")
            for (_, a), (_, b) in zip(g.iloc[:-1].iterrows(), g.iloc[1:].iterrows()):
                if a["cut"] != b["cut"] and b["_pos"] == a["_pos"] + 1:
                    rows.append({"axis": axis, "from": a[axis], "to": b[axis], "before": a["label"],
                                 "after": b["label"]})
    if not rows:
        return pd.DataFrame(columns=["axis", "from", "to", "before", "after", "pairs"])
    df = pd.DataFrame(rows).astype({"from": str, "to": str})
    out = df.groupby(["axis", "from", "to", "before", "after"], sort=False).size().rename("pairs").reset_index()
    rank = {a: i for i, a in enumerate(sd.axes)}
    return out.sort_values(["axis", "pairs"], key=lambda c: c.map(rank) if c.name == "axis" else -c,
                           kind="stable").reset_index(drop=True)


def sweep_front(sd: SweepDir) -> pd.DataFrame:
    """The design points (of every point) on the Pareto front of latency, device energy and
    accuracy across the whole sweep, among those that meet their point's QoS (all of them when
    none does), fastest first; identical metric rows counted once."""
    t = sd.table
    if t.empty:
        return t
    feasible = t[t["feasible"].astype(bool)]
    t = feasible if len(feasible) else t
    front = t[pareto_front(t).to_numpy()]
    return front.drop_duplicates(["latency_s", "energy_j", "accuracy"]).sort_values("latency_s")


def plot_front(sd: SweepDir, front: pd.DataFrame) -> bytes:
    t = sd.table
    fig, ax = new_axes(figsize=(6.6, 4.0))
    feas = t["feasible"].astype(bool)
    ax.scatter(t.loc[~feas, "latency_s"] * 1e3, t.loc[~feas, "energy_j"] * 1e3, s=6, c="#cccccc",
               label="design points (QoS not met)")
    ax.scatter(t.loc[feas, "latency_s"] * 1e3, t.loc[feas, "energy_j"] * 1e3, s=6, c="#9ecae1",
               label="design points (QoS met)")
    f = front.sort_values("latency_s")
    ax.plot(f["latency_s"] * 1e3, f["energy_j"] * 1e3, "o", ms=5, c="tab:red",
            label="Pareto front (latency, energy, accuracy; QoS met)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("device energy (mJ)")
    ax.set_title(f"All {len(t):,} design points of {sd.summary['status'].eq('ok').sum()} points", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return png_bytes(fig)


def _html_table(df: pd.DataFrame, left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = "".join(f'<td class="{"l" if c in left else ""}">{html.escape("" if pd.isna(v) else str(v))}</td>'
                        for c, v in r.items())
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="wrap"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _values_summary(sd: SweepDir, axis: str) -> str:
    vals = _axis_order(sd, axis)
    if len(vals) > MAX_CELLS and pd.api.types.is_numeric_dtype(sd.summary[axis]):
        return f"{min(vals):.4g} to {max(vals):.4g} ({len(vals)} values)"
    return ", ".join(map(str, vals[:MAX_CELLS])) + (f" … ({len(vals)} values)" if len(vals) > MAX_CELLS else
                                                     f" ({len(vals)} values)")


def render_sweep_report(path: str | Path, x: str | None = None, y: str | None = None,
                        fix: list[str] | None = None, title: str | None = None) -> str:
    """The HTML text of a sweep folder's report (see the module doc). ``x``/``y``: the
    heatmap's axes (default: the first two that vary); ``fix``: ``AXIS=VALUE`` for other
    axes (the rest are marginalised)."""
    sd = load_sweep_dir(path)
    x, y = heatmap_axes(sd, x, y)
    fixed = parse_fixed(fix, sd)
    if x in fixed or (y and y in fixed):
        raise UserError("an axis of the heatmap cannot also be fixed", source="report", field="--fix")
    m, s = sd.meta, sd.summary
    title = title or f"splitimpera sweep: {sd.name}"
    axes_desc = "".join(f"<li><code>{html.escape(a)}</code>: {html.escape(_values_summary(sd, a))}</li>"
                        for a in sd.axes)
    counts = {k: int((s["status"] == k).sum()) for k in ("ok", "invalid", "error")}
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f'<p class="muted">{html.escape(str(m.get("spec", {}).get("description", "")))}</p>',
             f"<p>{len(s)} points ({counts['ok']} ran, {counts['invalid']} invalid, {counts['error']} failed), "
             f"{len(sd.table):,} design points; base scenario <code>{html.escape(str(m.get('base_source', '')))}"
             f"</code>, {html.escape(str(m.get('engine', '')))} engine. Axes:</p><ul>{axes_desc}</ul>"]
    others = [a for a in sd.axes if a not in (x, y)]
    how = ", ".join(f"{a} = {fixed[a]}" if a in fixed else f"{a} marginalised" for a in others)
    parts.append(f"<h2>Recommended split over {html.escape(x)}{' × ' + html.escape(y) if y else ''}</h2>"
                 f'<p class="muted">{html.escape(how or "no other axis")}. A cell over several points shows the split '
                 "recommended most often among them, with its share (and its bottleneck when it is the same at all "
                 "of them); an axis with many values (random samples) is drawn in quantile bins. Grey: no design "
                 "point meets the QoS.</p>")
    hm = binned(sd, [a for a in (x, y) if a])
    grid = choice_grid(hm, x, y, fixed)
    if not grid.empty:
        parts.append(img(plot_heatmap(hm, grid, x, y), "recommended split heatmap"))
    moves = cut_moves(sd)
    parts.append("<h2>Where the cut moves</h2>")
    if moves.empty:
        parts.append("<p>The recommended split is the same at every point.</p>")
    else:
        parts.append(f'<p class="muted">Neighbouring values of one axis, the other axes equal, where the '
                     f"recommended split changes ({len(moves)} kinds of change; the "
                     f"<i>pairs</i> column counts the settings of the other axes where it happens).</p>")
        parts.append(_html_table(moves.head(40), left=("axis", "before", "after")))
    front = sweep_front(sd)
    parts.append("<h2>Pareto front across the sweep</h2>")
    if not front.empty:
        parts.append(img(plot_front(sd, front), "Pareto front across the sweep"))
        show = pd.DataFrame({**{a: front[a] for a in sd.axes}, "split": front["split"],
                             "bottleneck": front["bottleneck"], "latency ms": front["latency_s"].map(lambda v: ms(v, 4, missing="")),
                             "energy mJ": front["energy_j"].map(lambda v: ms(v, 4, missing="")),
                             "accuracy %": (front["accuracy"] * 100).map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
                             "meets its QoS": front["feasible"].map({True: "yes", False: "no"})})
        parts.append(f'<p class="muted">{len(front)} design points no other design point of the sweep beats on '
                     "latency, device energy and accuracy at once (fastest first).</p>")
        parts.append(_html_table(show.head(30), left=tuple(sd.axes) + ("split", "bottleneck")))
    none = s[(s["status"] == "ok") & s["recommended_split"].isna()]
    parts.append("<h2>Points where nothing meets the QoS</h2>")
    if none.empty:
        parts.append("<p>None: every point that ran has a feasible design point.</p>")
    else:
        show = none[[*sd.axes, "closest", "to_change"]].rename(
            columns={"closest": "closest design point", "to_change": "what would have to change"})
        parts.append(f"<p>{len(none)} point(s); for each, the design point nearest to feasibility and first-order "
                     "changes that would make it feasible (others held fixed).</p>")
        parts.append(_html_table(show.head(40), left=("closest design point", "what would have to change")))
    bad = s[s["status"] != "ok"]
    if len(bad):
        parts.append("<h2>Points that did not run</h2>")
        parts.append(_html_table(bad[[*sd.axes, "status", "error"]].head(40), left=("error",)))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_sweep_report(path: str | Path, out_file: str | Path, **kw) -> Path:
    """Render :func:`render_sweep_report` and write it atomically."""
    text = render_sweep_report(path, **kw)
    out = Path(out_file)
    try:
        atomic_write(out, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report: {e.strerror}", source=str(out)) from None
    return out
