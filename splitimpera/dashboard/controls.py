"""The dashboard's sidebar: the base scenario (a bundled file, an uploaded file or pasted text)
and the controls that become its ``overrides`` (dotted keys, as CLI ``--set``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from .. import whatif
from ..accuracy.bottlenecks import get_bottleneck, list_bottlenecks
from ..config.hardware import list_devices, list_networks
from ..config.scenario import Scenario, load_scenario
from ..errors import UserError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"  # the bundled ones (package data)
UPLOAD, PASTE = "Upload a file…", "Paste YAML…"
DEFAULT_SCENARIO = "demo.yaml"
# Offered in the model box besides the scenario's own (any torchvision name can be typed in).
MODELS = ["digits_cnn", "resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "vgg16", "densenet121"]
UPLINK_STEPS = [0.1, 0.2, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]


@dataclass(frozen=True)
class Base:
    """Where the scenario comes from; :meth:`build` applies overrides and validates."""

    label: str          # for the command line: a path, or the uploaded name
    source: str         # named in error messages
    path: Path | None = None
    data: dict | None = None

    def build(self, overrides: dict) -> Scenario:
        if self.path is not None:
            return load_scenario(self.path, overrides)
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


def _index(options: list, value) -> int:
    return options.index(value) if value in options else 0


# A line under each latency engine (one the schema adds shows without).
ENGINE_CAPTIONS = {"analytic": "closed form: one request, no queueing; instant",
                   "simpy": "discrete-event simulation: queues, contention, jitter, traces, percentiles"}


def controls(base: Base, sc0: Scenario) -> tuple[Scenario, dict, bool]:
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
    devices = list(dict.fromkeys([sc0.device.name, *list_devices()]))
    servers = list(dict.fromkeys([sc0.server.name, *list_devices(include="server*"), *list_devices()]))
    networks = list(dict.fromkeys([sc0.network.name, *list_networks()]))
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
    names = list(dict.fromkeys([*list_bottlenecks(), *own]))
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
    described = [f"**{b}**: {get_bottleneck(b).describe()}" for b in chosen if b != "none"]
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
