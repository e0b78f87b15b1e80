"""splitimpera what-if dashboard (Streamlit): a thin shell over the public API.

Start it with ``splitimpera dashboard`` (or ``streamlit run app.py``). Pick a scenario from
``scenarios/``, upload one or paste one; the sidebar controls become ``overrides`` (dotted
keys, as CLI ``--set``) on that base scenario.

Caching: the heavy stages (model, trace, profile, importance, bytes and accuracy of every
design point) run once per ``whatif.prepare_key`` (the scenario's seed, model, data, analysis
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

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import splitimpera as si
from splitimpera import whatif
from splitimpera.errors import UserError
from splitimpera.accuracy.predictors import is_predicted
from splitimpera.plain import human, human_bytes, num
from splitimpera.report.view import (STAGE_COLOURS, STAGE_LABELS, View, accuracy_footnote, accuracy_text,
                                     compute_error_sentence)

log = logging.getLogger("splitimpera.app")

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"  # the bundled ones (package data)
UPLOAD, PASTE = "Upload a file…", "Paste YAML…"
DEFAULT_SCENARIO = "demo.yaml"
# Offered in the model box besides the scenario's own (any torchvision name can be typed in).
MODELS = ["digits_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "vgg16", "densenet121"]
UPLINK_STEPS = [0.1, 0.2, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]
# Above this many multiply-adds the CUI curve waits for a click (it runs a backward pass per batch).
AUTO_CUI_MACS = 1e9


# --------------------------------------------------------------------------------------------
# Cached API calls


@st.cache_resource(max_entries=8, show_spinner="Loading the model, profiling every split, measuring accuracy…")
def prepared(key: str, _scenario: si.Scenario) -> si.Prepared:
    """``si.prepare``, once per prepare key (seed, model, data, analysis settings)."""
    return si.prepare(_scenario)


@st.cache_resource(max_entries=64, show_spinner=False)
def evaluated(scenario_yaml: str, key: str, _scenario: si.Scenario, _prep: si.Prepared) -> si.Result:
    """``si.evaluate``: latency and QoS ranking, once per fully resolved scenario."""
    return si.evaluate(_scenario, _prep)


@st.cache_resource(max_entries=8, show_spinner="I-SPLIT importance analysis: Grad-CAM at every split…")
def importance(key: str, _scenario: si.Scenario, _prep: si.Prepared):
    from splitimpera.accuracy.stage import analyze

    return analyze(_scenario, _prep.traced)


@st.cache_resource(max_entries=8, show_spinner=False)
def best_per_class(key: str, _res) -> pd.DataFrame:
    return _res.best_per_class()


@st.cache_data(max_entries=32, show_spinner=False)
def cui_png(key: str, classes: tuple, _res, title: str) -> bytes:
    """``report.plots.plot_cui`` (curve, nominations, per-class curves) as PNG bytes."""
    from splitimpera.report.plots import cui_title, plot_cui

    return plot_cui(_res.curve, _res.nominated.to_dict("records"), title or cui_title(_res), _res.per_class,
                    _res.settings.get("class_names"))


def report_html(results: list[si.Result], cui=None) -> str:
    """The HTML report of the results, rendered from memory (the CUI beside the last)."""
    from splitimpera.report.html import render_html
    from splitimpera.results.folder import SavedAnalysis

    if cui is not None:
        saved = SavedAnalysis(cui=cui.curve, nominations={"nominated": cui.nominated.to_dict("records")})
        results = [*results[:-1], dataclasses.replace(results[-1], analysis=saved)]
    return render_html([View.of(r) for r in results])


# --------------------------------------------------------------------------------------------
# The base scenario: a bundled file, an uploaded file or pasted text


@dataclass(frozen=True)
class Base:
    """Where the scenario comes from; :meth:`build` applies overrides and validates."""

    label: str          # for the command line: a path, or the uploaded name
    source: str         # named in error messages
    path: Path | None = None
    data: dict | None = None

    def build(self, overrides: dict) -> si.Scenario:
        if self.path is not None:
            return si.load_scenario(self.path, overrides)
        from splitimpera.config.scenario import scenario_from_dict

        return scenario_from_dict(self.data, source=self.source, overrides=overrides)

    @property
    def ident(self) -> str:
        text = str(self.path) if self.path is not None else repr(self.data)
        return hashlib.sha1(f"{self.source}\0{text}".encode()).hexdigest()[:10]


def load_text(name: str, text: str | bytes) -> Base:
    """An uploaded or pasted scenario: YAML text → validated base (UserError on any problem).

    Relative paths in it are relative to the folder the dashboard runs in.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError("not a text file (expected UTF-8 YAML)", source=name) from None
    data, _ = whatif.scenario_from_text(text, source=name)
    return Base(label=name, source=name, data=data)


