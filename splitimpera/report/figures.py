"""The figures of a result's report (matplotlib → PNG bytes), drawn from its :class:`View`,
and the comparison across results."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .plots import draw_accuracy, new_axes, plot_cui, png_bytes
from .view import STAGE_COLOURS, View, exit_table


def _shown_points(v: View) -> pd.DataFrame:
    """The points a per-split figure draws: every split (one bottleneck), or each
    bottleneck's best split (several), in topological order."""
    if not v.multi:
        return v.table.sort_values("index")
    best = v.best_per_bottleneck()
    return v.table.loc[[(r["split"], b, *([r["exit"]] if "exit" in r.index else [])) for b, r in best.iterrows()]]


def plot_breakdown(v: View) -> bytes:
    """Stacked latency breakdown per split (ms), topological order; QoS limit dashed. With
    several bottlenecks: the best split of each."""
    t = _shown_points(v)
    stages = v.stages(bounded=True).loc[t.index]
    fig, ax = new_axes(figsize=(max(6.0, 0.28 * len(t) + 2), 3.8))
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
    return png_bytes(fig)


def plot_tradeoff(v: View, metric: str = "accuracy") -> bytes:
    """``metric`` ("accuracy" or "energy") vs latency, with the Pareto front and the QoS region."""
    t = v.table
    qos = v.qos
    has_acc = metric == "accuracy"
    ycol, ylabel = ("accuracy", "accuracy") if has_acc else ("energy_j", "device energy (mJ)")
    # The x axis is the latency the limit applies to, so the QoS region is read correctly.
    lat_col = "latency_qos_s"
    t = t[np.isfinite(t[lat_col].astype(float))]  # an overloaded point's latency is unbounded: not drawn
    y = t[ycol] * (100 if has_acc else 1e3)
    xms = t[lat_col] * 1e3
    fig, ax = new_axes(figsize=(6.4, 4.0))
    lim = qos.max_latency_ms
    ymin = (qos.min_accuracy or 0) * 100 if has_acc else None
    ymax = qos.max_energy_mj if not has_acc else None
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
    feas = t["feasible"].astype(bool)
    ax.scatter(xms[~feas], y[~feas], marker="x", color="tab:gray", label="infeasible")
    ax.scatter(xms[feas], y[feas], color="tab:blue", label="feasible")
    front = t[t["pareto"].astype(bool)].sort_values(lat_col)
    ax.plot(front[lat_col] * 1e3, front[ycol] * (100 if has_acc else 1e3), "-", color="tab:red", lw=1.2,
            label="Pareto front")
    rec = v.recommended
    if rec in t.index:
        ax.scatter([xms[rec]], [y[rec]], marker="*", s=220, color="tab:red", zorder=5,
                   label=f"recommended: {v.label(rec)}")
    ax.set_xlim(0, x_hi)
    stat = v.statistic
    ax.set_xlabel("latency (ms)" if stat == "mean" else f"{stat} latency (ms)")
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
    return png_bytes(fig)


def plot_bytes(v: View) -> bytes:
    """Bytes on the wire per split (log scale); one line per bottleneck when there are several."""
    table = v.table
    if "exit" in table.index.names:  # what a forwarded request sends: the points without an exit head
        table = table.xs("none", level="exit")
    splits = list(dict.fromkeys(table.sort_values("index").index.get_level_values("split")))
    fig, ax = new_axes(figsize=(max(6.0, 0.28 * len(splits) + 2), 3.2))
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
    return png_bytes(fig)


def has_exits(v: View) -> bool:
    t = v.table
    return "exit" in t.index.names and "config" in t.columns and (t["config"] == "EE").any()


