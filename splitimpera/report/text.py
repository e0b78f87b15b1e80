"""Human-readable renderings of results (strings only; the CLI prints them)."""

from __future__ import annotations


import numpy as np
import pandas as pd

from ..accuracy.cui import class_name
from ..plain import flops_text, human_bytes, ms, num
from ..qos import closest, constraints, describe_objective, describe_qos
from .term import grid
from .columns import Column
from .view import View, accuracy_footnote, accuracy_text, compute_error_sentence, exit_table


def _log(v: float) -> str:
    """A log10 CUI value; "—" where it is undefined (an all-zero map)."""
    return "—" if pd.isna(v) else f"{v:.3f}"


# Columns the other tables leave out first when too wide for the terminal (the ranked table's
# come from its column spec, :meth:`View.columns`).
DROP_FIRST = ("feasible splits", "head params", "head peak act", "op", "sent")


def _grid(header: list[str], rows: list[list[str]], align: str) -> str:
    return grid(header, rows, align, drop=DROP_FIRST)


def cell_text(c: Column, v, row: pd.Series | None = None) -> str:
    """One value of the ranked table as the terminal shows it (``row``: the point's table row,
    for where its accuracy comes from)."""
    if c.key in ("split", "bottleneck", "config", "reason", "rank"):
        return "" if v is None or pd.isna(v) else str(int(v)) if c.key == "rank" else str(v)
    if c.key == "exit":
        return "—" if v == "none" else str(v)
    if c.key == "exit_rate":
        return "—" if row is not None and row.name[2] == "none" else f"{v * 100:.0f} %"
    if c.key == "bytes_sent":
        return human_bytes(v)
    if c.key == "frame_loss_ratio":
        return f"{v * 100:.3g} %"
    if c.key == "accuracy":
        return accuracy_text(v, row.get("accuracy_source"), band=row.get("accuracy_band"))
    if c.unit == "s":
        return ms(v, zero="—")  # 0: nothing to wait for
    return num(v * c.scale)


def split_rows(view: View, table: pd.DataFrame, with_reason: bool = True) -> tuple[list[str], list[list[str]], str,
                                                                                       tuple[str, ...]]:
    """Header, rows, alignment and drop order of the per-point terminal table of ``table``'s
    points: :meth:`View.columns` formatted (the verdict only ``with_reason``)."""
    cols = [c for c in view.columns() if with_reason or c.key != "reason"]
    values = view.rows(table)
    rows = [[cell_text(c, values.at[p, c.key], table.loc[p]) for c in cols] for p in table.index]
    align = "".join("l" if c.key in ("split", "bottleneck", "config", "reason") else "r" for c in cols)
    drop = tuple(c.label for c in sorted(cols, key=lambda c: -c.priority) if c.priority)
    return [c.label for c in cols], rows, align, drop


UPLINK_NOTE = ("(uplink = RTT/2, the propagation of a {rtt:g} ms round trip, + transmit: the bytes at the link's "
               "rate, the transport's round trips and retransmissions, waits for the medium)")


TCP_VARIANT_WORDS = {"linux": "Cubic, SACK, PRR, delayed ACKs", "newreno": "NewReno, an ACK per segment"}


def describe_transport(net) -> str:
    """The link's transport in words, e.g. ``TCP linux (Cubic, SACK, PRR, delayed ACKs), persistent connection
    (initial window 10, min RTO 200 ms)``."""
    if net.transport == "udp":
        return f"UDP (no retransmission: a frame with a lost packet is lost; loss {net.loss * 100:.3g} % per packet)"
    t = net.tcp
    conn = "a new connection per request" if t.connection == "new" else "persistent connection"
    return (f"TCP {t.variant} ({TCP_VARIANT_WORDS[t.variant]}), {conn} (initial window {t.init_cwnd_segments}, MSS {net.payload_per_packet} B, "
            f"min RTO {t.min_rto_ms:g} ms, loss {net.loss * 100:.3g} % per packet)")