def choose_base() -> Base | None:
    files = sorted(p.name for p in SCENARIOS.glob("*.yaml"))
    options = files + [UPLOAD, PASTE]
    asked = st.query_params.get("scenario")
    if asked is not None and asked not in options and f"{asked}.yaml" in files:
        # A bundled name, as the command line takes it: the select box starts on its file.
        asked = st.query_params["scenario"] = st.session_state["scenario"] = f"{asked}.yaml"
    if asked is not None and asked not in options and "bad_url_scenario" not in st.session_state:
        st.session_state["bad_url_scenario"] = asked  # the select box falls back to the default: say so
    choice = st.selectbox("Scenario", options, index=options.index(DEFAULT_SCENARIO) if DEFAULT_SCENARIO in files
                          else 0, key="scenario", bind="query-params",
                          help="a file from scenarios/, or your own (also in the URL: ?scenario=lte_drive)")
    bad = st.session_state.get("bad_url_scenario")
    if bad is not None and choice == (DEFAULT_SCENARIO if DEFAULT_SCENARIO in files else options[0]):
        st.error(f"?scenario={bad}: no such scenario in scenarios/ (there: {', '.join(files)}); showing {choice}.")
    elif bad is not None:
        del st.session_state["bad_url_scenario"]  # the user chose another: the message is done
    if choice == UPLOAD:
        up = st.file_uploader("Scenario YAML", type=["yaml", "yml"], key="upload")
        return None if up is None else load_text(up.name, up.getvalue())
    if choice == PASTE:
        # A form: the text goes with the click even when the text area has not lost focus yet.
        with st.form("paste", border=False):
            text = st.text_area("Scenario YAML", key="paste_yaml", height=220,
                                placeholder="name: mine\nmodel: {name: digits_cnn}\ndevice: rpi4\n…")
            if st.form_submit_button("Use this YAML", key="use_paste"):
                st.session_state["pasted"] = text
        pasted = st.session_state.get("pasted")
        return None if not (pasted or "").strip() else load_text("<pasted>", pasted)
    path = SCENARIOS / choice
    if (Path("scenarios") / choice).is_file() and (Path("scenarios") / choice).samefile(path):
        path = Path("scenarios") / choice  # in the repo: its scenarios/ link to the bundled files
    try:  # messages and the command line name the file as the user would type it
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    return Base(label=str(path), source=str(path), path=path)


# --------------------------------------------------------------------------------------------
# Controls → overrides


def _index(options: list, value) -> int:
    return options.index(value) if value in options else 0


# A line under each latency engine (one the schema adds shows without).
ENGINE_CAPTIONS = {"analytic": "closed form: one request, no queueing; instant",
                   "simpy": "discrete-event simulation: queues, contention, jitter, traces, percentiles"}