def plot_exits(v: View) -> bytes:
    """Early exit: accuracy vs mean latency (left) and vs p95 latency (right, simulated runs)
    per exit split (and bottleneck), one marker per threshold τ, the split computing point of
    the same split as a square; the recommended point starred."""
    from matplotlib.figure import Figure

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
        q = v.qos
        if q.min_accuracy:
            ax.axhline(q.min_accuracy * 100, color="tab:green", ls=":", lw=1, label="accuracy limit")
        if q.max_latency_ms and ((col == "latency_s") == (v.statistic == "mean") or col == v.latency_column):
            ax.axvline(q.max_latency_ms, color="k", ls="--", lw=1, label=f"latency limit ({v.statistic})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    np.ravel(axes)[0].legend(fontsize=6)
    fig.suptitle("Early exit: accuracy vs latency per threshold τ", fontsize=10)
    return png_bytes(fig)


def plot_accuracy_bytes(v: View) -> bytes:
    saved = v.result.analysis
    fig, ax = new_axes(figsize=(9.0, 4.4))
    draw_accuracy(ax, saved.accuracy, (saved.accuracy_summary or {}).get("full_model_accuracy"),
                  v.result.scenario.bottleneck.coder)
    ax.set_title("Measured accuracy vs bytes on the wire: every split under every bottleneck", fontsize=10)
    return png_bytes(fig)


def plot_choice(df: pd.DataFrame) -> bytes:
    """Where the recommended cut sits (device share of the model's FLOPs) vs uplink bandwidth."""
    d = df.dropna(subset=["device_flops_share", "uplink_mbps"])
    fig, ax = new_axes(figsize=(6.4, 3.6))
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
    return png_bytes(fig)


def has_accuracy(v: View) -> bool:
    """Some point has an accuracy (measured, predicted or assumed)."""
    return "accuracy" in v.table.columns and v.table["accuracy"].notna().any()


def saved_cui(v: View) -> bytes | None:
    """The CUI curve ``analyze`` left beside the result, with its nominated splits; None when none."""
    saved = v.result.analysis
    if saved is None or saved.cui is None:
        return None
    return plot_cui(saved.cui, (saved.nominations or {}).get("nominated", []),
                    "I-SPLIT CUI curve with nominated splits")


def figures(v: View) -> dict[str, bytes]:
    """The report's plots of one result as PNG bytes, by file name."""
    out = {"breakdown.png": plot_breakdown(v), "energy_latency.png": plot_tradeoff(v, "energy"),
           "bytes.png": plot_bytes(v)}
    if has_accuracy(v):
        out["accuracy_latency.png"] = plot_tradeoff(v, "accuracy")
    if has_exits(v):
        out["early_exit.png"] = plot_exits(v)
    if (cui := saved_cui(v)) is not None:
        out["cui.png"] = cui
    if v.result.analysis is not None and v.result.analysis.accuracy is not None:
        out["accuracy_bytes.png"] = plot_accuracy_bytes(v)
    return out


def comparison(views: list[View]) -> pd.DataFrame:
    """One row per result: the knobs that usually differ and the recommended point."""
    rows = []
    for v in views:
        sc = v.result.scenario
        rec = v.recommended
        r = v.table.loc[rec] if rec is not None else None
        lim = sc.qos.max_latency_ms
        rows.append({
            "scenario": v.name, "model": sc.model.name, "device": sc.device.name, "network": sc.network.name,
            "uplink_mbps": sc.network.uplink_mbps, "num_devices": sc.workload.num_devices,
            "max_latency_ms": lim,
            "recommended": v.label(rec) if rec is not None else "— none —",
            "device_flops_share": None if r is None else
            float(r["head_flops"]) / max(float(r["head_flops"] + r["tail_flops"]), 1.0),
            "latency_ms": None if r is None else float(r["latency_s"]) * 1e3,
            "margin_ms": None if (r is None or not lim) else lim - v.constrained(r) * 1e3,
            "feasible": f"{int(v.table['feasible'].sum())}/{len(v.table)}",
        })
    return pd.DataFrame(rows)


def comparison_figure(views: list[View]) -> bytes | None:
    """The comparison's plot (where the recommended cut sits) over several results; None when
    the report has no comparison or nothing to draw."""
    if len(views) < 2:
        return None
    cmp = comparison(views)
    return plot_choice(cmp) if cmp["device_flops_share"].notna().any() else None
