"""Self-contained HTML reports from result folders (``splitimpera report DIR… -o FILE``).

A result folder is what ``simulate -o`` / ``analyze -o`` write: ``splits.csv``,
``result.json``, ``scenario.yaml`` and, when present, ``cui.csv``, ``nominations.json``,
``accuracy.csv`` and ``accuracy_summary.json`` (written by ``analyze``).
The report opens offline: plots are PNGs embedded as data URIs, no script, no external
asset. One folder gives a single-scenario report; several add a comparison of the
recommended split across scenarios.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..atomic import atomic_write
from ..errors import UserError, first_line
from ..plain import human, num
from ..qos import human_bytes
from .fidelity import fidelity_section, is_fidelity_dir, load_fidelity_dir, plot_fidelity
from .view import STAGE_COLOURS, View, accuracy_footnote, accuracy_text, compute_error_sentence

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ResultDir:
    path: Path
    table: pd.DataFrame
    summary: dict
    scenario: dict
    scenario_text: str
    cui: pd.DataFrame | None = None
    nominations: dict | None = None
    accuracy: pd.DataFrame | None = None  # analyze's accuracy.csv (split × bottleneck)
    accuracy_summary: dict | None = None
    view: View | None = None  # what every front end shows of this result (set by load_result_dir)

    @property
    def name(self) -> str:
        return str(self.scenario.get("name", self.path.name))

    @property
    def recommended(self):
        return self.view.recommended


def load_result_dir(path: str | Path) -> ResultDir:
    """Read a result folder; a missing or unreadable file is a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("not a result folder (run `splitimpera simulate SCENARIO -o DIR` first)", source=str(path))
    need = ["splits.csv", "result.json", "scenario.yaml"]
    missing = [n for n in need if not (path / n).is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}: not a simulate result folder", source=str(path))
    try:
        summary = json.loads((path / "result.json").read_text())["summary"]
        table = read_points(path / "splits.csv", _old_bottleneck(summary))
        text = (path / "scenario.yaml").read_text()
        scenario = yaml.safe_load(text)
        cui = pd.read_csv(path / "cui.csv", index_col="split") if (path / "cui.csv").is_file() else None
        noms = json.loads((path / "nominations.json").read_text()) if (path / "nominations.json").is_file() else None
        inputs = (noms or {}).get("inputs")
        if cui is not None and inputs != {"model": scenario.get("model"), "data": scenario.get("data")}:
            # Left by an `analyze` of another model or data set in the same folder: not this run's.
            log.warning("%s: ignoring cui.csv/nominations.json from another model or data set", path)
            cui = noms = None
        acc = acc_doc = None
        if (path / "accuracy.csv").is_file() and (path / "accuracy_summary.json").is_file():
            acc_doc = json.loads((path / "accuracy_summary.json").read_text())
            if acc_doc.get("inputs") == {"model": scenario.get("model"), "data": scenario.get("data")}:
                acc = pd.read_csv(path / "accuracy.csv", index_col="split")
            else:
                log.warning("%s: ignoring accuracy.csv from another model or data set", path)
                acc_doc = None
    except (ValueError, KeyError, OSError, yaml.YAMLError) as e:
        raise UserError(f"unreadable result folder: {first_line(e)}",
                        source=str(path)) from None
    try:
        view = View.of_folder(table, scenario, summary)
    except (ValueError, KeyError) as e:
        raise UserError(f"unreadable result folder: {first_line(e)}", source=str(path)) from None
    return ResultDir(path, view.table, summary, scenario, text, cui, noms, acc, acc_doc, view)


def _old_bottleneck(summary: dict) -> str:
    """The one bottleneck of a folder written before design points (its summary names it)."""
    name = (summary.get("bottleneck") or {}).get("name")
    return name if isinstance(name, str) else "none"


def read_points(path: Path, bottleneck: str = "none") -> pd.DataFrame:
    """A result folder's ``splits.csv`` indexed by ``(split, bottleneck)``; a folder written
    before design points (no ``bottleneck`` column) reads as the one ``bottleneck`` it ran."""
    head = pd.read_csv(path, nrows=0).columns
    if "exit" in head:  # early exit: the threshold τ is the third level of the key
        return pd.read_csv(path, index_col=["split", "bottleneck", "exit"],
                           dtype={"split": str, "bottleneck": str, "exit": str, "config": str})
    if "bottleneck" in head:
        return pd.read_csv(path, index_col=["split", "bottleneck"], dtype={"split": str, "bottleneck": str})
    t = pd.read_csv(path, index_col="split", dtype={"split": str})
    t.index = pd.MultiIndex.from_arrays([t.index, [bottleneck] * len(t)], names=["split", "bottleneck"])
    return t