def controls(base: Base, sc0: si.Scenario) -> tuple[si.Scenario, dict, bool]:
    """Sidebar controls; returns the edited scenario, its overrides and whether SimPy ranks."""
    scope = f"{base.ident}:{st.session_state.get('resets', 0)}"
    choices = whatif.schema_choices

    def k(name: str, *extra) -> str:
        return ":".join([name, scope, *map(str, extra)])

    st.header("Model and hardware")
    models = list(dict.fromkeys([sc0.model.name, *MODELS]))
    model = st.selectbox("Model", models, index=0, key=k("model"), accept_new_options=True,
                         help="Another model runs with random weights (zoo models: bundled ones) and no data: "
                              "latency, bytes and energy do not depend on the weights. Type any torchvision name.")
    devices = list(dict.fromkeys([sc0.device.name, *si.list_devices()]))
    servers = list(dict.fromkeys([sc0.server.name, *si.list_devices(include="server*"), *si.list_devices()]))
    networks = list(dict.fromkeys([sc0.network.name, *si.list_networks()]))
    c1, c2 = st.columns(2)
    device = c1.selectbox("Device", devices, index=0, key=k("device"))
    server = c2.selectbox("Server", servers, index=0, key=k("server"))
    network = st.selectbox("Network", networks, index=0, key=k("network"))
    over = {**whatif.switch_model(sc0, model), **whatif.changed(sc0, {"device": device, "server": server,
                                                                     "network": network})}
    sc1 = base.build(over)
    if "model.name" in over:
        st.caption(f"`{model}`: " + ", ".join(f"{key.split('.', 1)[1]} {v if v is not None else 'unset'}"
                                              for key, v in over.items() if key.startswith(("model.", "data."))))

    net = sc1.network
    st.header("Link")
    nk = (net.name, network)
    replay = False
    if net.trace_csv is not None:
        replay = st.toggle("Replay the rate trace", value=True, key=k("trace", *nk),
                           help="The simulation follows the trace (the analytic engine sees its mean rate). "
                                "Off: a constant uplink you choose.")
    steps = sorted(set(UPLINK_STEPS) | {float(net.uplink_mbps)})
    uplink = st.select_slider("Uplink (Mbit/s)", options=steps, value=float(net.uplink_mbps), key=k("uplink", *nk),
                              format_func=lambda v: f"{v:g}", disabled=replay,
                              help=f"{net.name}: {net.uplink_mbps:g} Mbit/s" + (" (trace mean)" if replay else ""))
    rtt = st.slider("RTT (ms)", 0.0, max(500.0, 2 * net.rtt_ms), float(net.rtt_ms), step=1.0, format="%.0f",
                    key=k("rtt", *nk))
    loss = st.slider("Packet loss (%)", 0.0, max(20.0, net.loss * 100), float(round(net.loss * 100, 3)), step=0.1,
                     format="%.1f", key=k("loss", *nk))

    wl, q = sc1.workload, sc1.qos
    st.header("Workload")
    c1, c2 = st.columns(2)
    n_dev = c1.number_input("Devices", min_value=1, max_value=1000, value=int(wl.num_devices), step=1,
                            key=k("devices"), help="devices sharing the link and the server")
    rate = c2.number_input("Requests/s per device", min_value=0.0, value=float(wl.rate_hz), step=1.0, format="%g",
                           key=k("rate"))
    c1, c2 = st.columns(2)
    arrivals = choices("workload.arrival")
    arrival = c1.radio("Arrivals", arrivals, index=_index(arrivals, wl.arrival), horizontal=True, key=k("arrival"),
                       help="request arrivals per device (the SimPy engine; the analytic one sees one request)")
    places = choices("workload.result_at")
    result_at = c2.radio("Result used at the", places, index=_index(places, wl.result_at), horizontal=True,
                         key=k("result_at"), help="device: the prediction travels back (adds the downlink)")

    bn = sc1.bottleneck
    has_data = sc1.data.source != "none"
    st.header("Design points")
    own = whatif.bottleneck_names(sc1)
    names = list(dict.fromkeys([*si.list_bottlenecks(), *own]))
    chosen = st.multiselect(
        "Bottlenecks on the sent tensor", names, default=own, key=k("bottlenecks"),
        help="Every (split, bottleneck) pair is a design point, ranked jointly. Accuracy and bytes are measured on "
             "the scenario's data at every split (cached; the autoencoder trains once per split, about a minute "
             "on the demo)." if has_data else
             "No data (data.source: none): sizes only, accuracy taken as the full model's.")
    # Without data nothing can be measured: sizes are nominal whatever the box says.
    nominal = st.checkbox("Nominal sizes (no measurement)", value=bn.nominal or not has_data,
                          key=k("nominal", has_data), disabled=not has_data,
                          help="each bottleneck's nominal payload bytes, accuracy taken as the full model's: "
                               "nothing measured, no data needed (bottleneck.nominal)")
    coders = choices("bottleneck.coder")
    coder = st.radio("Lossless coder", coders, index=_index(coders, "raw" if nominal else bn.coder),
                     horizontal=True, key=k("coder", nominal), disabled=nominal,
                     help="nominal sizes are uncoded" if nominal else
                          "zstd, or run-length coding of the codes; measured on real activations")
    described = [f"**{b}**: {si.get_bottleneck(b).describe()}" for b in chosen if b != "none"]
    if described:
        st.caption("; ".join(described) + ".")

    st.header("QoS")
    labelled = sc1.data.source in ("digits", "letters", "imagefolder")
    c1, c2 = st.columns(2)
    lat = c1.number_input("Max latency (ms)", min_value=0.0, value=q.max_latency_ms, step=5.0, format="%g",
                          key=k("maxlat"), placeholder="none")
    stats = choices("qos.latency_statistic")
    stat = c2.selectbox("on the", stats, index=_index(stats, q.latency_statistic), key=k("stat"),
                        help="percentiles need the SimPy engine; the analytic one-request latency stands for all")
    c1, c2 = st.columns(2)
    acc = c1.number_input("Min accuracy (%)", min_value=0.0, max_value=100.0,
                          value=None if q.min_accuracy is None else q.min_accuracy * 100, step=0.5, format="%g",
                          key=k("minacc", labelled), placeholder="none", disabled=not labelled,
                          help=None if labelled else "needs labelled data (data.source: digits, letters or imagefolder)")
    energy = c2.number_input("Max energy (mJ)", min_value=0.0, value=q.max_energy_mj, step=10.0, format="%g",
                             key=k("maxenergy"), placeholder="none")
    objectives = choices("qos.objective")
    objective = st.selectbox("Objective", objectives, index=_index(objectives, q.objective), key=k("objective"))

    st.header("Engine")
    engines = choices("analysis.engine")
    # The dashboard starts on the analytic engine whatever the scenario says: re-ranking is instant.
    engine = st.radio("Latency engine", engines, index=_index(engines, "analytic"), key=k("engine"),
                      captions=[ENGINE_CAPTIONS.get(e, "") for e in engines])
    with st.expander("More overrides (as --set)"):
        extra_text = st.text_area("key=value, one per line", key=k("extra"), height=90,
                                  placeholder="workload.num_requests=500\nqos.max_tx_bytes=10000")
    values = {"network.rtt_ms": rtt, "network.loss": loss / 100, "workload.num_devices": int(n_dev),
              "workload.rate_hz": rate, "workload.arrival": arrival, "workload.result_at": result_at,
              "qos.max_latency_ms": lat, "bottleneck.coder": "raw" if nominal else coder,
              "bottleneck.nominal": nominal if has_data else bn.nominal or any(b != "none" for b in chosen),
              "qos.latency_statistic": stat, "qos.max_energy_mj": energy, "qos.objective": objective,
              "analysis.engine": engine}
    if labelled:
        values["qos.min_accuracy"] = None if acc is None else acc / 100
    if replay:
        pass  # the trace sets the rate
    elif net.trace_csv is not None:  # a constant link instead of the trace: name both rates
        over.update({"network.trace_csv": None, "network.uplink_mbps": uplink,
                     "network.downlink_mbps": net.downlink_mbps})
    else:
        values["network.uplink_mbps"] = uplink
    from splitimpera.config.scenario import parse_overrides

    over.update(whatif.bottleneck_choice(sc1, chosen))
    over.update(whatif.changed(sc1, values))
    over.update(parse_overrides([line for line in (extra_text or "").splitlines() if line.strip()]))
    return base.build(over), over, engine == "simpy"


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


