"""splitimpera what-if dashboard (Streamlit): a thin shell over the public API.

Start it with ``splitimpera dashboard`` (or ``streamlit run app.py``). Pick a scenario from
``scenarios/``, upload one or paste one; the sidebar controls become ``overrides`` (dotted
keys, as CLI ``--set``) on that base scenario.

Caching: the heavy stages (model, trace, profile, importance, bytes and accuracy of every
design point) run once per ``prepared.prepare_key`` (the scenario's seed, model, data, analysis
and bottleneck settings: choosing other bottlenecks, the coder or nominal sizes measures
anew) through ``si.prepare`` in ``st.cache_resource``; every other control (device, server,
link, workload, QoS, engine) re-runs only ``si.evaluate``: the latency model and the QoS ranking.

Nothing is decided here: the verdict, the ranked rows, the chart data and the best split per
bottleneck come from :class:`splitimpera.report.view.View` (the terminal and the HTML report
render the same one), the choice lists from the scenario schema (``whatif.schema_choices``).

Errors are one-line messages in the page (``st.error``), never tracebacks. The upload path
goes through :func:`load_text`, which both the file uploader and the "Paste YAML" text area
call; the tests drive it through both (``tests/test_app.py``).
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

import splitimpera as si
from splitimpera import whatif
from splitimpera.dashboard.cached import evaluated, prepared, report_html
from splitimpera.dashboard.charts import breakdown_chart, tradeoff_chart
from splitimpera.dashboard.controls import choose_base, controls
from splitimpera.dashboard.tables import ranked_table
from splitimpera.dashboard.tabs import compare_tab, early_exit_tab, importance_tab
from splitimpera.errors import UserError
from splitimpera.plain import human
from splitimpera.prepared import prepare_key
from splitimpera.report.view import View

log = logging.getLogger("splitimpera.app")

# --------------------------------------------------------------------------------------------
# Views: what the page shows of a result comes from report.view.View (the terminal and the
# HTML report render the same one); here it is only laid out.


def verdict(view: View) -> None:
    """:meth:`View.verdict`: the headline in a box, the details (or the closest points and
    what would have to change) under it."""
    v = view.verdict()
    if v.ok:
        st.success(v.headline, icon=":material/check_circle:")
        if v.details:
            st.caption(" ".join(v.details))
        return
    st.warning(v.headline, icon=":material/block:")
    if v.details:  # e.g. a percentile limit on the analytic engine
        st.caption(" ".join(v.details))
    lines = [f"- `{label}`: {reason}" + (f" — to pass: {'; or '.join(tips)}" if tips else "")
             for label, reason, tips in v.closest]
    st.markdown("\n".join(["Closest, and what would have to change (first-order estimates, other terms held fixed):",
                           *lines]))


def engine_gap(view: View, analytic: si.Result) -> str:
    """A sentence where the simulated latency of the recommended point differs from the
    analytic engine's (one request, no queueing); "" where they agree within 1 %."""
    rec = view.recommended
    r, a = view.table.loc[rec], analytic.table.loc[rec, "latency_s"]
    s = r["latency_s"]
    if not (pd.notna(a) and pd.notna(s)) or abs(s - a) <= 0.01 * max(abs(a), 1e-12):
        return ""
    waits = float(r.get("device_wait_s", 0.0) or 0.0) + float(r.get("server_wait_s", 0.0) or 0.0)
    why = (f"queueing ({human(waits, 's')} of waits at the device and the server) and the transport's random "
           "losses and retransmissions" if waits > 0 else "the transport's random losses and retransmissions "
           "and the arrivals' timing")
    return (f"{view.label(rec)}: SimPy {human(s, 's')} mean vs analytic {human(a, 's')}: the simulation adds {why}; "
            "the analytic engine sees one request alone.")


def metrics(view: View, pinned: View | None) -> None:
    t, rec = view.table, view.recommended
    what = "design point" if view.multi else "split"
    cols = st.columns(4)
    a_rec = None if pinned is None else pinned.recommended
    ref = None if a_rec is None else pinned.table.loc[a_rec]
    if rec is None:
        cols[0].metric(f"Recommended {what}", "none")
    else:
        r = t.loc[rec]
        cols[0].metric(f"Recommended {what}", view.label(rec),
                       delta=None if pinned is None else ("same as A" if rec == a_rec else
                                                          f"A: {'none' if a_rec is None else pinned.label(a_rec)}"),
                       delta_color="off", delta_arrow="off")
        for col, label, c, unit in ((cols[1], view.latency_name.capitalize(), "latency_qos_s", "s"),
                                    (cols[2], "Device energy", "energy_j", "J")):
            v, ref_v = r[c], None if ref is None else ref[c]
            d = None if ref_v is None else v - ref_v
            same = d is not None and abs(d) < 5e-4 * max(abs(ref_v), 1e-12)
            col.metric(label, human(v, unit),
                       delta=None if d is None else ("same as A" if same else
                                                     f"{'+' if d > 0 else ''}{human(d, unit)} vs A"),
                       delta_color="off" if same else "inverse", delta_arrow="off" if same else "auto")
    cols[3].metric(f"{what.capitalize()}s meeting the QoS", f"{int(t['feasible'].sum())} of {len(t)}")


# --------------------------------------------------------------------------------------------
# Page


