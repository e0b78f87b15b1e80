"""Human-readable renderings of results (strings only; the CLI prints them)."""

from __future__ import annotations


import numpy as np
import pandas as pd

from ..qos import closest, constraints, human_bytes


def _ms(v: float) -> str:
    return "—" if v == 0 else f"{v * 1e3:.3g}" if v * 1e3 < 100 else f"{v * 1e3:.0f}"


def _flops(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{int(v)}"


def _grid(header: list[str], rows: list[list[str]], align: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align))

    return "\n".join([fmt(header), fmt(["─" * w for w in widths]), *(fmt(r) for r in rows)])


def split_rows(table: pd.DataFrame, with_reason: bool = True, simulated: bool = False, downlink: bool = True,
               accuracy: bool = False) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and alignment of the per-split terminal table.

    ``simulated`` adds the queueing waits (device, server) and the p95 latency, and heads the
    latency column ``mean ms``; ``downlink=False`` leaves out the downlink column (always 0
    with the result at the server); ``accuracy`` adds the accuracy and where it comes from
    (a ``*`` marks a prediction from the CUI curve, ``u`` your CSV).
    """
    named = {"device_wait_s": "dev wait ms", "device_compute_s": "device ms", "uplink_s": "uplink ms",
             "server_wait_s": "srv wait ms", "server_compute_s": "server ms", "downlink_s": "downlink ms",
             "latency_s": "mean ms" if simulated else "latency ms", "latency_p95_s": "p95 ms"}
    if simulated:
        cols = ["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s", "downlink_s",
                "latency_s", "latency_p95_s"]
    else:
        cols = ["device_compute_s", "uplink_s", "server_compute_s", "downlink_s", "latency_s"]
    if not downlink:
        cols.remove("downlink_s")
    header = ["rank", "split", "sent", *(named[c] for c in cols), "energy mJ"]
    align = "rlr" + "r" * (len(cols) + 1)
    if accuracy:
        header.append("accuracy")
        align += "r"
    if with_reason:
        header.append("verdict")
        align += "l"
    rows = []
    for name, r in table.iterrows():
        rank = "" if pd.isna(r["rank"]) else str(int(r["rank"]))
        row = [rank, str(name), human_bytes(r["bytes_sent"]), *(_ms(r[c]) for c in cols),
               f"{r['energy_j'] * 1e3:.3g}"]
        if accuracy:
            mark = {"predicted (CUI)": "*", "user": " u"}.get(r.get("accuracy_source"), "")
            row.append("—" if pd.isna(r["accuracy"]) else f"{r['accuracy'] * 100:.1f} %{mark}")
        if with_reason:
            row.append("ok" if r["feasible"] else r["reason"])
        rows.append(row)
    return header, rows, align


def describe_objective(qos) -> str:
    """``objective: …`` with its weights and the tie-breaks, as the ranking applies them."""
    from ..qos import TIE_BREAKS

    if qos.objective == "weighted":
        w = qos.weights.model_dump()
        what = "min weighted score (" + ", ".join(f"{k} {v:g}" for k, v in w.items() if v) + "; min-max scaled)"
    else:
        what = ("max " if qos.objective == "accuracy" else "min ") + qos.objective
    return f"objective: {what}, {TIE_BREAKS}"


def render_result(result, top: int | None = None) -> str:
    """The terminal view of a :class:`~splitimpera.pipeline.Result`."""
    sc, t = result.scenario, result.table
    top = top or sc.output.top
    shape = "x".join(map(str, result.input_shape))
    lines = [
        f"splitimpera · {sc.name}: {sc.model.name} ({shape}) on {sc.device.name} ─[{sc.network.name}]→ "
        f"{sc.server.name}",
    ]
    cs = constraints(sc.qos, sc.device)
    if cs:
        lines.append("QoS: " + ", ".join(
            f"{c.name} {'≤' if c.upper else '≥'} {c.fmt(c.limit)}" for c in cs)
            + f"; {describe_objective(sc.qos)}")
    wl, bn = sc.workload, sc.bottleneck
    sent = (f"payload {wl.payload_dtype}" if bn.name == "none" else f"bottleneck {bn.name}") + \
        ("" if bn.coder == "raw" else f" + {bn.coder}")
    lines.append(f"{sent}, result at the {wl.result_at}, {wl.num_devices} device(s); "
                 f"FLOPs: 1 per multiply-add (fvcore)")
    sim = getattr(result, "sim", None)
    if sim is not None:
        per_split = int(sim.summary["requests"].iloc[0]) if len(sim.summary) else 0
        trace = " following its rate trace" if sc.network.trace_csv else ""
        lines.append(f"engine simpy: {len(sim.requests):,} simulated requests ({per_split} per split after warm-up; "
                     f"{wl.arrival} arrivals at {wl.rate_hz:g} Hz per device{trace}); latency = mean")
    else:
        lines.append("engine analytic: one request, no queueing")
    info = (result.meta or {}).get("accuracy") or {}
    with_acc = bn.active
    if result.full_accuracy is not None and not with_acc:
        lines.append(f"accuracy of the full model on {sc.data.source} ({sc.data.split}): "
                     f"{result.full_accuracy * 100:.2f} % (no bottleneck: the same at every split)")
    elif with_acc:
        src = t["accuracy_source"].value_counts()
        what = ", ".join(f"{n} {k}" for k, n in src.items())
        full = "" if result.full_accuracy is None else f"; full model {result.full_accuracy * 100:.2f} %"
        lines.append(f"accuracy and bytes under {bn.name}: {what}{full}"
                     + (f"; fitted on {info['calibration']}" if info.get("calibration") else ""))
        pred = info.get("predictor")
        if pred:
            loo = pred.get("loo_mae")
            base = pred.get("baseline_loo_mae")
            lines.append(f"  * predicted from the CUI curve (isotonic fit on {pred['measured_splits']} measured splits; "
                         f"leave-one-out error {'–' if loo is None else f'{loo * 100:.2f}'} pts, "
                         f"{'–' if base is None else f'{base * 100:.2f}'} pts for the mean of the others)")
    lines.append("")
    ranked = t[t["feasible"]].sort_values("rank")
    shown = ranked.head(top)
    n_feas = len(ranked)
    simulated = sim is not None
    downlink = wl.result_at == "device"
    if n_feas:
        header, rows, align = split_rows(shown, with_reason=False, simulated=simulated, downlink=downlink,
                                         accuracy=with_acc)
        lines.append(f"{n_feas} of {len(t)} splits meet the QoS; top {len(shown)}:")
        lines.append(_grid(header, rows, align))
        rec = result.recommended
        r = t.loc[rec]
        lines.append("")
        lat_margin = ""
        if sc.qos.max_latency_s is not None:
            stat = "" if sc.qos.latency_statistic == "mean" else f" ({sc.qos.latency_statistic})"
            lat_margin = f", {(sc.qos.max_latency_s - r['latency_qos_s']) * 1e3:.3g} ms under the limit{stat}"
        p95 = f" (p95 {r['latency_p95_s'] * 1e3:.3g} ms)" if simulated else ""
        lines.append(
            f"Recommended: {rec} — latency {r['latency_s'] * 1e3:.3g} ms{p95}{lat_margin}; the device runs "
            f"{_flops(r['head_flops'])} of {_flops(r['head_flops'] + r['tail_flops'])} FLOPs and sends "
            f"{human_bytes(r['bytes_sent'])} ({r['energy_j'] * 1e3:.3g} mJ on the device)."
        )
        runners = list(ranked.index[1:3])
        if runners:
            lines.append("Runners-up: " + ", ".join(
                f"{n} ({t.loc[n, 'latency_s'] * 1e3:.3g} ms)" for n in runners))
    else:
        lines.append(f"No split meets the QoS ({len(t)} evaluated). Closest:")
        header, rows, align = split_rows(closest(t, 3), with_reason=True, simulated=simulated, downlink=downlink,
                                         accuracy=with_acc)
        lines.append(_grid(header, rows, align))
        from ..qos import what_would_change

        tips = what_would_change(t, sc.qos, sc.network)
        if any(tips.values()):
            lines += ["", "What would have to change (first-order estimates, other terms held fixed):"]
            lines += [f"  {name}: " + "; or ".join(tp) for name, tp in tips.items() if tp]
    bad = t[~t["feasible"]]
    if n_feas and len(bad):
        lines.append("")
        lines.append(f"{len(bad)} infeasible: " + "; ".join(
            f"{n} ({r})" for n, r in bad["reason"].head(4).items()) + ("; …" if len(bad) > 4 else ""))
    return "\n".join(lines)


def render_profile(profile: pd.DataFrame) -> str:
    """The ``splitimpera splits`` table: one row per candidate split."""
    header = ["#", "split", "op", "shape", "head FLOPs", "tail FLOPs", "sent fp32", "head params",
              "head peak act"]
    rows = []
    for i, (name, r) in enumerate(profile.iterrows()):
        rows.append([str(i), str(name), str(r["op"]), str(r["shape"]), _flops(r["head_flops"]),
                     _flops(r["tail_flops"]), human_bytes(r["tx_bytes"]), _flops(r["head_params"]),
                     human_bytes(r["head_peak_act_bytes"])])
    return _grid(header, rows, "rllrrrrrr")


def draw_cui(ax, curve: pd.DataFrame, nominated, per_class: pd.DataFrame | None = None) -> None:
    """Draw the log10 CUI curve on ``ax``, nominated splits starred, per-class curves faint.

    ``curve``: indexed by split with ``log10_cui``; ``nominated``: records with ``rank``,
    ``split``, ``log10_cui``, ``kind``. All-zero maps sit at log10(LOG_FLOOR): the axis stays on
    real values and those are pinned to its floor.
    """
    import numpy as np

    from ..accuracy.cui import LOG_FLOOR

    per_class = per_class if per_class is not None else pd.DataFrame()
    x = range(len(curve))
    floor = np.log10(LOG_FLOOR) + 1
    vals = np.concatenate([curve["log10_cui"].to_numpy(), per_class.to_numpy(dtype=float).ravel()])
    real = vals[vals > floor]
    lo, hi = (real.min(), real.max()) if len(real) else (-1.0, 1.0)
    margin = 0.08 * max(hi - lo, 0.5)
    bottom = lo - margin
    for _, row in per_class.iterrows():
        ax.plot(x, np.maximum(row.to_numpy(dtype=float), bottom), color="0.8", lw=0.8, zorder=1)
    ax.plot(x, curve["log10_cui"], "o-", color="tab:blue", lw=1.8, ms=4, zorder=2, label="CUI (all images)")
    pos = {s: i for i, s in enumerate(curve.index)}
    for r in nominated:
        i = pos.get(r["split"])
        if i is None:
            continue
        ax.plot([i], [r["log10_cui"]], marker="*", ms=16, color="tab:red" if r["kind"] == "global" else "tab:orange",
                zorder=3)
        ax.annotate(f"#{r['rank']} {r['split']}", (i, r["log10_cui"]), textcoords="offset points",
                    xytext=(4, 8), fontsize=8)
    if len(per_class):
        ax.plot([], [], color="0.8", lw=0.8, label="per class")
    ax.plot([], [], "*", color="tab:red", ms=10, label="nominated (global / local)")
    ax.set_xticks(list(x), list(curve.index), rotation=70, ha="right", fontsize=7)
    ax.set_ylim(bottom, hi + 3 * margin)
    ax.set_ylabel("log10 CUI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def plot_cui(res, path, title: str = "") -> None:
    """PNG of a :class:`~splitimpera.accuracy.cui.CUIResult`'s curve (see :func:`draw_cui`)."""
    from matplotlib.figure import Figure

    curve = res.curve
    fig = Figure(figsize=(max(6.0, 0.32 * len(curve) + 2), 4.2), dpi=120)
    try:
        ax = fig.subplots()
        draw_cui(ax, curve, res.nominated.to_dict("records"), res.per_class)
        s = res.settings
        ax.set_title(title or f"CUI curve: {s['method']}, target {s['target']}, channel {s['reduction']}, "
                              f"{s['aggregate']} over {int(curve['n_images'].iloc[0])} images", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        fig.clear()  # free the artists even if saving failed


def render_analysis(scenario, res, input_shape) -> str:
    """The terminal view of ``splitimpera analyze``."""
    s = res.settings
    n = int(res.curve["n_images"].iloc[0])
    lines = [
        f"splitimpera analyze · {scenario.name}: {scenario.model.name} ({'x'.join(map(str, input_shape))}), "
        f"{scenario.data.source} ({scenario.data.split})",
        f"Grad-CAM method {s['method']}, target {s['target']}, channel {s['reduction']}, {s['aggregate']} over "
        f"{n} images, {len(res.curve)} splits (preset {s['preset']})"
        + (f", classes {s['classes']}" if s.get("classes") else ""),
        "",
        "Nominated splits (log10 CUI; local maxima must stand out by "
        f"{s['prominence']:g}):",
    ]
    header = ["#", "split", "log10 CUI", "prominence", "kind"]
    rows = [[str(r["rank"]), r["split"], f"{r['log10_cui']:.3f}", f"{r['prominence']:.3f}", r["kind"]]
            for _, r in res.nominated.iterrows()]
    lines.append(_grid(header, rows, "rlrrl"))
    best = res.best_per_class()
    lines += ["", "Best split per class:"]
    rows = [[str(c), str(int(r["n_images"])), r["best_split"], f"{r['log10_cui']:.3f}"] for c, r in best.iterrows()]
    lines.append(_grid(["class", "images", "best split", "log10 CUI"], rows, "rrlr"))
    moved = sorted({b for b in best["best_split"] if b != res.best})
    if moved:
        lines.append(f"Classes whose best split differs from {res.best}: " + ", ".join(
            f"{b} ({', '.join(str(c) for c in best.index[best['best_split'] == b])})" for b in moved))
    return "\n".join(lines)


def draw_accuracy(ax, table: pd.DataFrame, full_accuracy: float | None, coder: str = "raw") -> None:
    """Accuracy (agreement without labels) against bytes per sample under ``coder`` on
    ``ax``: one series per bottleneck of the long ``accuracy.csv`` table, one point per split."""
    import matplotlib

    col = "accuracy" if full_accuracy is not None else "agreement"
    cmap = matplotlib.colormaps["tab20"]
    markers = "osD^v<>pXh*"
    for i, b in enumerate(dict.fromkeys(table["bottleneck"])):
        t = table[table["bottleneck"] == b]
        t = t[np.isfinite(t[f"bytes_{coder}"].astype(float)) & np.isfinite(t[col].astype(float))]
        ax.scatter(t[f"bytes_{coder}"], t[col] * 100, s=16, color=cmap(i % 20), marker=markers[i % len(markers)],
                   label=b, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel(f"bytes per sample on the wire ({coder} coder)")
    ax.set_ylabel(f"{col} (%)")
    if full_accuracy is not None:
        ax.axhline(full_accuracy * 100, color="0.5", lw=0.8, ls="--", label="full model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def plot_accuracy(measured, path, coder: str = "raw", title: str = "") -> None:
    """PNG of :func:`draw_accuracy` for an :class:`~splitimpera.accuracy.measure.AccuracyTable`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 5.0), dpi=120)
    try:
        ax = fig.subplots()
        draw_accuracy(ax, measured.table, measured.full_accuracy, coder)
        col = "accuracy" if measured.full_accuracy is not None else "agreement"
        ax.set_title(title + f" · {col} vs bytes, each point a split", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        fig.clear()


def render_accuracy(acc, coder: str = "raw") -> str:
    """The terminal view of ``analyze``'s accuracy part (see ``pipeline.AccuracyAnalysis``)."""
    m = acc.measured
    labelled = m.full_accuracy is not None
    col = "accuracy" if labelled else "agreement"
    lines = ["", f"{'Accuracy' if labelled else 'Agreement with the full model'} (%) per split and bottleneck, "
                 f"{m.samples} evaluation samples"
             + (f"; learning bottlenecks fitted on {acc.calibration}" if acc.calibration else "")
             + (f"; full model {m.full_accuracy:.2%}" if labelled else "") + ":"]
    piv = m.pivot(col)
    byt = m.pivot(f"bytes_{coder}")
    header = ["split"] + list(piv.columns)
    rows = [[s] + [("n/a" if not np.isfinite(v) else f"{v * 100:.1f}") for v in piv.loc[s]] for s in piv.index]
    lines.append(_grid(header, rows, "l" + "r" * len(piv.columns)))
    lines += ["", f"Bytes per sample ({coder} coder; n/a: the bottleneck does not apply there):"]
    rows = [[s] + [("n/a" if not np.isfinite(v) else human_bytes(v)) for v in byt.loc[s]] for s in byt.index]
    lines.append(_grid(header, rows, "l" + "r" * len(byt.columns)))
    p = acc.predictors
    lines += ["", f"CUI as a predictor of {col} (isotonic fit; leave-one-out mean absolute error, in points; "
                  "baseline: the mean of the other splits):"]
    rows = []
    for b, r in p.iterrows():
        def pts(v):
            return "–" if not np.isfinite(v) else f"{v * 100:.2f}"
        rows.append([b, str(int(r["splits"])), "–" if not np.isfinite(r["spearman"]) else f"{r['spearman']:+.2f}",
                     pts(r["loo_mae"]), pts(r["baseline_loo_mae"]),
                     "–" if not np.isfinite(r["accuracy_min"]) else
                     f"{r['accuracy_min'] * 100:.1f}–{r['accuracy_max'] * 100:.1f}"])
    lines.append(_grid(["bottleneck", "splits", "Spearman", "LOO MAE", "baseline MAE", f"{col} range"], rows,
                       "lrrrrr"))
    ch = acc.summary().get("channels_gradcam_vs_random") or {}
    if ch:
        metric = next(iter(ch.values()))["metric"]
        lines += ["", f"Grad-CAM vs random channels at the same channel count (equal bytes), by {metric}:"]

        def signed(v):
            return "–" if v is None else f"{v * 100:+.1f}"

        rows = [[f, str(c["splits"]), str(c["gradcam_better"]), str(c["random_better"]),
                 signed(c["mean_difference"]), signed(c["median_difference"])] for f, c in ch.items()]
        lines.append(_grid(["kept", "splits", "Grad-CAM better", "random better", "mean Δ (pts)", "median Δ (pts)"],
                           rows, "lrrrrr"))
    return "\n".join(lines)