def _ms_cell(v) -> str:
    """A time in ms as the terminal writes it (``report.text``): 3 significant digits, ``—`` for
    nothing (0, no value), ``∞`` for unbounded (an overloaded resource)."""
    if isinstance(v, str):
        return v
    return "—" if v is None or pd.isna(v) or v == 0 else num(v)


def _num_cell(v) -> str:
    return v if isinstance(v, str) else num(v)


def _bytes_cell(v) -> str:
    return "—" if v is None or pd.isna(v) else human_bytes(v)


def _cell_formats(df: pd.DataFrame) -> dict:
    """Column → formatter of the cells' text, the terminal's: bytes ``65.5 kB``, times ``38.5``,
    ``—`` and ``∞``, energies and percentages to 3 significant digits. Only the text changes:
    the values stay numbers, so a column sorts by value."""
    fmt = {}
    for c in df.columns:
        if df[c].dtype == object:  # already text (an accuracy with its band and mark)
            continue
        if c == "sent B":
            fmt[c] = _bytes_cell
        elif c == "Δ ms" or c == "± ms":
            fmt[c] = _num_cell
        elif c.endswith(" ms"):
            fmt[c] = _ms_cell
        elif c.endswith((" mJ", " %")):
            fmt[c] = _num_cell
    return fmt