# --------------------------------------------------------------------------------------------
# Plots (matplotlib → PNG bytes)


class _Figures:
    """``subplots`` on matplotlib's object API: no pyplot, no global backend switch (which
    would break a notebook's inline backend), nothing left open."""

    @staticmethod
    def subplots(figsize):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots()


def _fig():
    return _Figures


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _shown_points(rd: ResultDir) -> pd.DataFrame:
    """The points a per-split figure draws: every split (one bottleneck), or each
    bottleneck's best split (several), in topological order."""
    v = rd.view
    if not v.multi:
        return v.table.sort_values("index")
    best = v.best_per_bottleneck()
    return v.table.loc[[(r["split"], b, *([r["exit"]] if "exit" in r.index else [])) for b, r in best.iterrows()]]


def plot_breakdown(rd: ResultDir) -> bytes:
    """Stacked latency breakdown per split (ms), topological order; QoS limit dashed. With
    several bottlenecks: the best split of each."""
    plt = _fig()
    v = rd.view
    t = _shown_points(rd)
    stages = v.stages(bounded=True).loc[t.index]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(t) + 2), 3.8))
    bottom = np.zeros(len(t))
    x = np.arange(len(t))
    for label in stages.columns:
        val = stages[label].to_numpy() * 1e3
        if val.any():
            ax.bar(x, val, bottom=bottom, label=label, width=0.8, color=STAGE_COLOURS[label])
            bottom += val
    limit = v.qos.max_latency_ms
    if limit:
        ax.axhline(limit, color="k", ls="--", lw=1, label=f"limit {limit:g} ms ({v.statistic})")
    if v.latency_column != "latency_s":  # the bars are means; the limit is on this statistic
        ax.scatter(x, t["latency_qos_s"].to_numpy(dtype=float) * 1e3, marker="_", s=160, color="k", zorder=4,
                   label=f"{v.statistic} latency")
    rec = v.recommended
    unbounded = v.unbounded.loc[t.index].to_numpy()
    for i in np.flatnonzero(unbounded):  # overloaded: latency unbounded, no bar to draw
        ax.text(x[i], 0, "∞", ha="center", va="bottom", fontsize=9, color="tab:red")
    ax.set_xticks(x, [("★ " if p == rec else "") + v.label(p) + (" (overloaded)" if u else "")
                      for p, u in zip(t.index, unbounded)], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("mean latency (ms)" if v.simulated else "latency (ms)")
    ax.set_title("Latency breakdown per split" if not v.multi else "Latency breakdown: best split per bottleneck",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_tradeoff(rd: ResultDir, metric: str = "accuracy") -> bytes:
    """``metric`` ("accuracy" or "energy") vs latency, with the Pareto front and the QoS region."""
    plt = _fig()
    t = rd.table
    qos = rd.scenario.get("qos") or {}
    has_acc = metric == "accuracy"
    ycol, ylabel = ("accuracy", "accuracy") if has_acc else ("energy_j", "device energy (mJ)")
    # The x axis is the latency the limit applies to, so the QoS region is read correctly.
    lat_col = "latency_qos_s" if "latency_qos_s" in t.columns else "latency_s"
    t = t[np.isfinite(t[lat_col].astype(float))]  # an overloaded point's latency is unbounded: not drawn
    y = t[ycol] * (100 if has_acc else 1e3)
    xms = t[lat_col] * 1e3
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lim = qos.get("max_latency_ms")
    ymin = (qos.get("min_accuracy") or 0) * 100 if has_acc else None
    ymax = qos.get("max_energy_mj") if not has_acc else None
    x_hi = max(float(xms.max()) * 1.1 if len(xms) else 1.0, (lim or 0) * 1.1)
    if lim:
        lo_y, hi_y = float(y.min()), float(y.max())
        span = max(hi_y - lo_y, 1e-6)
        ax.axvspan(0, lim, color="tab:green", alpha=0.08, label="QoS region")
        if ymin:
            ax.axhline(ymin, color="tab:green", ls=":", lw=1)
        if ymax:
            ax.axhline(ymax, color="tab:green", ls=":", lw=1)
        ax.set_ylim(lo_y - 0.1 * span, hi_y + 0.15 * span)
    feas = t.get("feasible", pd.Series(True, index=t.index)).astype(bool)
    ax.scatter(xms[~feas], y[~feas], marker="x", color="tab:gray", label="infeasible")
    ax.scatter(xms[feas], y[feas], color="tab:blue", label="feasible")
    if "pareto" in t.columns:
        front = t[t["pareto"].astype(bool)].sort_values(lat_col)
        ax.plot(front[lat_col] * 1e3, front[ycol] * (100 if has_acc else 1e3), "-", color="tab:red", lw=1.2,
                label="Pareto front")
    rec = rd.view.recommended
    if rec in t.index:
        ax.scatter([xms[rec]], [y[rec]], marker="*", s=220, color="tab:red", zorder=5,
                   label=f"recommended: {rd.view.label(rec)}")
    ax.set_xlim(0, x_hi)
    stat = rd.view.statistic
    ax.set_xlabel("latency (ms)" if stat == "mean" or lat_col == "latency_s" else f"{stat} latency (ms)")
    ax.set_ylabel(ylabel + (" (%)" if has_acc else ""))
    flat = has_acc and t["accuracy"].nunique(dropna=True) == 1
    note = " (the same at every split: the tensor is sent unchanged)" if flat else ""
    if flat:
        a = float(t["accuracy"].dropna().iloc[0]) * 100
        ax.set_ylim(a - 1, a + 1)
    ax.set_title(f"{ylabel[0].upper() + ylabel[1:]} vs latency{note}", fontsize=10)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_bytes(rd: ResultDir) -> bytes:
    """Bytes on the wire per split (log scale); one line per bottleneck when there are several."""
    plt = _fig()
    v = rd.view
    table = v.table
    if "exit" in table.index.names:  # what a forwarded request sends: the points without an exit head
        table = table.xs("none", level="exit")
    splits = list(dict.fromkeys(table.sort_values("index").index.get_level_values("split")))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(splits) + 2), 3.2))
    x = np.arange(len(splits))
    if not v.multi:
        ax.bar(x, table.xs(v.bottlenecks[0], level="bottleneck").loc[splits, "bytes_sent"].clip(lower=1),
               color="tab:purple")
    else:
        for b in v.bottlenecks:
            ax.plot(x, table.xs(b, level="bottleneck").reindex(splits)["bytes_sent"].clip(lower=1), marker=".",
                    lw=1, label=b)
        ax.legend(fontsize=7, ncol=3)
    ax.set_yscale("log")
    ax.set_xticks(x, splits, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("bytes sent per inference")
    ax.set_title("Bytes on the wire per split", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def has_exits(rd: ResultDir) -> bool:
    t = rd.table
    return "exit" in t.index.names and "config" in t.columns and (t["config"] == "EE").any()


def plot_exits(rd: ResultDir) -> bytes:
    """Early exit: accuracy vs mean latency (left) and vs p95 latency (right, simulated runs)
    per exit split (and bottleneck), one marker per threshold τ, the split computing point of
    the same split as a square; the recommended point starred."""
    from matplotlib.figure import Figure

    from .view import exit_table

    v = rd.view
    et = exit_table(v)
    panels = [("latency_s", "mean latency (ms)")]
    if et["latency_p95_s"].notna().any():
        panels.append(("latency_p95_s", "p95 latency (ms)"))
    fig = Figure(figsize=(5.2 * len(panels), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    rec = v.recommended
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, (col, xlabel) in zip(np.ravel(axes), panels):
        for i, ((split, bn), g) in enumerate(et.groupby(["split", "bottleneck"], sort=False)):
            c = colors[i % len(colors)]
            sc, ee = g[g["config"] != "EE"], g[g["config"] == "EE"].sort_values("tau")
            name = split if not v.multi else f"{split} · {bn}"
            x, y = ee[col].to_numpy(dtype=float) * 1e3, ee["accuracy"].to_numpy(dtype=float) * 100
            ax.plot(x, y, "o-", color=c, lw=1, ms=4, label=f"{name}: EE, τ as marked")
            for xi, yi, tau in zip(x, y, ee["tau"]):
                ax.annotate(f"{tau:g}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=6, color=c)
            ax.scatter(sc[col].to_numpy(dtype=float) * 1e3, sc["accuracy"].to_numpy(dtype=float) * 100,
                       marker="s", s=40, color=c, edgecolor="k", zorder=4, label=f"{name}: SC (no exit)")
            if rec is not None and rec[0] == split and rec[1] == bn and len(rec) > 2 and rec[2] != "none":
                r = v.table.loc[rec]
                ax.scatter([float(r[col]) * 1e3], [float(r["accuracy"]) * 100], marker="*", s=260, color="tab:red",
                           zorder=5, label=f"recommended: {v.label(rec)}")
        q = rd.scenario.get("qos") or {}
        if q.get("min_accuracy"):
            ax.axhline(q["min_accuracy"] * 100, color="tab:green", ls=":", lw=1, label="accuracy limit")
        if q.get("max_latency_ms") and ((col == "latency_s") == (v.statistic == "mean") or col == v.latency_column):
            ax.axvline(q["max_latency_ms"], color="k", ls="--", lw=1, label=f"latency limit ({v.statistic})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    np.ravel(axes)[0].legend(fontsize=6)
    fig.suptitle("Early exit: accuracy vs latency per threshold τ", fontsize=10)
    return _png(fig)


def plot_cui(rd: ResultDir) -> bytes:
    from .plots import draw_cui

    fig, ax = _fig().subplots(figsize=(max(6.0, 0.28 * len(rd.cui) + 2), 3.4))
    draw_cui(ax, rd.cui, (rd.nominations or {}).get("nominated", []))
    ax.set_title("I-SPLIT CUI curve with nominated splits", fontsize=10)
    return _png(fig)


def plot_accuracy_bytes(rd: ResultDir) -> bytes:
    from .plots import draw_accuracy

    coder = str((rd.scenario.get("bottleneck") or {}).get("coder", "raw"))
    fig, ax = _fig().subplots(figsize=(9.0, 4.4))
    draw_accuracy(ax, rd.accuracy, (rd.accuracy_summary or {}).get("full_model_accuracy"), coder)
    ax.set_title("Measured accuracy vs bytes on the wire: every split under every bottleneck", fontsize=10)
    return _png(fig)


def _accuracy_html(rd: ResultDir) -> str:
    """Predictor validation per bottleneck and the Grad-CAM vs random channel comparison."""
    doc = rd.accuracy_summary or {}
    per = (doc.get("predictor") or {}).get("per_bottleneck") or {}

    def pts(v):
        return "–" if v is None else f"{v * 100:.2f}"

    rows = "".join(
        f"<tr><td class=\"l\">{html.escape(b)}</td><td>{_count(r.get('splits'))}</td>"
        f"<td>{'–' if r.get('spearman') is None else format(r['spearman'], '+.2f')}</td>"
        f"<td>{pts(r.get('loo_mae'))}</td><td>{pts(r.get('baseline_loo_mae'))}</td></tr>"
        for b, r in per.items())
    out = ["<h3>Accuracy under bottlenecks</h3>",
           f'<p class="muted">{doc.get("evaluation_samples", "?")} evaluation samples'
           + (f'; learning bottlenecks fitted on {html.escape(str(doc["calibration"]))}' if doc.get("calibration")
              else "") + ". CUI as a predictor of accuracy: isotonic fit on log10 CUI, leave-one-out mean "
           "absolute error in points, against predicting the mean of the other splits.</p>",
           "<div class=\"wrap\"><table><thead><tr><th class=\"l\">bottleneck</th><th>splits</th><th>Spearman</th>"
           f"<th>LOO MAE</th><th>baseline MAE</th></tr></thead><tbody>{rows}</tbody></table></div>"]
    ch = doc.get("channels_gradcam_vs_random") or {}
    if ch:
        crow = "".join(f"<tr><td class=\"l\">{html.escape(f)}</td><td>{_count(c['splits'])}</td>"
                       f"<td>{_count(c['gradcam_better'])}</td><td>{_count(c['random_better'])}</td><td>{pts(c.get('mean_difference'))}</td></tr>"
                       for f, c in ch.items())
        out.append("<p>Channels kept by Grad-CAM importance vs at random, same channel count (equal bytes):</p>"
                   "<div class=\"wrap\"><table><thead><tr><th class=\"l\">kept</th><th>splits</th>"
                   "<th>Grad-CAM better</th><th>random better</th><th>mean Δ (pts)</th></tr></thead>"
                   f"<tbody>{crow}</tbody></table></div>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.4rem} .muted{color:#666;font-size:.9rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0} th,td{padding:.25rem .55rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap} td.l{white-space:normal}
th{background:#f6f6f6;white-space:normal;vertical-align:bottom} td.l,th.l{text-align:left} tr.rec td{background:#fff4d6;font-weight:600} tr.bad td{color:#888}
.verdict{padding:.7rem 1rem;border-radius:6px;margin:.8rem 0} .ok{background:#e9f7ef;border:1px solid #b7e1c7} .no{background:#fdecea;border:1px solid #f5c2bd}
.wrap{overflow-x:auto} img{max-width:100%;height:auto;display:block;margin:.5rem 0} pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.78rem}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _count(v) -> str:
    """A count as an integer (``15``, never ``15.0``); "" when absent."""
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(int(round(float(v))))


def _fmt_ms(v) -> str:
    return "" if pd.isna(v) else "∞" if v == np.inf else num(v * 1e3)


def _verdict(rd: ResultDir) -> str:
    """The verdict of :meth:`View.verdict`, as HTML."""
    v = rd.view.verdict()
    if v.ok:
        return (f'<div class="verdict ok"><b>{html.escape(v.headline)}</b> '
                f"{html.escape(' '.join(v.details))}</div>")
    items = "".join(
        f"<li><b>{html.escape(label)}</b>: {html.escape(reason)}"
        + (f" — would pass with {html.escape('; or '.join(tips))}" if tips else "") + "</li>"
        for label, reason, tips in v.closest)
    note = "".join(f" {html.escape(d)}" for d in v.details)
    return (f'<div class="verdict no"><b>{html.escape(v.headline)}</b>{note} '
            f"Closest, and what would have to change (first-order estimates):<ul>{items}</ul></div>")


def _best_html(rd: ResultDir) -> str:
    """The best split per bottleneck, beside the joint ranking (several bottlenecks only)."""
    v = rd.view
    if not v.multi:
        return ""
    rows = []
    for b, r in v.best_per_bottleneck().iterrows():
        acc = "" if pd.isna(r["accuracy"]) else accuracy_text(r["accuracy"], r.get("accuracy_source"), unit="",
                                                                  band=r.get("accuracy_band"))
        rows.append(f'<tr class="{"" if r["feasible"] else "bad"}"><td class="l">{html.escape(str(b))}</td>'
                    f'<td class="l">{html.escape(r["split"])}</td><td>{"" if pd.isna(r["rank"]) else int(r["rank"])}</td>'
                    f'<td>{_count(r["feasible_splits"])}</td><td>{human_bytes(r["bytes_sent"])}</td>'
                    f'<td>{_fmt_ms(r["latency_qos_s"])}</td><td>{acc}</td>'
                    f'<td class="l">{html.escape("ok" if r["feasible"] else str(r["reason"]))}</td></tr>')
    stat = v.statistic
    return ("<h3>Best split per bottleneck</h3><div class=\"wrap\"><table><thead><tr><th class=\"l\">bottleneck</th>"
            "<th class=\"l\">best split</th><th>rank</th><th>feasible splits</th><th>sent</th>"
            f"<th>{'latency' if stat == 'mean' else stat} ms</th><th>accuracy %</th><th class=\"l\">verdict</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
            + (f'<p class="muted">{html.escape(note)}</p>' if (note := accuracy_footnote(
                v.best_per_bottleneck()["accuracy_source"])) else ""))


def _table(rd: ResultDir) -> str:
    v = rd.view
    t = v.all_rows()
    rec = v.recommended
    stat = v.statistic
    exits = "exit" in t.index.names
    cols = [("rank", "rank"), ("split", "split"), *([("bottleneck", "bottleneck")] if v.multi else []),
            *([("config", "config")] if "config" in t.columns else []),
            *([("exit", "exit τ"), ("exit_rate", "exits")] if exits else []),
            ("bytes_sent", "sent"), ("device_compute_s", "device ms"),
            ("uplink_s", "uplink ms"), ("server_compute_s", "server ms"), ("downlink_s", "downlink ms"),
            ("latency_s", "mean ms" if v.simulated else "latency ms")]
    if v.latency_column != "latency_s":
        cols.append((v.latency_column, f"{stat} ms"))
    cols += [("energy_j", "energy mJ"), ("pareto", "Pareto"), ("reason", "verdict")]
    ranked = v.latency_column  # the column the ± band of the compute model's error goes with
    src = t["accuracy_source"] if "accuracy_source" in t.columns else pd.Series(dtype=object)
    if ("accuracy" in t.columns and t["accuracy"].notna().any() and src.notna().any()
            and not src.isin(["full model"]).all()):
        # A bottleneck makes accuracy differ per point: show it (* = predicted from the CUI curve).
        cols.insert(-2, ("accuracy", "accuracy %"))
    # No empty columns: a time nothing in this result has (all NaN or absent).
    cols = [(k, h) for k, h in cols if not k.endswith("_s") or (k in t.columns and t[k].notna().any())]
    head = "".join(f'<th class="{"l" if k in ("split", "config", "bottleneck", "reason") else ""}">{h}</th>'
                   for k, h in cols)
    rows = []
    for point, r in t.iterrows():
        cls = "rec" if point == rec else ("" if r.get("feasible", True) else "bad")
        cells = []
        left = {"split": point[0], "bottleneck": point[1], "config": r.get("config", "")}
        for k, _ in cols:
            if k in left:
                cells.append(f'<td class="l">{html.escape(str(left[k]))}</td>')
            elif k in ("exit", "exit_rate"):  # τ and the share that exits, on early-exit points only
                txt = "" if point[2] == "none" else str(point[2]) if k == "exit" else f"{float(r[k]) * 100:.0f} %"
                cells.append(f"<td>{html.escape(txt)}</td>")
            elif k == "rank":  # ≈: within the compute model's error band of the recommended point
                tie = " ≈" if r.get("tie") in (True, "True") else ""
                cells.append(f"<td>{'' if pd.isna(r.get('rank')) else int(r['rank'])}{tie}</td>")
            elif k == "bytes_sent":
                cells.append(f"<td>{human_bytes(r['bytes_sent'])}</td>")
            elif k == "energy_j":
                cells.append(f"<td>{num(r['energy_j'] * 1e3)}</td>")
            elif k == "accuracy":
                acc = r["accuracy"]
                cells.append(f"<td>{'' if pd.isna(acc) else accuracy_text(acc, r.get('accuracy_source'), unit='', band=r.get('accuracy_band'))}</td>")
            elif k == "pareto":
                cells.append(f"<td>{'●' if r.get('pareto') in (True, 'True') else ''}</td>")
            elif k == "reason":
                txt = "ok" if r.get("feasible", True) in (True, "True") else str(r.get("reason", ""))
                cells.append(f'<td class="l">{html.escape(txt)}</td>')
            else:
                band = r.get("latency_err_s", np.nan)
                pm = (f" ± {_fmt_ms(band)}" if k == ranked and pd.notna(band) and np.isfinite(band) and band > 0
                      else "")
                cells.append(f"<td>{_fmt_ms(r.get(k, np.nan))}{pm}</td>")
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    note = accuracy_footnote(t["accuracy_source"]) if any(k == "accuracy" for k, _ in cols) else ""
    s = rd.summary
    err = compute_error_sentence(v, s.get("compute_model") or {}, str(s.get("device")), str(s.get("server")))
    modes = s.get("compute_model") or {}
    if modes.get("device"):
        err = f"compute: {s.get('device')} {modes['device']}; {s.get('server')} {modes['server']}. " + err
    return (f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            + (f'<p class="muted">{html.escape(note)}</p>' if note else "")
            + (f'<p class="muted">{html.escape(err)}</p>' if err else ""))


def _qos_text(qos: dict) -> str:
    """The QoS limits that are set, and the objective, in words."""
    parts = []
    stat = qos.get("latency_statistic", "mean")
    names = {"max_latency_ms": ("latency" if stat == "mean" else f"{stat} latency", "≤", "ms"),
             "max_deadline_miss_ratio": ("deadline misses", "≤", ""), "max_energy_mj": ("energy", "≤", "mJ"),
             "max_tx_bytes": ("bytes sent", "≤", "B"), "max_uplink_utilisation": ("uplink utilisation", "≤", ""),
             "max_frame_loss_ratio": ("frame loss", "≤", ""), "min_accuracy": ("accuracy", "≥", "")}
    for key, (label, op, unit) in names.items():
        if qos.get(key) is not None:
            parts.append(f"{label} {op} {qos[key]:g}{(' ' + unit) if unit else ''}")
    if qos.get("fit_device_memory", True):
        parts.append("head fits device memory")
    obj = qos.get("objective", "latency")
    if obj == "latency" and stat != "mean":
        obj = f"{stat} latency"
    if obj == "weighted":
        w = qos.get("weights") or {}
        obj = "weighted (" + ", ".join(f"{k} {v:g}" for k, v in w.items() if v) + ")"
    return ", ".join(parts) + f"; objective: {obj}"


def _section(rd: ResultDir, level: int = 2) -> str:
    s, sc = rd.summary, rd.scenario
    h = f"h{level}"
    qos_txt = _qos_text(sc.get("qos") or {})
    parts = [
        f"<{h} id=\"{html.escape(rd.name)}\">{html.escape(rd.name)}</{h}>",
        f'<p class="muted">{html.escape(str(s.get("model")))} on {html.escape(str(s.get("device")))} → '
        f'{html.escape(str(s.get("network")))} → {html.escape(str(s.get("server")))}; '
        f'{(sc.get("workload") or {}).get("num_devices", 1)} device(s); QoS: {html.escape(qos_txt)}</p>',
        _verdict(rd),
        _best_html(rd),
        _table(rd),
        _img(plot_breakdown(rd), "latency breakdown"),
        *([_img(plot_tradeoff(rd, "accuracy"), "accuracy vs latency")]
          if "accuracy" in rd.table.columns and rd.table["accuracy"].notna().any() else []),
        *([_img(plot_exits(rd), "early exit: accuracy vs latency per threshold")] if has_exits(rd) else []),
        _img(plot_tradeoff(rd, "energy"), "energy vs latency"),
        _img(plot_bytes(rd), "bytes per split"),
    ]
    if rd.cui is not None:
        parts.append(_img(plot_cui(rd), "CUI curve"))
    if rd.accuracy is not None:
        parts += [_accuracy_html(rd), _img(plot_accuracy_bytes(rd), "accuracy vs bytes")]
    parts.append(f"<details><summary>Scenario (fully resolved)</summary><pre>{html.escape(rd.scenario_text)}</pre>"
                 "</details>")
    return "\n".join(parts)


def comparison(rds: list[ResultDir]) -> pd.DataFrame:
    """One row per scenario: the knobs that usually differ and the recommended split."""
    rows = []
    for rd in rds:
        sc, s = rd.scenario, rd.summary
        net, wl, q = sc.get("network") or {}, sc.get("workload") or {}, sc.get("qos") or {}
        rec = rd.view.recommended
        r = rd.table.loc[rec] if rec is not None else None
        rows.append({
            "scenario": rd.name, "model": s.get("model"), "device": s.get("device"), "network": s.get("network"),
            "uplink_mbps": net.get("uplink_mbps"), "num_devices": wl.get("num_devices", 1),
            "max_latency_ms": q.get("max_latency_ms"),
            "recommended": rd.view.label(rec) if rec is not None else "— none —",
            "device_flops_share": None if r is None else
            float(r["head_flops"]) / max(float(r["head_flops"] + r["tail_flops"]), 1.0),
            "latency_ms": None if r is None else float(r["latency_s"]) * 1e3,
            "margin_ms": None if (r is None or not q.get("max_latency_ms")) else
            q["max_latency_ms"] - rd.view.constrained(r) * 1e3,
            "feasible": f"{int(rd.table['feasible'].sum())}/{len(rd.table)}",
        })
    return pd.DataFrame(rows)


# The comparison table's headers, short enough to fit the page.
_COMPARISON_HEAD = {"uplink_mbps": "uplink Mbit/s", "num_devices": "devices", "max_latency_ms": "limit ms",
                    "device_flops_share": "FLOPs on device", "latency_ms": "latency ms", "margin_ms": "margin ms",
                    "feasible": "feasible points"}


def _comparison_html(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if df[c].notna().any()]  # no empty column
    text = {"scenario", "model", "device", "network", "recommended"}
    head = "".join(f"<th class=\"{'l' if c in text else ''}\">{html.escape(_COMPARISON_HEAD.get(c, c))}</th>"
                   for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                txt = ""
            elif c == "device_flops_share":
                txt = f"{num(v * 100)} %"
            elif c == "num_devices":
                txt = _count(v)
            else:
                txt = num(v, 4) if isinstance(v, (float, int, np.number)) and not isinstance(v, bool) else str(v)
            if c == "scenario":
                txt = f'<a href="#{html.escape(str(v))}">{html.escape(str(v))}</a>'
            else:
                txt = html.escape(txt)
            cells.append(f'<td class="{"l" if c in text else ""}">{txt}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def plot_choice(df: pd.DataFrame) -> bytes:
    """Where the recommended cut sits (device share of the model's FLOPs) vs uplink bandwidth."""
    plt = _fig()
    d = df.dropna(subset=["device_flops_share", "uplink_mbps"])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sizes = 30 + 20 * d["num_devices"].astype(float)
    ax.scatter(d["uplink_mbps"], d["device_flops_share"] * 100, s=sizes, color="tab:blue", alpha=0.7)
    # Stack the labels of points that sit close together (same link, same cut).
    placed: list[tuple[float, float]] = []
    lx = np.log10(d["uplink_mbps"].astype(float)) if len(d) else pd.Series([0.0])
    mid = (float(lx.min()) + float(lx.max())) / 2
    for _, r in d.sort_values(["uplink_mbps", "scenario"]).iterrows():
        x, y = float(np.log10(r["uplink_mbps"])), float(r["device_flops_share"])
        k = sum(1 for px, py in placed if abs(px - x) < 0.35 and abs(py - y) < 0.06)
        placed.append((x, y))
        right = len(d) > 1 and x > mid  # labels of the right half point left: none runs off the axes
        ax.annotate(f"{r['scenario']} → {r['recommended']}", (r["uplink_mbps"], r["device_flops_share"] * 100),
                    xytext=(-6 if right else 6, 4 - 11 * k), textcoords="offset points", fontsize=7,
                    ha="right" if right else "left")
    ax.set_xscale("log")
    ax.set_ylim(-5, 110)
    ax.set_xlabel("uplink (Mbit/s, log)")
    ax.set_ylabel("model FLOPs on the device (%)")
    ax.set_title("Where the recommended cut sits (marker size: number of devices)", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


RESULT_FILES = ("result.json", "splits.csv", "fidelity.csv")  # any one marks a result folder (fidelity: measure)


def _has_results(path: Path) -> bool:
    return any((path / n).is_file() for n in RESULT_FILES)


def result_dirs(dirs: list[str | Path]) -> list[Path]:
    """The result folders named by ``dirs``, in order, each once.

    A folder with no result file of its own but with result folders in it (the folder given
    to ``simulate -o``, e.g. ``results/`` holding ``results/demo/``) stands for those, sorted
    by name. Any other folder is kept as given, for :func:`load_result_dir` to reject.
    """
    out: dict[Path, Path] = {}  # resolved → as given: a folder named twice is reported once
    for d in map(Path, dirs):
        subs: list[Path] = []
        if d.is_dir() and not _has_results(d):
            try:
                subs = sorted((p for p in d.iterdir() if p.is_dir() and _has_results(p)), key=lambda p: p.name)
            except OSError as e:
                raise UserError(f"unreadable folder: {e.strerror}", source=str(d)) from None
            if subs:
                log.info("%s holds no results itself: reporting its result folders %s", d,
                         ", ".join(p.name for p in subs))
        for p in subs or [d]:
            out.setdefault(p.resolve(), p)
    return list(out.values())


def render_report(dirs: list[str | Path], title: str | None = None) -> str:
    """The HTML text of a report over one or more result folders (see :func:`result_dirs`)."""
    found = result_dirs(dirs)
    fids = [load_fidelity_dir(d) for d in found if is_fidelity_dir(d)]
    rds = [load_result_dir(d) for d in found if not is_fidelity_dir(d)]
    if not rds and not fids:
        raise UserError("no result folder given", source="report")
    if not rds:
        title = title or f"splitimpera measure: {fids[0].name if len(fids) == 1 else f'{len(fids)} runs'}"
    title = title or (f"splitimpera report: {rds[0].name}" if len(rds) == 1 else
                      f"splitimpera report: {len(rds)} scenarios")
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             '<p class="muted">Split computing design-space report. FLOPs count one per multiply-add '
             "(fvcore). Latency and energy per inference.</p>"]
    if len(rds) > 1:
        cmp = comparison(rds)
        parts += ["<h2>Comparison</h2>", _comparison_html(cmp)]
        if cmp["device_flops_share"].notna().any():
            parts.append(_img(plot_choice(cmp), "how the recommended cut moves"))
    for rd in rds:
        parts.append(_section(rd))
    for fd in fids:
        parts.append(fidelity_section(fd, _img, _png))
    parts.append("</body></html>")
    return "\n".join(parts)


def figures(rd: ResultDir) -> dict[str, bytes]:
    """The report's plots of one result folder as PNG bytes, by file name."""
    out = {"breakdown.png": plot_breakdown(rd), "energy_latency.png": plot_tradeoff(rd, "energy"),
           "bytes.png": plot_bytes(rd)}
    if "accuracy" in rd.table.columns and rd.table["accuracy"].notna().any():
        out["accuracy_latency.png"] = plot_tradeoff(rd, "accuracy")
    if has_exits(rd):
        out["early_exit.png"] = plot_exits(rd)
    if rd.cui is not None:
        out["cui.png"] = plot_cui(rd)
    if rd.accuracy is not None:
        out["accuracy_bytes.png"] = plot_accuracy_bytes(rd)
    return out


def comparison_figure(rds: list[ResultDir]) -> bytes | None:
    """The comparison's plot (where the recommended cut sits) over several results; None when
    the report has no comparison or nothing to draw."""
    if len(rds) < 2:
        return None
    cmp = comparison(rds)
    return plot_choice(cmp) if cmp["device_flops_share"].notna().any() else None


def write_report(dirs: list[str | Path], out_file: str | Path, title: str | None = None,
                 png: bool = False) -> Path:
    """Render and write the report atomically (temporary file, then rename).

    ``dirs``: result folders, or folders holding them (see :func:`result_dirs`).
    ``png``: also write each plot as a PNG (for papers) into ``<report stem>_figures/``,
    named ``<scenario>_<plot>.png``.
    """
    dirs = result_dirs(dirs)
    text = render_report(dirs, title)
    out = Path(out_file)
    try:
        if png:
            for d in dirs:
                if is_fidelity_dir(d):
                    fd = load_fidelity_dir(d)
                    atomic_write(out.parent / f"{out.stem}_figures" / f"{fd.name}_fidelity.png", plot_fidelity(fd, _png))
                    continue
                rd = load_result_dir(d)
                for name, data in figures(rd).items():
                    atomic_write(out.parent / f"{out.stem}_figures" / f"{rd.name}_{name}", data)
            rds = [load_result_dir(d) for d in dirs if not is_fidelity_dir(d)]
            if (choice := comparison_figure(rds)) is not None:
                atomic_write(out.parent / f"{out.stem}_figures" / "comparison.png", choice)
        atomic_write(out, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report: {e.strerror}", source=str(out)) from None
    return out