def _accuracy_lines(result, view: View) -> list[str]:
    """Where the accuracy figures come from, per bottleneck."""
    sc, t = result.scenario, view.table
    info = (result.meta or {}).get("accuracy") or {}
    src = t["accuracy_source"]
    if src.isin(["full model"]).all() or (src == "unknown").all():
        if result.full_accuracy is None:
            return []
        return [f"accuracy of the full model on {sc.data.source} ({sc.data.split}): "
                f"{result.full_accuracy * 100:.2f} % (the tensor is sent unchanged: the same at every split)"]
    counts = ", ".join(f"{n} {k}" for k, n in src.value_counts().items())
    full = "" if result.full_accuracy is None else f"; full model {result.full_accuracy * 100:.2f} %"
    names = ", ".join(view.bottlenecks)
    lines = [f"accuracy and bytes under {names}: {counts}{full}"
             + (f"; fitted on {info['calibration']}" if info.get("calibration") else "")]
    per = info.get("per_bottleneck") or {view.bottlenecks[0]: info}
    for b, bi in per.items():
        pred = (bi or {}).get("predictor")
        if pred:
            loo, base = pred.get("loo_mae"), pred.get("baseline_loo_mae")
            label = pred.get("label") or "isotonic on log10 CUI (I-SPLIT)"
            lines.append(f"  * {b}: predicted by {label}, fitted on {pred['measured_splits']} measured splits; "
                         f"leave-one-split-out error {'–' if loo is None else f'±{loo * 100:.2f}'} pts "
                         f"({'–' if base is None else f'{base * 100:.2f}'} pts for the mean of the others)")

    if info.get("prediction"):
        lines.append(f"  accuracy prediction: {info['prediction']}")
    if src.eq("full model (nominal)").any():
        lines.append("  n: nominal sizes, accuracy assumed the full model's (not measured)")
    return lines


def _exit_lines(result, view: View) -> list[str]:
    """Early exit: what the exit heads are, and per split and τ how many exit and what it buys."""
    info = ((result.meta or {}).get("accuracy") or {}).get("exit")
    et = exit_table(view)
    if not info or et.empty:
        return []
    head = ("global average pooling + linear" if info["head"] == "linear"
            else "3×3 conv + ReLU + global average pooling + linear")
    flops = ", ".join(f"{s} {flops_text(f)}" for s, f in info.get("head_flops", {}).items())
    lines = [f"early exit (EE): exit heads ({head}; FLOPs {flops}) fitted on {info['fit'].get('calibration_samples')} "
             f"calibration samples, backbone frozen; confidence {info['confidence'].replace('_', ' ')}, a sample "
             f"exits when it is ≥ τ; measured on {info['evaluation_samples']} evaluation samples"]
    rows = []
    for _, r in et.iterrows():
        rows.append([str(r["split"]), *([str(r["bottleneck"])] if view.multi else []), str(r["config"]),
                     "—" if pd.isna(r["tau"]) else f"{r['tau']:g}",
                     "—" if r["config"] != "EE" else f"{r['exit_rate'] * 100:.1f} %",
                     "—" if pd.isna(r["exit_accuracy"]) else f"{r['exit_accuracy'] * 100:.1f} %",
                     f"{r['accuracy'] * 100:.2f} %", ms(r["latency_s"], zero="—"),
                     "—" if pd.isna(r["latency_p95_s"]) else ms(r["latency_p95_s"], zero="—"),
                     "" if pd.isna(r["rank"]) else str(int(r["rank"]))])
    hdr = ["split", *(["bottleneck"] if view.multi else []), "config", "τ", "exit rate", "exited acc",
           "accuracy", "mean ms", "p95 ms", "rank"]
    lines.append(_grid(hdr, rows, "l" + ("l" if view.multi else "") + "lrrrrrrr"))
    return lines


def render_best_per_bottleneck(view: View) -> str:
    """The "best split per bottleneck" summary table."""
    best = view.best_per_bottleneck()
    stat = view.statistic
    rows = []
    for b, r in best.iterrows():
        lat = view.table.loc[(r["split"], b, *([r["exit"]] if "exit" in r.index else []))]
        rows.append([str(b), r["split"], "" if pd.isna(r["rank"]) else str(int(r["rank"])),
                     f"{r['feasible_splits']}", human_bytes(r["bytes_sent"]),
                     ms(view.constrained(lat), zero="—"),
                     accuracy_text(r["accuracy"], r.get("accuracy_source"), band=r.get("accuracy_band")),
                     "ok" if r["feasible"] else str(r["reason"])])
    head = ["bottleneck", "best split", "rank", "feasible splits", "sent",
            "latency ms" if stat == "mean" else f"{stat} ms", "accuracy", "verdict"]
    note = accuracy_footnote(best["accuracy_source"])
    return _grid(head, rows, "llrrrrrl") + (f"\n({note})" if note else "")