def _styled(df: pd.DataFrame, styler=None):
    """``df`` (or its ``styler``) with the terminal's number formats (:func:`_cell_formats`).
    Streamlit shows a Styler's text for a column whose config sets no ``format``, which is why
    :func:`_column_config` sets none for these columns."""
    return (df.style if styler is None else styler).format(_cell_formats(df), na_rep="—")


def _column_config(df: pd.DataFrame) -> dict:
    """Column widths and kinds; the number formats are the Styler's (:func:`_styled`)."""
    fmt = {c: st.column_config.NumberColumn(c, width="small") for c in _cell_formats(df)}
    if "sent B" in df.columns:
        fmt["sent B"] = st.column_config.NumberColumn("sent", width="small")
    fmt["rank"] = st.column_config.NumberColumn("rank", format="%d", width="small")
    fmt["verdict"] = st.column_config.TextColumn("verdict", width="medium")
    if "Pareto" in df.columns:
        fmt["Pareto"] = st.column_config.CheckboxColumn("Pareto", width="small")
    return fmt


# The ranking's columns that fit a laptop's pane; "All columns" shows the rest.
NARROW_COLUMNS = ("rank", "config", "exits %", "sent B", "device ms", "uplink ms", "server ms", "latency ms", "mean ms",
                  "p50 ms", "p95 ms", "p99 ms", "± ms", "tie", "accuracy %", "energy mJ", "verdict")