def main() -> None:
    st.set_page_config(page_title="splitimpera · what-if", layout="wide")
    st.title("splitimpera · what-if")
    with st.sidebar:
        st.header("Scenario")
        base = choose_base()
        if base is None:
            st.info("Upload a scenario file, or paste one and press *Use this YAML*.")
            return
        sc0 = base.build({})
        if st.button("Reset controls", key="reset", help="back to the scenario's own values"):
            st.session_state["resets"] = st.session_state.get("resets", 0) + 1
            st.rerun()
        sc, overrides, simpy = controls(base, sc0)

    shape = "x".join(map(str, sc.model.input_shape)) if sc.model.input_shape else "default input"
    names = whatif.bottleneck_names(sc)
    st.caption(f"**{sc.name}**: {sc.model.name} ({shape}) on **{sc.device.name}** ─[{sc.network.name}, "
               f"{sc.network.uplink_mbps:.3g} Mbit/s up, RTT {sc.network.rtt_ms:g} ms]→ **{sc.server.name}**; "
               f"{sc.workload.num_devices} device(s) at {sc.workload.rate_hz:g} Hz; "
               f"bottleneck{'s' if len(names) > 1 else ''} **{', '.join(names)}**"
               + (" (nominal sizes)" if sc.bottleneck.nominal else "") + f", {sc.bottleneck.coder} coder; "
               f"engine **{sc.analysis.engine}**" + ("" if simpy else " (one request, no queueing)")
               + ("" if sc.analysis.engine == sc0.analysis.engine else
                  f"; `simulate` ranks this scenario with **{sc0.analysis.engine}**, so its numbers differ: "
                  "switch under *Engine* in the sidebar"))
    pkey = prepare_key(sc)
    prep = prepared(pkey, sc)
    yaml_text = sc.to_yaml()
    res = evaluated(yaml_text, pkey, sc, prep)
    view = View.of(res)
    pinned_sc = st.session_state.get("pinned")
    pinned = None
    if pinned_sc is not None:
        pk = prepare_key(pinned_sc)
        pinned = evaluated(pinned_sc.to_yaml(), pk, pinned_sc, prepared(pk, pinned_sc))

    verdict(view)
    metrics(view, None if pinned is None else View.of(pinned))
    if simpy and view.recommended is not None:
        sc_a = sc.model_copy(update={"analysis": sc.analysis.model_copy(update={"engine": "analytic"})})
        gap = engine_gap(view, evaluated(sc_a.to_yaml(), pkey, sc_a, prep))
        if gap:
            st.caption(gap)
    shown: dict = {}  # filled below by the importance tab; read when the report is clicked
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button("Edited scenario (YAML)", data=yaml_text, file_name=f"{sc.name}.yaml",
                       mime="application/x-yaml", icon=":material/download:", key="dl_yaml")
    # Deferred: the report (plots rendered by the library) is built only when clicked.
    c2.download_button("HTML report", data=lambda: report_html([res], shown.get("cui")),
                       file_name=f"{sc.name}-report.html", mime="text/html", icon=":material/download:",
                       key="dl_report")
    has_ee = "config" in res.table.columns and (res.table["config"] == "EE").any()
    tabs = st.tabs(["Ranking", "Accuracy and energy vs latency", "Importance (CUI)", "Compare A/B", "Scenario",
                    *(["Early exit (τ)"] if has_ee else [])])
    with tabs[0]:
        ranked_table(res, view)
        points = view.chart_frame()
        if view.multi:
            best = "best split per bottleneck"
            which = st.selectbox("Latency breakdown of", [best, *view.bottlenecks],
                                 key=f"breakdown:{','.join(view.bottlenecks)}")
            points = points[points["best"]] if which == best else points[points["bottleneck"] == which]
        st.vega_lite_chart(spec=breakdown_chart(view, points))
    with tabs[1]:
        c1, c2 = st.columns(2)
        if res.table["accuracy"].notna().any():
            c1.vega_lite_chart(spec=tradeoff_chart(view, "accuracy"))
        else:
            c1.info("No accuracy: the scenario has no labelled data.")
        c2.vega_lite_chart(spec=tradeoff_chart(view, "energy"))
        st.caption(f"Red rings and line: the Pareto front (accuracy, latency, energy); shaded green: the QoS "
                   f"region; hover a point for its {'design point' if view.multi else 'split'}.")
    with tabs[2]:
        shown["cui"] = importance_tab(sc, prep, pkey, res)
    with tabs[3]:
        compare_tab(sc, res, pinned)
    with tabs[4]:
        label = base.label if base.path is not None else f"<{base.label}>"
        st.markdown("**The same run on the command line**")
        st.code(whatif.cli_command(label, overrides), language="bash")
        with st.expander("Edited scenario, fully resolved"):
            st.code(yaml_text, language="yaml")
    if has_ee:
        with tabs[5]:
            early_exit_tab(view)


def run_page() -> None:
    try:
        main()
    except UserError as e:
        st.error(e.line())
    except Exception as e:  # never a traceback in the page; the log keeps it
        log.exception("dashboard error")
        first = str(e).splitlines()[0] if str(e) else ""
        st.error(f"internal error ({type(e).__name__}): {first}")


if __name__ == "__main__":  # streamlit run (and the repo's app.py) run it as __main__; an import only defines
    run_page()