def render_result(result, top: int | None = None) -> str:
    """The terminal view of a :class:`~splitimpera.results.Result`."""
    sc = result.scenario
    view = View.of(result)
    t = view.table
    top = top or sc.output.top
    shape = "x".join(map(str, result.input_shape))
    lines = [
        f"splitimpera · {sc.name}: {sc.model.name} ({shape}) on {sc.device.name} ─[{sc.network.name}]→ "
        f"{sc.server.name}",
    ]
    if constraints(sc.qos, sc.device):
        lines.append(f"QoS: {describe_qos(sc.qos, sc.device)}; {describe_objective(sc.qos)}")
    wl, bn = sc.workload, sc.bottleneck
    names = view.bottlenecks
    sent = (f"bottleneck{'s' if len(names) > 1 else ''} {', '.join(names)}" + (" (nominal sizes)" if bn.nominal else "")
            + ("" if bn.coder == "raw" else f" + {bn.coder}"))
    lines.append(f"{sent}, result at the {wl.result_at}, {wl.num_devices} device(s); "
                 f"FLOPs: 1 per multiply-add (fvcore)")
    lines.append("transport: " + describe_transport(sc.network))
    modes = getattr(result, "meta", {}).get("compute")
    if modes:
        lines.append(f"compute: {sc.device.name} {modes['device']}; {sc.server.name} {modes['server']}")
    sim = getattr(result, "sim", None)
    stat = sc.qos.latency_statistic
    n_over = int((t["overload"].fillna("") != "").sum()) if "overload" in t.columns else 0
    overload = (f"; {n_over} overloaded design point{'s' if n_over > 1 else ''} (a resource at or over its "
                "capacity: latency unbounded) not simulated" if n_over else "")
    if result.simulated:
        n_sim = result.simulated_requests
        if sim is not None:
            per_point = int(sim.summary["requests"].iloc[0]) if len(sim.summary) else 0
        else:  # read from a folder: every simulated point keeps as many requests
            per_point = n_sim // max(len(t) - n_over, 1)
        trace = " following its rate trace" if sc.network.trace_csv else ""
        lines.append(f"engine simpy: {n_sim:,} simulated requests ({per_point} per design point after "
                     f"warm-up; {wl.arrival} arrivals at {num(wl.rate_hz, 4)} Hz per device{trace}); "
                     f"latency limit on the {stat}{overload}")
    else:
        lines.append("engine analytic: one request, no queueing" + (f"; latency limit on the {stat}" if stat != "mean" else ""))
    lines += _accuracy_lines(result, view)
    lines += _exit_lines(result, view)
    lines.append("")
    ranked = view.ranked()
    shown = ranked.head(top)
    n_feas = len(ranked)
    verdict = view.verdict()
    if n_feas:
        header, rows, align, drop = split_rows(view, shown, with_reason=False)
        lines.append(f"{verdict.details[0][:-1]}; top {len(shown)}:")
        lines.append(grid(header, rows, align, drop=drop))
        lines.append(UPLINK_NOTE.format(rtt=sc.network.rtt_ms))
        note = describe_compute_error(result, view)
        if note:
            lines.append(note)
        lines.append("")
        lines.append(verdict.headline)
        lines += [d for d in verdict.details[1:]]
    else:
        lines.append(" ".join([verdict.headline, *verdict.details, "Closest:"]))
        header, rows, align, drop = split_rows(view, closest(t, 3), with_reason=True)
        lines.append(grid(header, rows, align, drop=drop))
        tips = [(label, tp) for label, _, tp in verdict.closest if tp]
        if tips:
            lines += ["", "What would have to change (first-order estimates, other terms held fixed):"]
            lines += [f"  {label}: " + "; or ".join(tp) for label, tp in tips]
    if view.multi:
        lines += ["", "Best split per bottleneck:", render_best_per_bottleneck(view)]
    bad = t[~t["feasible"]]
    if n_feas and len(bad):
        lines.append("")
        lines.append(f"{len(bad)} infeasible: " + "; ".join(
            f"{view.label(p)} ({r})" for p, r in bad["reason"].head(4).items()) + ("; …" if len(bad) > 4 else ""))
    return "\n".join(lines)