def ranked_table(res: si.Result, view: View) -> None:
    """:func:`whatif.ranked_view`, the recommended point highlighted; the bottleneck column only
    when several are ranked (with several, first the best split of each)."""
    if view.multi:
        st.markdown("**Best split per bottleneck** (its joint rank; the closest split when none meets the QoS)")
        best = whatif.best_view(res)
        st.dataframe(_styled(best), column_config=_column_config(best), placeholder="—")
        st.markdown("**All design points, ranked jointly**")
    df = whatif.ranked_view(res)
    rec = view.recommended
    if not view.multi:
        df = df.droplevel("bottleneck")
        rec = None if rec is None else (rec[0] if len(rec) == 2 else (rec[0], rec[2]))
    predicted = "accuracy from" in df.columns and df["accuracy from"].map(is_predicted).any()
    if predicted:  # like the terminal and the report: the band, and * predicted, not measured
        band = df["accuracy ± %"] / 100 if "accuracy ± %" in df.columns else [None] * len(df)
        df["accuracy %"] = [("" if pd.isna(a) else accuracy_text(a / 100, src, unit="", band=b))
                            for a, src, b in zip(df["accuracy %"], df["accuracy from"], band)]
    wide = st.toggle("All columns", key="wide_ranking", help="the queueing waits, downlink, link load, frames lost, "
                     "FLOPs share, where each accuracy comes from and the Pareto front")
    order = None if wide else [c for c in df.columns if c in NARROW_COLUMNS]
    styled = _styled(df, df.style.apply(
        lambda row: ["background-color: #fff4d6; font-weight: 600" if row.name == rec else
                     ("color: #888" if row["verdict"] != "ok" else "") for _ in row], axis=1))
    config = _column_config(df)
    if df["accuracy %"].dtype == object if "accuracy %" in df.columns else False:
        config["accuracy %"] = st.column_config.TextColumn("accuracy %", width="small")
    st.dataframe(styled, column_config=config, height=min(38 + 35 * len(df), 820), placeholder="—",
                 column_order=order)
    if predicted:
        st.caption(accuracy_footnote(df["accuracy from"]))
    sc = res.scenario
    modes = res.meta.get("compute") or {}
    err = compute_error_sentence(view, modes, sc.device.name, sc.server.name)
    if modes.get("device"):
        st.caption(f"Compute: {sc.device.name} {modes['device']}; {sc.server.name} {modes['server']}. {err}")
    st.caption(f"Feasible {'design points' if view.multi else 'splits'} by rank (highlighted: the recommended one), "
               "then the others, closest first. Split: the torch.fx node after which the model is cut. "
               "FLOPs: 1 per multiply-add.")




