"""The dashboard's tabs beside the ranking: early exit, the importance analysis (CUI) and the
A/B comparison."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from .. import whatif
from ..config.scenario import Scenario
from ..pipeline import Prepared
from ..report.view import View
from ..results.run import Result
from .cached import best_per_class, cui_png, importance, report_html
from .charts import compare_chart, cui_accuracy_chart, quantitative, records
from .tables import column_config, styled

# Above this many multiply-adds the CUI curve waits for a click (it runs a backward pass per batch).
AUTO_CUI_MACS = 1e9


def early_exit_tab(view: View) -> None:
    """Early exit: a slider for the threshold τ; at that τ, per exit split, how many requests
    exit, the accuracy, mean and p95 latency and the rank beside split computing at the same
    split; under it accuracy vs latency over every τ, the chosen one ringed."""
    from ..report.view import exit_table

    et = exit_table(view)
    ee = et[et["config"] == "EE"]
    taus = sorted(ee["tau"].unique())
    rec = view.recommended
    default = float(rec[2]) if rec is not None and len(rec) > 2 and rec[2] != "none" else taus[-1]
    tau = st.select_slider("Exit threshold τ (a request exits when its exit head's confidence ≥ τ)", options=taus,
                           value=default if default in taus else taus[-1], format_func=lambda v: f"{v:g}",
                           key=f"tau:{','.join(map(str, taus))}")
    pick = pd.concat([et[et["config"] != "EE"], ee[ee["tau"] == tau]])
    pick = pick.sort_values(["split", "config"], key=lambda s: s.map(
        {n: i for i, n in enumerate(dict.fromkeys(et["split"]))}) if s.name == "split" else s)
    shown = pd.DataFrame({
        "split": pick["split"], "config": pick["config"],
        "exits %": np.where(pick["config"] == "EE", pick["exit_rate"] * 100, np.nan),
        "exited acc %": pick["exit_accuracy"] * 100, "accuracy %": pick["accuracy"] * 100,
        "mean ms": pick["latency_s"] * 1e3, "p95 ms": pick["latency_p95_s"] * 1e3,
        "rank": pick["rank"]}).reset_index(drop=True)
    st.dataframe(styled(shown), column_config=column_config(shown), placeholder="—", hide_index=True)
    lat = "latency_p95_s" if et["latency_p95_s"].notna().any() else "latency_s"
    data = et.assign(ms=et["latency_s"] * 1e3, p95=et[lat] * 1e3, acc=et["accuracy"] * 100,
                     chosen=(et["config"] == "EE") & (et["tau"] == tau), tau=et["tau"].fillna(-1))
    layer = lambda x, title: {  # noqa: E731
        "mark": {"type": "line", "point": True},
        "encoding": {"x": quantitative(x, title), "y": quantitative("acc", "accuracy (%)", scale={"zero": False}),
                     "color": {"field": "split", "type": "nominal"},
                     "shape": {"field": "config", "type": "nominal"},
                     "size": {"condition": {"test": "datum.chosen", "value": 180}, "value": 40},
                     "tooltip": [{"field": "split"}, {"field": "config"}, {"field": "tau", "title": "τ (−1: SC)"},
                                 {"field": "exit_rate", "format": ".1%"}, {"field": "acc", "format": ".2f"},
                                 {"field": x, "format": ".3g"}]}}
    st.vega_lite_chart(spec={"data": {"values": records(data[["split", "config", "tau", "exit_rate", "acc", "ms",
                                                               "p95", "chosen"]])},
                             "hconcat": [layer("ms", "mean latency (ms)"),
                                         layer("p95", "p95 latency (ms)" if lat != "latency_s" else "latency (ms)")]})
    st.caption("EE: early exit (the exit head answers on the device when confident, the rest goes on as SC, split "
               "computing); enlarged: the points at the chosen τ. τ above every confidence would equal SC.")


def importance_tab(sc: Scenario, prep: Prepared, pkey: str, result: Result | None = None):
    """The CUI curve with nominations and per-class curves, and against ``result``'s measured
    accuracies; returns the CUIResult shown (or None)."""
    if sc.data.source == "none":
        st.info("The importance analysis needs data: this scenario has `data.source: none`.")
        return None
    res = prep.importance
    if res is None:
        macs = float(prep.profile["head_flops"].max())
        run = st.toggle("Compute the CUI curve", value=macs <= AUTO_CUI_MACS, key=f"cui:{pkey}",
                        help="one forward and one backward pass per batch of the scenario's data; cached")
        if not run:
            st.caption(f"{macs / 1e9:.3g} G multiply-adds per image: switch it on to run the analysis.")
            return None
        res = importance(pkey, sc, prep)
    classes = list(res.per_class.index)
    chosen = st.multiselect("Restrict to classes (I-SPLIT: the best split for a class subset)", classes,
                            key=f"classes:{pkey}")
    shown = res.for_classes(chosen) if chosen else res
    s = shown.settings
    title = (f"CUI: {s['method']}, target {s['target']}, channel {s['reduction']}, {s['aggregate']}"
             + (f", classes {chosen}" if chosen else ""))
    st.image(cui_png(pkey, tuple(chosen), shown, title))
    c1, c2 = st.columns(2)
    c1.markdown("**Nominated splits** (log10 CUI)")
    c1.dataframe(shown.nominated.set_index("rank"))
    c2.markdown("**Best split per class**")
    c2.dataframe(best_per_class(pkey, res))
    if result is not None:
        spec = cui_accuracy_chart(res, result.table)
        if spec is not None:
            st.markdown("**CUI against the accuracy measured under each bottleneck** (I-SPLIT's claim: the curve "
                        "predicts it; the README's accuracy fidelity says how well it does)")
            st.vega_lite_chart(spec=spec)
    return res


def compare_tab(sc: Scenario, res: Result, pinned: Result | None) -> None:
    c1, c2, _ = st.columns([2, 1, 3])
    if c1.button("Pin the current configuration as A", icon=":material/push_pin:", key="pin"):
        st.session_state["pinned"] = sc
        st.rerun()
    if pinned is not None and c2.button("Clear A", key="unpin"):
        st.session_state.pop("pinned", None)
        st.rerun()
    if pinned is None:
        st.info("Pin the current configuration as **A**, then move the controls: **B** is the live one.")
        return
    a, b = pinned, res
    diff = whatif.scenario_diff(a.scenario, b.scenario)
    st.markdown("**What differs**" + ("" if len(diff) else ": nothing (move a control)"))
    if len(diff):
        st.dataframe(diff)
    cols = st.columns(2)
    for col, r, tag in ((cols[0], a, "A (pinned)"), (cols[1], b, "B (current)")):
        with col:
            st.subheader(tag)
            v = View.of(r).verdict()
            (st.success if v.ok else st.warning)(v.headline)
    st.vega_lite_chart(spec=compare_chart(a, b))
    ab = whatif.compare_results(a, b)
    st.dataframe(styled(ab), column_config={c: st.column_config.NumberColumn(c) for c in ("A ms", "B ms", "Δ ms")},
                 placeholder="—")
    st.download_button("Download the A/B HTML report", data=lambda: ab_report(a, b),
                       file_name=f"{sc.name}-A-vs-B.html", mime="text/html", key="dl_ab")


def ab_report(a: Result, b: Result) -> str:
    """One HTML report of A and B (named ``<scenario>-A`` and ``<scenario>-B``)."""
    a_named = dataclasses.replace(a, scenario=a.scenario.model_copy(update={"name": f"{a.scenario.name}-A"}))
    b_named = dataclasses.replace(b, scenario=b.scenario.model_copy(update={"name": f"{b.scenario.name}-B"}))
    return report_html([a_named, b_named])