def describe_compute_error(result, view) -> str:
    """The terminal's sentence on the compute model's error (:func:`~.view.compute_error_sentence`)."""
    sc = result.scenario
    text = compute_error_sentence(view, getattr(result, "meta", {}).get("compute") or {}, sc.device.name,
                                  sc.server.name)
    return f"({text})" if text else ""


def render_profile(profile: pd.DataFrame) -> str:
    """The ``splitimpera splits`` table: one row per candidate split."""
    header = ["#", "split", "op", "shape", "head FLOPs", "tail FLOPs", "sent fp32", "head params",
              "head peak act"]
    rows = []
    for i, (name, r) in enumerate(profile.iterrows()):
        rows.append([str(i), str(name), str(r["op"]), str(r["shape"]), flops_text(r["head_flops"]),
                     flops_text(r["tail_flops"]), human_bytes(r["tx_bytes"]), flops_text(r["head_params"]),
                     human_bytes(r["head_peak_act_bytes"])])
    return _grid(header, rows, "rllrrrrrr")


def render_analysis(scenario, res, input_shape) -> str:
    """The terminal view of ``splitimpera analyze``."""
    s = res.settings
    n = int(res.curve["n_images"].iloc[0])
    lines = [
        f"splitimpera analyze · {scenario.name}: {scenario.model.name} ({'x'.join(map(str, input_shape))}), "
        f"{scenario.data.source} ({scenario.data.split})",
        f"Grad-CAM method {s['method']}, target {s['target']}, channel {s['reduction']}, {s['aggregate']} over "
        f"{n} images, {len(res.curve)} splits (preset {s['preset']})"
        + (f", classes {', '.join(class_name(c, s.get('class_names')) for c in s['classes'])}"
           if s.get("classes") else ""),
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
    names = s.get("class_names")
    rows = [[class_name(c, names), str(int(r["n_images"])), r["best_split"] or "—", _log(r["log10_cui"])]
            for c, r in best.iterrows()]
    lines.append(_grid(["class", "images", "best split", "log10 CUI"], rows, ("l" if names else "r") + "rlr"))
    moved = sorted({b for b in best["best_split"] if b and b != res.best})
    if moved:
        lines.append(f"Classes whose best split differs from {res.best}: " + ", ".join(
            f"{b} ({', '.join(class_name(c, names) for c in best.index[best['best_split'] == b])})" for b in moved))
    return "\n".join(lines)


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
    loo = acc.summary().get("predictors_loo")
    if loo:
        methods = list(loo["methods"])
        auto = loo.get("auto")
        lines += ["", f"Every predictor on your measured splits, leave-one-split-out mean absolute error of {col} "
                      "in points (* lowest; regret: points lost by picking the split it ranks best):"]
        rows = []
        for b, per_m in loo["per_bottleneck"].items():
            maes = {m: per_m[m]["mae"] for m in methods if m in per_m and per_m[m]["mae"] is not None}
            best = min(maes, key=maes.get) if maes else None
            rows.append([b, str(next(iter(per_m.values()))["points"])]
                        + [("–" if m not in maes else f"{maes[m] * 100:.2f}{'*' if m == best else ''}")
                           for m in methods]
                        + ["–" if best in (None, "mean") or per_m[best]["regret"] is None
                           else f"{per_m[best]['regret'] * 100:.2f}"])
        lines.append(_grid(["bottleneck", "splits", *methods, "regret*"], rows, "lr" + "r" * (len(methods) + 1)))
        lines.append("  " + "; ".join(f"{m}: {label}" for m, label in loo["methods"].items()))
        lines.append(f"  bottleneck.predictor: auto uses {auto}, the predictor that passed validation on the bundled "
                     "study" if auto else "  bottleneck.predictor: auto predicts nothing: no predictor passed "
                     "validation on the bundled study (README, accuracy fidelity); unmeasured splits are measured")
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