def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (NaN → null) for a Vega-Lite spec."""
    return json.loads(df.to_json(orient="records"))


def _q(field: str, title: str | None = None, fmt: str | None = None, **extra) -> dict:
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
    tip = [{"field": "label", "title": "point"}, {"field": "stage"}, _q("ms", "stage ms", ".3g"),
           _q("total_ms", "latency ms", ".3g"), {"field": "verdict"}]
    layers = [{
        "data": {"values": _records(points)},
        "transform": [{"fold": stages, "as": ["stage", "s"]}, {"calculate": "datum.s * 1000", "as": "ms"},
                      {"calculate": "datum.latency_s * 1000", "as": "total_ms"},
                      {"calculate": f"indexof({json.dumps(stages)}, datum.stage)", "as": "i"}],
        "mark": {"type": "bar", "clip": True},
        "encoding": {
            "x": _x_points(order), "y": _q("ms", "latency (ms)", stack="zero", **y_scale),
            "color": {"field": "stage", "type": "nominal", "sort": stages, "legend": {"orient": "top", "title": None},
                      "scale": {"domain": stages, "range": [STAGE_COLOURS[v] for v in stages]}},
            "order": _q("i"), "tooltip": tip}}]
    if len(cut):
        layers.append({"data": {"values": [{"label": lbl, "top": cap} for lbl in cut["label"]]},
                       "mark": {"type": "text", "text": "▲", "dy": 8, "fontSize": 14, "color": "#d62728"},
                       "encoding": {"x": _x_points(order), "y": _q("top")}})
    if lim:
        layers.append({"data": {"values": [{"limit_ms": lim}]},
                       "mark": {"type": "rule", "color": "black", "strokeDash": [5, 4]},
                       "encoding": {"y": _q("limit_ms"), "tooltip": [_q("limit_ms", "QoS limit ms")]}})
    if view.latency_column != "latency_s":  # the bars are means; the limit and the ranking use this statistic
        layers.append({"data": {"values": _records(points)},
                       "transform": [{"calculate": "datum.latency_qos_s * 1000", "as": "stat_ms"}],
                       "mark": {"type": "tick", "color": "black", "thickness": 2},
                       "encoding": {"x": _x_points(order), "y": _q("stat_ms"),
                                    "tooltip": [{"field": "label", "title": "point"},
                                                _q("stat_ms", f"{view.statistic} ms", ".3g")]}})
    rec = points[points["status"] == "recommended"]
    if len(rec):
        layers.append({"data": {"values": _records(rec)},
                       "transform": [{"calculate": "datum.latency_s * 1000", "as": "total_ms"}],
                       "mark": {"type": "text", "text": "★", "dy": -10, "fontSize": 18, "color": "#d62728"},
                       "encoding": {"x": _x_points(order), "y": _q("total_ms")}})
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
    x = _q("x", xlabel, scale={"domain": [0, x_max]})
    y = _q("y", ylabel, scale={"domain": y_dom, "zero": False})
    tip = [{"field": "label", "title": "point"}, _q("x_ms", xlabel, ".3g"), _q("y", ylabel, ".4g"),
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
                       "encoding": {"x": _q("x0"), "x2": {"field": "x1"}, "y": _q("y0"), "y2": {"field": "y1"}}})
    front = _records(df[df["pareto"]].sort_values("latency_qos_s"))
    layers.append({"data": {"values": front}, "transform": to_ms,
                   "mark": {"type": "line", "color": "#d62728", "strokeWidth": 1.5},
                   "encoding": {"x": x, "y": y, "order": _q("x")}})
    layers.append({"data": {"values": front}, "transform": to_ms,
                   "mark": {"type": "point", "size": 300, "strokeWidth": 1.5, "color": "#d62728"},
                   "encoding": {"x": x, "y": y, "tooltip": tip}})
    status = ["recommended", "feasible", "infeasible"]
    # Drawn last so the recommended point sits on top of its neighbours.
    df = df.sort_values("status", key=lambda s: s.map({"infeasible": 0, "feasible": 1, "recommended": 2}))
    layers.append({"data": {"values": _records(df)}, "transform": to_ms,
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
        layers.append({"data": {"values": _records(far_pts)}, "transform": to_ms,
                       "mark": {"type": "text", "text": "▸", "fontSize": 16, "dx": 8, "color": "#555"},
                       "encoding": {"x": x, "y": y, "tooltip": tip}})
    title = f"{ylabel.split(' (')[0].capitalize()} vs latency"
    if is_acc and flat:
        title += " (the same at every point)"
    if clipped:
        title += f" (▸: past {cap:g} ms)"
    return {"title": title, "height": 380, "layer": layers}


def compare_chart(a: si.Result, b: si.Result) -> dict:
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
    enc = {"x": x, "y": _q("latency_ms", "latency (ms)"), "color": colour,
           "tooltip": [{"field": "split"}, {"field": "bottleneck"}, {"field": "config"},
                       _q("latency_ms", "latency ms", ".3g")]}
    mark = {"type": "line", "point": True}
    if len(bottlenecks) > 1:  # plain lines: their legend then shows the dashes
        enc["strokeDash"] = {"field": "bottleneck", "type": "nominal", "sort": bottlenecks,
                             "legend": {"orient": "top", "title": "bottleneck"}}
        mark = {"type": "line", "strokeWidth": 1.5}
    layers = [{"data": {"values": _records(long)}, "mark": mark, "encoding": enc}]
    limits = [{"config": label, "limit_ms": r.scenario.qos.max_latency_ms}
              for label, r in zip(configs, (a, b)) if r.scenario.qos.max_latency_ms]
    if limits:
        layers.append({"data": {"values": limits}, "mark": {"type": "rule", "strokeDash": [5, 4]},
                       "encoding": {"y": _q("limit_ms"), "color": colour}})
    return {"title": "Latency per split: A vs B (dashed rules: QoS limits)", "height": 320, "layer": layers}


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
    st.dataframe(_styled(shown), column_config=_column_config(shown), placeholder="—", hide_index=True)
    lat = "latency_p95_s" if et["latency_p95_s"].notna().any() else "latency_s"
    data = et.assign(ms=et["latency_s"] * 1e3, p95=et[lat] * 1e3, acc=et["accuracy"] * 100,
                     chosen=(et["config"] == "EE") & (et["tau"] == tau), tau=et["tau"].fillna(-1))
    layer = lambda x, title: {  # noqa: E731
        "mark": {"type": "line", "point": True},
        "encoding": {"x": _q(x, title), "y": _q("acc", "accuracy (%)", scale={"zero": False}),
                     "color": {"field": "split", "type": "nominal"},
                     "shape": {"field": "config", "type": "nominal"},
                     "size": {"condition": {"test": "datum.chosen", "value": 180}, "value": 40},
                     "tooltip": [{"field": "split"}, {"field": "config"}, {"field": "tau", "title": "τ (−1: SC)"},
                                 {"field": "exit_rate", "format": ".1%"}, {"field": "acc", "format": ".2f"},
                                 {"field": x, "format": ".3g"}]}}
    st.vega_lite_chart(spec={"data": {"values": _records(data[["split", "config", "tau", "exit_rate", "acc", "ms",
                                                               "p95", "chosen"]])},
                             "hconcat": [layer("ms", "mean latency (ms)"),
                                         layer("p95", "p95 latency (ms)" if lat != "latency_s" else "latency (ms)")]})
    st.caption("EE: early exit (the exit head answers on the device when confident, the rest goes on as SC, split "
               "computing); enlarged: the points at the chosen τ. τ above every confidence would equal SC.")


def importance_tab(sc: si.Scenario, prep: si.Prepared, pkey: str, result: si.Result | None = None):
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
        "data": {"values": _records(df)},
        "mark": {"type": "point", "filled": True},
        "encoding": {"x": _q("cui", "log10 CUI", scale={"zero": False}),
                     "y": _q("accuracy", "measured accuracy (%)", scale={"zero": False}),
                     "color": {"field": "bottleneck", "type": "nominal"},
                     "tooltip": [{"field": "split", "type": "nominal"}, {"field": "bottleneck", "type": "nominal"},
                                 _q("cui", "log10 CUI", ".3f"), _q("accuracy", "accuracy %", ".2f")]}}]}


def compare_tab(sc: si.Scenario, res: si.Result, pinned: si.Result | None) -> None:
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
    st.dataframe(_styled(ab), column_config={c: st.column_config.NumberColumn(c) for c in ("A ms", "B ms", "Δ ms")},
                 placeholder="—")
    st.download_button("Download the A/B HTML report", data=lambda: ab_report(a, b),
                       file_name=f"{sc.name}-A-vs-B.html", mime="text/html", key="dl_ab")


def ab_report(a: si.Result, b: si.Result) -> str:
    """One HTML report of A and B (named ``<scenario>-A`` and ``<scenario>-B``)."""
    a_named = dataclasses.replace(a, scenario=a.scenario.model_copy(update={"name": f"{a.scenario.name}-A"}))
    b_named = dataclasses.replace(b, scenario=b.scenario.model_copy(update={"name": f"{b.scenario.name}-B"}))
    return report_html([a_named, b_named])


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
    pkey = whatif.prepare_key(sc)
    prep = prepared(pkey, sc)
    yaml_text = sc.to_yaml()
    res = evaluated(yaml_text, pkey, sc, prep)
    view = View.of(res)
    pinned_sc = st.session_state.get("pinned")
    pinned = None
    if pinned_sc is not None:
        pk = whatif.prepare_key(pinned_sc)
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
