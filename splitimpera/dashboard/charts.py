"""The dashboard's charts: plain Vega-Lite specs over :meth:`View.chart_frame
<splitimpera.report.view.View.chart_frame>` (nothing here imports Streamlit)."""

from __future__ import annotations

import json

import pandas as pd

from .. import whatif
from ..report.view import STAGE_COLOURS, STAGE_LABELS, View
from ..results.run import Result


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (NaN → null) for a Vega-Lite spec."""
    return json.loads(df.to_json(orient="records"))


def quantitative(field: str, title: str | None = None, fmt: str | None = None, **extra) -> dict:
    enc = {"field": field, "type": "quantitative", **extra}
    if title is not None:
        enc["title"] = title
    if fmt is not None:
        enc["format"] = fmt
    return enc


def _x_points(order: list[str]) -> dict:
    return {"field": "label", "type": "nominal", "sort": order, "title": None,
            "axis": {"labelAngle": -60, "labelOverlap": False}}


# Charts are plain Vega-Lite specs over View.chart_frame() (st.vega_lite_chart): building
# them through Altair costs about 70 ms each in schema checks, more than the re-ranking itself.
# Seconds become milliseconds in the specs' own transforms.


def breakdown_chart(view: View, points: pd.DataFrame) -> dict:
    """Stacked latency of ``points`` (rows of :meth:`View.chart_frame`, topological order),
    the QoS limit dashed, ★ on the recommended point."""
    stages = [label for label in STAGE_LABELS if points[label].abs().sum() > 0]
    order = list(points["label"])
    lim = view.qos.max_latency_ms
    # A bar far past the limit would squeeze the others and the limit line: the axis stops at
    # CLIP_LIMITS × the limit, and a cut bar carries ▲ (its tooltip has the value).
    cap = CLIP_LIMITS * lim if lim else None
    cut = points[points["latency_s"] * 1e3 > cap] if cap else points.iloc[:0]
    y_scale = {"scale": {"domain": [0, cap]}} if len(cut) else {}
    tip = [{"field": "label", "title": "point"}, {"field": "stage"}, quantitative("ms", "stage ms", ".3g"),
           quantitative("total_ms", "latency ms", ".3g"), {"field": "verdict"}]
    layers = [{
        "data": {"values": records(points)},
        "transform": [{"fold": stages, "as": ["stage", "s"]}, {"calculate": "datum.s * 1000", "as": "ms"},
                      {"calculate": "datum.latency_s * 1000", "as": "total_ms"},
                      {"calculate": f"indexof({json.dumps(stages)}, datum.stage)", "as": "i"}],
        "mark": {"type": "bar", "clip": True},
        "encoding": {
            "x": _x_points(order), "y": quantitative("ms", "latency (ms)", stack="zero", **y_scale),
            "color": {"field": "stage", "type": "nominal", "sort": stages, "legend": {"orient": "top", "title": None},
                      "scale": {"domain": stages, "range": [STAGE_COLOURS[v] for v in stages]}},
            "order": quantitative("i"), "tooltip": tip}}]
    if len(cut):
        layers.append({"data": {"values": [{"label": lbl, "top": cap} for lbl in cut["label"]]},
                       "mark": {"type": "text", "text": "▲", "dy": 8, "fontSize": 14, "color": "#d62728"},
                       "encoding": {"x": _x_points(order), "y": quantitative("top")}})
    if lim:
        layers.append({"data": {"values": [{"limit_ms": lim}]},
                       "mark": {"type": "rule", "color": "black", "strokeDash": [5, 4]},
                       "encoding": {"y": quantitative("limit_ms"), "tooltip": [quantitative("limit_ms", "QoS limit ms")]}})
    if view.latency_column != "latency_s":  # the bars are means; the limit and the ranking use this statistic
        layers.append({"data": {"values": records(points)},
                       "transform": [{"calculate": "datum.latency_qos_s * 1000", "as": "stat_ms"}],
                       "mark": {"type": "tick", "color": "black", "thickness": 2},
                       "encoding": {"x": _x_points(order), "y": quantitative("stat_ms"),
                                    "tooltip": [{"field": "label", "title": "point"},
                                                quantitative("stat_ms", f"{view.statistic} ms", ".3g")]}})
    rec = points[points["status"] == "recommended"]
    if len(rec):
        layers.append({"data": {"values": records(rec)},
                       "transform": [{"calculate": "datum.latency_s * 1000", "as": "total_ms"}],
                       "mark": {"type": "text", "text": "★", "dy": -10, "fontSize": 18, "color": "#d62728"},
                       "encoding": {"x": _x_points(order), "y": quantitative("total_ms")}})
    what = "split" if not view.multi else "point"
    return {"title": f"Latency breakdown per {what} (★ recommended" + (f"; ▲ cut at {cap:g} ms" if len(cut) else "")
            + ")", "height": 380, "layer": layers}


CLIP_LIMITS = 4  # charts stop at this many times the latency limit (points past it sit on the edge)


def tradeoff_chart(view: View, metric: str) -> dict:
    """``accuracy`` or ``energy`` against the latency the limit applies to: points by verdict,
    the Pareto front, the QoS region."""
    df, q = view.chart_frame(), view.qos
    is_acc = metric == "accuracy"
    ycol, scale, ylabel = ("accuracy", 100, "accuracy (%)") if is_acc else ("energy_j", 1e3, "device energy (mJ)")
    xlabel = "latency (ms)" if view.statistic == "mean" else f"{view.statistic} latency (ms)"
    y_vals = df[ycol] * scale
    lo, hi = float(y_vals.min()), float(y_vals.max())
    flat = hi - lo < 1e-9
    pad = 1.0 if flat else 0.1 * (hi - lo)
    y_dom = [max(lo - pad, 0.0), hi + pad]  # no negative energy or accuracy
    if is_acc:
        y_dom[1] = min(y_dom[1], 100.0 + (1.0 if flat else 0.0))
    far = float(df["latency_qos_s"].max()) * 1e3
    # A point far past the limit would squeeze the QoS region to a sliver: the axis stops at
    # CLIP_LIMITS × the limit and such points sit on its edge as ▸ (their tooltip has the value).
    cap = CLIP_LIMITS * q.max_latency_ms if q.max_latency_ms else None
    clipped = cap is not None and far > cap
    x_max = (cap if clipped else max(far, q.max_latency_ms or 0)) * 1.08
    to_ms = [{"calculate": "datum.latency_qos_s * 1000", "as": "x_ms"},
             {"calculate": f"min(datum.x_ms, {x_max / 1.08 * 1.04 if clipped else x_max})", "as": "x"},
             {"calculate": f"datum.{ycol} * {scale}", "as": "y"}]
    x = quantitative("x", xlabel, scale={"domain": [0, x_max]})
    y = quantitative("y", ylabel, scale={"domain": y_dom, "zero": False})
    tip = [{"field": "label", "title": "point"}, quantitative("x_ms", xlabel, ".3g"), quantitative("y", ylabel, ".4g"),
           {"field": "pareto", "type": "nominal"}, {"field": "verdict"}]
    layers = []
    if q.max_latency_ms:
        y0, y1 = y_dom
        if is_acc and q.min_accuracy is not None:
            y0 = max(y0, q.min_accuracy * 100)
        if not is_acc and q.max_energy_mj is not None:
            y1 = min(y1, q.max_energy_mj)
        layers.append({"data": {"values": [{"x0": 0.0, "x1": q.max_latency_ms, "y0": y0, "y1": y1}]},
                       "mark": {"type": "rect", "color": "green", "opacity": 0.08},
                       "encoding": {"x": quantitative("x0"), "x2": {"field": "x1"}, "y": quantitative("y0"), "y2": {"field": "y1"}}})
    front = records(df[df["pareto"]].sort_values("latency_qos_s"))
    layers.append({"data": {"values": front}, "transform": to_ms,
                   "mark": {"type": "line", "color": "#d62728", "strokeWidth": 1.5},
                   "encoding": {"x": x, "y": y, "order": quantitative("x")}})
    layers.append({"data": {"values": front}, "transform": to_ms,
                   "mark": {"type": "point", "size": 300, "strokeWidth": 1.5, "color": "#d62728"},
                   "encoding": {"x": x, "y": y, "tooltip": tip}})
    status = ["recommended", "feasible", "infeasible"]
    # Drawn last so the recommended point sits on top of its neighbours.
    df = df.sort_values("status", key=lambda s: s.map({"infeasible": 0, "feasible": 1, "recommended": 2}))
    layers.append({"data": {"values": records(df)}, "transform": to_ms,
                   "mark": {"type": "point", "filled": True, "opacity": 0.9},
                   "encoding": {
                       "x": x, "y": y, "tooltip": tip,
                       "color": {"field": "status", "type": "nominal", "legend": {"orient": "bottom", "title": None,
                                                                               "symbolSize": 90},
                                 "scale": {"domain": status, "range": ["#d62728", "#1f77b4", "#999999"]}},
                       "size": {"field": "status", "type": "nominal", "legend": None,
                                "scale": {"domain": status, "range": [220, 70, 70]}},
                       "shape": {"field": "status", "type": "nominal", "legend": None,
                                 "scale": {"domain": status, "range": ["diamond", "circle", "cross"]}}}})
    if clipped:
        far_pts = df[df["latency_qos_s"] * 1e3 > cap]
        layers.append({"data": {"values": records(far_pts)}, "transform": to_ms,
                       "mark": {"type": "text", "text": "▸", "fontSize": 16, "dx": 8, "color": "#555"},
                       "encoding": {"x": x, "y": y, "tooltip": tip}})
    title = f"{ylabel.split(' (')[0].capitalize()} vs latency"
    if is_acc and flat:
        title += " (the same at every point)"
    if clipped:
        title += f" (▸: past {cap:g} ms)"
    return {"title": title, "height": 380, "layer": layers}


def compare_chart(a: Result, b: Result) -> dict:
    """Latency per split of A and B (:func:`whatif.compare_results`): one line per configuration,
    and per bottleneck (dashed differently) when several are compared."""
    cmp = whatif.compare_results(a, b)
    splits = list(dict.fromkeys(cmp.index.get_level_values("split")))
    bottlenecks = list(dict.fromkeys(cmp.index.get_level_values("bottleneck")))
    configs = ["A (pinned)", "B (current)"]
    long = pd.concat([pd.DataFrame({"split": cmp.index.get_level_values("split"),
                                    "bottleneck": cmp.index.get_level_values("bottleneck"), "config": label,
                                    "latency_ms": cmp[col].to_numpy()})
                      for label, col in zip(configs, ("A ms", "B ms"))])
    colour = {"field": "config", "type": "nominal", "legend": {"orient": "top", "title": None},
              "scale": {"domain": configs, "range": ["#ff7f0e", "#1f77b4"]}}
    x = {"field": "split", "type": "nominal", "sort": splits, "title": None,
         "axis": {"labelAngle": -60, "labelOverlap": False}}
    enc = {"x": x, "y": quantitative("latency_ms", "latency (ms)"), "color": colour,
           "tooltip": [{"field": "split"}, {"field": "bottleneck"}, {"field": "config"},
                       quantitative("latency_ms", "latency ms", ".3g")]}
    mark = {"type": "line", "point": True}
    if len(bottlenecks) > 1:  # plain lines: their legend then shows the dashes
        enc["strokeDash"] = {"field": "bottleneck", "type": "nominal", "sort": bottlenecks,
                             "legend": {"orient": "top", "title": "bottleneck"}}
        mark = {"type": "line", "strokeWidth": 1.5}
    layers = [{"data": {"values": records(long)}, "mark": mark, "encoding": enc}]
    limits = [{"config": label, "limit_ms": r.scenario.qos.max_latency_ms}
              for label, r in zip(configs, (a, b)) if r.scenario.qos.max_latency_ms]
    if limits:
        layers.append({"data": {"values": limits}, "mark": {"type": "rule", "strokeDash": [5, 4]},
                       "encoding": {"y": quantitative("limit_ms"), "color": colour}})
    return {"title": "Latency per split: A vs B (dashed rules: QoS limits)", "height": 320, "layer": layers}


def cui_accuracy_chart(cui_res, table: pd.DataFrame) -> dict | None:
    """log10 CUI (x) against the accuracy measured at each split (y, %), one colour per
    bottleneck; None when no split has both."""
    curve = cui_res.curve["log10_cui"]
    t = table.reset_index()
    t = t[(t["accuracy_source"] == "measured") & t["split"].isin(curve.index)]
    if t.empty:
        return None
    df = pd.DataFrame({"split": t["split"], "bottleneck": t["bottleneck"], "cui": curve.reindex(t["split"]).to_numpy(),
                       "accuracy": t["accuracy"].to_numpy(float) * 100})
    # One layer holding its data, as the other charts: Streamlit lifts top-level data out of a spec.
    return {"title": "CUI against measured accuracy", "height": 280, "layer": [{
        "data": {"values": records(df)},
        "mark": {"type": "point", "filled": True},
        "encoding": {"x": quantitative("cui", "log10 CUI", scale={"zero": False}),
                     "y": quantitative("accuracy", "measured accuracy (%)", scale={"zero": False}),
                     "color": {"field": "bottleneck", "type": "nominal"},
                     "tooltip": [{"field": "split", "type": "nominal"}, {"field": "bottleneck", "type": "nominal"},
                                 quantitative("cui", "log10 CUI", ".3f"), quantitative("accuracy", "accuracy %", ".2f")]}}]}
