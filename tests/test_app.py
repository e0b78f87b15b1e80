"""The Streamlit what-if dashboard (app.py), driven headless by streamlit.testing.v1.AppTest.

Caches (st.cache_resource) live for the test process, so only the first test pays for the
model, the profile, the accuracy and the importance analysis of the demo.

Uploads: the file uploader and the "Paste YAML" text area both go through app.load_text;
AppTest (Streamlit 1.67) can set an uploaded file and type into the text area, so both
paths are tested.
"""

import html
import typing

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import splitimpera as si  # noqa: E402
from splitimpera.report.view import View  # noqa: E402

TIMEOUT = 120  # s; the first run imports torch and prepares the demo

BAD_SCENARIO = b"""name: bad
model: {name: digits_cnn}
device: rpi4
server: server_t4
network: lte
workload: {num_devices: 0}
"""


@pytest.fixture()
def app(repo_root):
    at = AppTest.from_file(str(repo_root / "app.py"), default_timeout=TIMEOUT)
    at.run()
    return at


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _widget(elements, label):
    hits = [w for w in elements if w.label == label]
    assert len(hits) == 1, [w.label for w in elements]
    return hits[0]


def _frame(at, *columns):
    """The first table on the page with these columns (AppTest does not expose dataframe keys)."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {columns}")


def _shown(at, *columns):
    """The first table with these columns as the browser shows it: the values (numbers) and the
    text of every cell. Streamlit shows a Styler's text in a column whose config sets no number
    ``format`` of its own (which would win): such a column's text is the Styler's, else None."""
    import json

    from streamlit import dataframe_util

    for el in at.dataframe:
        if set(columns) <= set(el.value.columns):
            styled = el.proto.arrow_data.styler.display_values
            text = dataframe_util.convert_arrow_bytes_to_pandas_df(styled) if styled else None
            config = json.loads(el.proto.columns or "{}")
            own_format = {c for c, cfg in config.items() if (cfg.get("type_config") or {}).get("format")}
            if text is not None:
                text = text.drop(columns=[c for c in text.columns if c in own_format])
            return el.value, text
    raise AssertionError(f"no table with columns {columns}")


def _table(at):
    """The ranking (the best-per-bottleneck table has no Pareto column)."""
    return _frame(at, "rank", "sent", "verdict", "Pareto")


def _demo(repo_root, **over):
    """What the page shows, computed by the library: the demo with the dashboard's analytic engine."""
    return si.run(si.load_scenario(repo_root / "scenarios/demo.yaml", {"analysis.engine": "analytic", **over}))


def _cli(at):
    return next(c.value for c in at.code if c.value.startswith("splitimpera simulate"))


def _bottlenecks(at, names):
    _widget(at.multiselect, "Bottlenecks on the sent tensor").set_value(names).run()
    _ok(at)


def test_demo_runs_and_ranks(app, repo_root):
    _ok(app)
    res = _demo(repo_root)
    assert [s.value for s in app.success] == [View.of(res).verdict().headline]
    assert app.success[0].value.startswith("Recommended: output — latency ")
    t = _table(app)
    assert len(t) == 22 and t.index.name == "split" and t.index[0] == "output" and t["rank"].iloc[0] == 1
    assert {"latency ms", "RTT/2 ms", "transmit ms", "verdict", "Pareto"} <= set(t.columns)
    assert "p95 ms" not in t  # analytic engine by default
    assert "engine **analytic**" in app.caption[0].value and "bottleneck **none**" in app.caption[0].value
    with pytest.raises(AssertionError):  # one bottleneck: no best-per-bottleneck table
        _frame(app, "best split", "feasible splits")
    # The CUI curve, its nominations and the best split per class are on the page.
    assert list(_frame(app, "split", "prominence", "kind")["split"]) == ["features_14", "features_4", "features_10"]
    assert len(_frame(app, "best_split", "n_images")) == 10


def test_tables_show_numbers_as_the_terminal_does(app):
    """Bytes as ``65.5 kB``, an unbounded latency as ``∞``, nothing as ``—`` (the terminal's
    formats), while the values stay numbers (the columns sort by value)."""
    from splitimpera.plain import num
    from splitimpera.plain import human_bytes

    _widget(app.number_input, "Requests/s per device").set_value(100.0).run()  # 65.5 kB at 100 Hz: over LTE's uplink
    _ok(app)
    value, text = _shown(app, "rank", "sent", "verdict", "Pareto")
    assert value["sent"].dtype.kind in "iu" and value.loc["features_0", "sent"] == 65536
    assert value.loc["features_0", "latency ms"] == float("inf")
    assert text is not None and {"sent", "latency ms", "device ms", "energy mJ"} <= set(text.columns)
    assert text.loc["features_0", "sent"] == "65.5 kB" and text.loc["output", "sent"] == "8 B"
    assert text.loc["features_0", "latency ms"] == "∞" and text.loc["features_0", "transmit ms"] == "∞"
    assert text.loc["input", "device ms"] == "—"  # nothing computed on the device
    assert list(text["sent"]) == [human_bytes(v) for v in value["sent"]]
    finite = value["latency ms"] < float("inf")
    assert list(text.loc[finite, "latency ms"]) == [num(v) for v in value.loc[finite, "latency ms"]]
    assert "Infinity" not in text.to_string() and "65536" not in text.to_string()


def test_bandwidth_control_changes_the_table(app, repo_root):
    before = _table(app)
    _widget(app.select_slider, "Uplink (Mbit/s)").set_value(1).run()
    _ok(app)
    after = _table(app)
    # Every split that sends something is slower over 1 Mbit/s than over LTE's 5.85.
    assert (after.loc[before.index, "transmit ms"] > before["transmit ms"]).all()
    assert after.loc["features_0", "transmit ms"] > 4 * before.loc["features_0", "transmit ms"]
    # The page shows what the library computes for the same overrides.
    res = _demo(repo_root, **{"network.uplink_mbps": 1})
    expect = res.for_bottleneck("none")["latency_s"] * 1e3
    assert after["latency ms"].to_dict() == pytest.approx(expect.to_dict())
    ranked = res.table["rank"].dropna().sort_values().index.get_level_values("split")
    assert list(after.index[after["rank"].notna()]) == list(ranked)
    assert _cli(app) == ("splitimpera simulate scenarios/demo.yaml --set analysis.engine=analytic "
                         "--set network.uplink_mbps=1")
    app.button(key="reset").click().run()  # back to the scenario's own values
    _ok(app)
    assert _table(app)["latency ms"].to_dict() == pytest.approx(before["latency ms"].to_dict())


def test_simpy_engine_and_nominal_sizes(app):
    _widget(app.radio, "Latency engine").set_value("simpy")
    _widget(app.checkbox, "Nominal sizes (no measurement)").set_value(True)
    _widget(app.multiselect, "Bottlenecks on the sent tensor").set_value(["int8"])
    app.run()
    _ok(app)
    coder = _widget(app.radio, "Lossless coder")
    assert coder.disabled and coder.value == "raw"  # nominal sizes are uncoded
    t = _table(app)
    assert {"p95 ms", "dev wait ms", "srv wait ms", "mean ms"} <= set(t.columns)
    # int8: one byte per element, plus its quantisation range (8 B); nothing measured.
    assert t.loc["features_0", "sent"] == 65536 // 4 + 8
    assert set(t["accuracy from"].drop("output")) == {"full model (nominal)"}  # output: the prediction is sent
    assert "engine **simpy**" in app.caption[0].value and "(nominal sizes)" in app.caption[0].value
    assert "--set bottleneck.name=int8 --set bottleneck.nominal=true" in _cli(app)
    # Where SimPy and the analytic engine differ, a sentence says by how much, and why.
    gap = [c.value for c in app.caption if "vs analytic" in c.value]
    assert len(gap) == 1 and "SimPy" in gap[0]
    first = t[t["rank"] == 1].iloc[0]
    import re

    simpy_ms = float(re.search(r"SimPy ([0-9.]+) ms", gap[0]).group(1))
    assert simpy_ms == pytest.approx(first["mean ms"], rel=5e-3)


def test_bottleneck_and_coder_change_bytes_and_accuracy(app, repo_root):
    _bottlenecks(app, ["int2"])
    _widget(app.radio, "Lossless coder").set_value("zstd").run()
    _ok(app)
    t = _table(app)
    ref = _demo(repo_root, **{"bottleneck.name": "int2", "bottleneck.coder": "zstd"}).for_bottleneck("int2")
    assert t["sent"].to_dict() == ref.loc[t.index, "bytes_sent"].to_dict()
    assert t["accuracy"].to_dict() == pytest.approx((ref.loc[t.index, "accuracy"] * 100).to_dict(), abs=0.051)
    assert t["accuracy"].nunique() > 1  # 2-bit codes cost accuracy at some splits
    assert {"bottleneck.name=int2", "bottleneck.coder=zstd"} <= set(_cli(app).split(" --set ")[1:])


def test_two_bottlenecks_are_ranked_jointly(app, repo_root):
    _bottlenecks(app, ["none", "int8"])
    res = _demo(repo_root, **{"bottleneck.name": ["none", "int8"]})
    t = _table(app)
    assert t.index.names == ["split", "bottleneck"] and len(t) == 44
    assert set(t.index.get_level_values("bottleneck")) == {"none", "int8"}
    assert t["latency ms"].to_dict() == pytest.approx((res.table["latency_s"] * 1e3).to_dict())
    assert list(t.index[t["rank"].notna()]) == list(res.table["rank"].dropna().sort_values().index)
    assert t.loc[("features_0", "int8"), "sent"] < t.loc[("features_0", "none"), "sent"]
    best = _frame(app, "best split", "feasible splits")
    expect = res.best_per_bottleneck()
    assert list(best.index) == ["none", "int8"] == list(expect.index)
    assert best["best split"].to_dict() == expect["split"].to_dict()
    assert best["feasible splits"].to_dict() == expect["feasible_splits"].to_dict()
    rec = res.recommended
    assert app.success[0].value.startswith(f"Recommended: {rec.split} · {rec.bottleneck} — ")
    metric = _widget(app.metric, "Recommended design point")
    assert metric.value == f"{rec.split} · {rec.bottleneck}"
    assert "bottlenecks **none, int8**" in app.caption[0].value
    assert "--set 'bottleneck.name=[none, int8]'" in _cli(app)
    # The breakdown offers each bottleneck and the best split of each.
    assert _widget(app.selectbox, "Latency breakdown of").options == ["best split per bottleneck", "none", "int8"]
    # Back to one bottleneck: the earlier table again (another prepare entry, not a stale one).
    _bottlenecks(app, ["none"])
    assert _table(app).index.name == "split" and len(_table(app)) == 22


def test_no_bottleneck_is_a_message(app):
    _widget(app.multiselect, "Bottlenecks on the sent tensor").set_value([]).run()
    assert not app.exception
    (err,) = [e.value for e in app.error]
    assert err.startswith("scenarios/demo.yaml (--set bottleneck.name): bottleneck.name: "), err


def test_one_verdict_for_terminal_html_and_dashboard(app, repo_root, tmp_path):
    """The page's verdict is View.verdict(), which the terminal and the HTML report print too."""
    from splitimpera.report.html import render_report
    from splitimpera.report.text import render_result

    _bottlenecks(app, ["none", "int4"])
    res = _demo(repo_root, **{"bottleneck.name": ["none", "int4"]})
    headline = View.of(res).verdict().headline
    assert headline.startswith("Recommended: ") and " · " in headline
    assert app.success[0].value == headline
    assert headline in render_result(res).splitlines()
    assert html.escape(headline) in render_report([res.save(tmp_path / "ok")])
    # And when nothing meets the QoS.
    _widget(app.number_input, "Max latency (ms)").set_value(1.0).run()
    assert not app.exception and not app.success
    res = _demo(repo_root, **{"bottleneck.name": ["none", "int4"], "qos.max_latency_ms": 1})
    v = View.of(res).verdict()
    assert not v.ok and v.headline == "No design point meets the QoS (44 evaluated)."
    assert app.warning[0].value == v.headline
    assert v.headline in render_result(res)
    assert html.escape(v.headline) in render_report([res.save(tmp_path / "none")])
    closest = next(m.value for m in app.markdown if m.value.startswith("Closest"))
    assert all(f"`{label}`: {reason}" in closest for label, reason, _ in v.closest)


def test_choice_lists_are_the_schema_literals(app):
    from splitimpera.config.scenario import AnalysisSpec, BottleneckSpec, QoSSpec, WorkloadSpec

    def literal(model, field):
        return list(typing.get_args(model.model_fields[field].annotation))

    assert _widget(app.selectbox, "Objective").options == literal(QoSSpec, "objective")
    assert _widget(app.selectbox, "on the").options == literal(QoSSpec, "latency_statistic")
    assert _widget(app.radio, "Arrivals").options == literal(WorkloadSpec, "arrival")
    assert _widget(app.radio, "Result used at the").options == literal(WorkloadSpec, "result_at")
    assert _widget(app.radio, "Latency engine").options == literal(AnalysisSpec, "engine")
    assert _widget(app.radio, "Lossless coder").options == literal(BottleneckSpec, "coder")
    assert _widget(app.multiselect, "Bottlenecks on the sent tensor").options == si.list_bottlenecks()
    assert not [w for w in app.radio if "dtype" in w.label.lower()]  # workload.payload_dtype is gone


def test_chart_specs_are_valid_vega_lite(app, repo_root):
    """The charts are hand-written Vega-Lite specs: they must validate against the schema
    Streamlit's Altair ships (a bad spec is a blank chart in the browser, not an error here)."""
    import json
    from pathlib import Path

    import altair
    import jsonschema

    _bottlenecks(app, ["none", "int8"])
    schema = json.loads(next(Path(altair.__file__).parent.glob("vegalite/v*/schema/vega-lite-schema.json"))
                        .read_text())
    specs = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    assert len(specs) >= 3  # the breakdown and the two trade-offs
    for spec in specs:
        jsonschema.validate(spec, schema)
    breakdown = next(s for s in specs if s["title"].startswith("Latency breakdown"))
    values = breakdown["layer"][0]["data"]["values"]
    # By default the breakdown shows the best split of each bottleneck, labelled split · bottleneck.
    best = View.of(_demo(repo_root, **{"bottleneck.name": ["none", "int8"]})).best_per_bottleneck()
    assert [v["label"] for v in values] == [f"{r['split']} · {b}" for b, r in best.iterrows()]
    assert all(v["best"] for v in values)


def test_trace_link_and_model_switch(app):
    app.selectbox(key="scenario").set_value("lte_drive.yaml").run()
    _ok(app)
    uplink = _widget(app.select_slider, "Uplink (Mbit/s)")
    assert uplink.disabled  # the trace sets the rate
    _widget(app.toggle, "Replay the rate trace").set_value(False).run()
    _widget(app.select_slider, "Uplink (Mbit/s)").set_value(2).run()
    _ok(app)
    cli = next(c.value for c in app.code if c.value.startswith("splitimpera simulate"))
    assert "--set network.trace_csv= --set network.uplink_mbps=2" in cli
    # Another model: random weights, its own input shape, no data (shown under the model box).
    _widget(app.selectbox, "Model").set_value("mobilenet_v3_small").run()
    _ok(app)
    t = _table(app)
    assert len(t) == 61 and "features_2_block_0_0" in t.index and "accuracy" not in t
    assert any("mobilenet_v3_small" in c.value and "weights none" in c.value for c in app.caption)
    # No data: nothing can be measured, so bottlenecks are sizes only (and the box says so).
    nominal = _widget(app.checkbox, "Nominal sizes (no measurement)")
    assert nominal.value and nominal.disabled
    assert "bottleneck.nominal" not in _cli(app)  # nothing but none sent: no need to say it
    _bottlenecks(app, ["none", "int8"])
    t = _table(app)
    assert len(t) == 122 and (t.xs("int8", level="bottleneck")["sent"] < t.xs("none", level="bottleneck")["sent"]
                              ).loc["features_2_block_0_0"]
    assert "--set bottleneck.nominal=true" in _cli(app)


def test_invalid_upload_shows_the_error_line(app):
    app.selectbox(key="scenario").set_value("Upload a file…").run()
    _ok(app)
    app.file_uploader(key="upload").set_value(("bad.yaml", BAD_SCENARIO, "application/x-yaml")).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "bad.yaml: workload.num_devices: Input should be greater than or equal to 1 (got 0)"]


def test_pasted_yaml_errors_and_success(app):
    app.selectbox(key="scenario").set_value("Paste YAML…").run()
    app.text_area(key="paste_yaml").input("name: [oops\nmodel: x\n")
    app.button(key="use_paste").click().run()
    assert not app.exception
    assert len(app.error) == 1 and app.error[0].value.startswith("<pasted>: not valid YAML: line 2")
    good = BAD_SCENARIO.decode().replace("num_devices: 0", "num_devices: 2")
    app.text_area(key="paste_yaml").input(good)
    app.button(key="use_paste").click().run()
    _ok(app)
    assert "Recommended" in app.success[0].value
    assert any(c.value.startswith("splitimpera simulate '<<pasted>>'") for c in app.code)


def test_impossible_value_is_a_message(app):
    _widget(app.number_input, "Requests/s per device").set_value(0.0).run()
    assert not app.exception
    (err,) = [e.value for e in app.error]
    assert err.startswith("scenarios/demo.yaml (--set workload.rate_hz): workload.rate_hz: Input should be greater "
                          "than 0"), err


def test_compare_two_configurations(app):
    app.button(key="pin").click().run()
    _widget(app.checkbox, "Nominal sizes (no measurement)").set_value(True).run()
    _bottlenecks(app, ["fp16"])
    diff = _frame(app, "A", "B")
    assert diff.loc["bottleneck.name"].tolist() == ["none", "fp16"]
    assert diff.loc["bottleneck.nominal"].tolist() == ["False", "True"]
    cmp = _frame(app, "A ms", "B ms", "Δ ms")
    # One bottleneck each, not the same one: compared split by split.
    assert set(cmp.index.get_level_values("bottleneck")) == {"none → fp16"}
    by_split = cmp.droplevel("bottleneck")
    assert by_split.loc["features_0", "Δ ms"] < 0 and by_split.loc["output", "Δ ms"] == pytest.approx(0, abs=1e-9)
    # Both verdicts come from View.verdict().
    assert [s.value.split(" — ")[0] for s in app.success][-2:] == ["Recommended: output", "Recommended: output"]


def test_compare_design_points_and_download(app, repo_root):
    from splitimpera.dashboard.tabs import ab_report

    _bottlenecks(app, ["none", "int8"])
    app.button(key="pin").click().run()
    _widget(app.select_slider, "Uplink (Mbit/s)").set_value(1).run()
    _ok(app)
    cmp = _frame(app, "A ms", "B ms", "Δ ms")
    assert cmp.index.names == ["split", "bottleneck"] and len(cmp) == 44
    assert (cmp["Δ ms"] > 0).all()  # a slower uplink, and every point sends something
    assert cmp.loc[("features_0", "int8"), "Δ ms"] > 10 * cmp.loc[("output", "none"), "Δ ms"]
    # The A/B report the download button builds: both configurations, both verdicts.
    a = _demo(repo_root, **{"bottleneck.name": ["none", "int8"]})
    b = _demo(repo_root, **{"bottleneck.name": ["none", "int8"], "network.uplink_mbps": 1})
    page = ab_report(a, b)
    assert "demo-A" in page and "demo-B" in page
    for r in (a, b):
        assert html.escape(View.of(r).verdict().headline) in page


def test_cli_dashboard_command(monkeypatch, repo_root):
    import os
    import sys

    from splitimpera import cli

    seen = {}
    monkeypatch.setattr(os, "execv", lambda path, args: seen.update(path=path, args=args))
    assert cli.main(["dashboard", "--server.port", "8599", "--server.headless", "true"]) == 0
    assert seen["path"] == sys.executable
    assert seen["args"] == [sys.executable, "-m", "streamlit", "run", str(repo_root / "splitimpera/dashboard/app.py"),
                            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
                            "--browser.gatherUsageStats", "false", "--server.port", "8599", "--server.headless", "true"]
    assert cli.dashboard_command() == seen["args"][:11]


def test_an_unknown_scenario_in_the_url_is_said(repo_root):
    at = AppTest.from_file(str(repo_root / "app.py"), default_timeout=TIMEOUT)
    at.query_params["scenario"] = "nope.yaml"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("nope.yaml" in e.value and "no such scenario" in e.value for e in at.error)


def test_ranking_fits_the_pane_unless_asked(app):
    narrow = _table(app)  # all columns travel; the ones shown are chosen by column_order
    assert {"link load %", "device FLOPs %"} <= set(narrow.columns)
    _widget(app.toggle, "All columns").set_value(True).run()
    _ok(app)


def test_charts_keep_the_limit_in_view_and_energy_non_negative(repo_root):
    from splitimpera.dashboard.charts import CLIP_LIMITS, breakdown_chart, tradeoff_chart

    sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                          {"data.source": "none", "qos.min_accuracy": None, "analysis.engine": "analytic",
                           "network.uplink_mbps": 0.05, "workload.rate_hz": 0.01})
    view = View.of(si.run(sc))
    far = view.table["latency_s"].max() * 1e3
    lim = sc.qos.max_latency_ms
    assert far > CLIP_LIMITS * lim  # a split far off the chart
    spec = tradeoff_chart(view, "energy")
    layers = spec["layer"]
    x_dom = next(lay["encoding"]["x"]["scale"]["domain"] for lay in layers
                 if "scale" in lay["encoding"].get("x", {}))
    assert lim < x_dom[1] <= CLIP_LIMITS * lim * 1.1  # the limit stays a visible part of the axis
    y_dom = next(lay["encoding"]["y"]["scale"]["domain"] for lay in layers
                 if "scale" in lay["encoding"].get("y", {}))
    assert y_dom[0] >= 0
    assert "▸" in spec["title"]
    bars = breakdown_chart(view, view.chart_frame())
    assert bars["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0, CLIP_LIMITS * lim]
    assert "▲" in bars["title"]


def test_early_exit_tab_has_a_threshold_slider(app, repo_root):
    """demo_exit: the configurations are named (LC, RC, SC, EE) in the ranking, and the early
    exit tab's τ slider picks the EE points the library computed at that τ."""
    _widget(app.selectbox, "Scenario").set_value("demo_exit.yaml").run()
    _ok(app)
    res = si.run(si.load_scenario(repo_root / "scenarios/demo_exit.yaml", {"analysis.engine": "analytic"}))
    t = _table(app)
    assert set(t["config"]) == {"LC", "RC", "SC", "EE"}
    assert [s.value for s in app.success] == [View.of(res).verdict().headline]
    slider = _widget(app.select_slider, "Exit threshold τ (a request exits when its exit head's confidence ≥ τ)")
    slider.set_value(0.8).run()
    _ok(app)
    shown = _frame(app, "exits %", "exited acc %", "p95 ms")
    ee = shown[shown["config"] == "EE"].set_index("split")
    for split, r in ee.iterrows():
        lib = res.table.loc[(split, "none", repr(0.8))]
        assert r["exits %"] == pytest.approx(lib["exit_rate"] * 100)
        assert r["mean ms"] == pytest.approx(lib["latency_s"] * 1e3)
    assert len(ee) == 3


def test_a_bundled_name_in_the_url_needs_no_suffix(repo_root):
    at = AppTest.from_file(str(repo_root / "app.py"), default_timeout=TIMEOUT)
    at.query_params["scenario"] = "lte_drive"
    at.run()
    _ok(at)
    assert _widget(at.selectbox, "Scenario").value == "lte_drive.yaml"
    assert "**lte_drive**" in at.caption[0].value


def test_the_banner_says_when_simulate_ranks_with_another_engine(app, repo_root):
    engine = si.load_scenario(repo_root / "scenarios/demo.yaml").analysis.engine
    other = next(e for e in ("simpy", "analytic") if e != engine)
    _widget(app.radio, "Latency engine").set_value(other)
    app.run()
    _ok(app)
    assert f"`simulate` ranks this scenario with **{engine}**" in app.caption[0].value
    _widget(app.radio, "Latency engine").set_value(engine)
    app.run()
    assert "`simulate` ranks" not in app.caption[0].value


def test_stages_have_one_colour_in_the_report_and_the_dashboard(app, repo_root, tmp_path, monkeypatch):
    """The HTML report's breakdown bars and the dashboard's breakdown chart give each stage the
    same colour, whichever stages a result shows."""
    import json

    import matplotlib.axes

    from splitimpera.report.figures import plot_breakdown
    from splitimpera.results import load_result

    spec = next(json.loads(c.proto.spec) for c in app.get("vega_lite_chart")
                if json.loads(c.proto.spec)["title"].startswith("Latency breakdown"))
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    dashboard = dict(zip(scale["domain"], scale["range"]))
    assert "uplink propagation" in dashboard

    folder = _demo(repo_root).save(tmp_path)
    report = {}
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, *a, label=None, color=None, **kw):
        report[label] = color
        return real_bar(self, *a, label=label, color=color, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    plot_breakdown(View.of(load_result(folder)))
    assert "uplink propagation" in report
    shared = set(report) & set(dashboard)
    assert shared and {k: report[k] for k in shared} == {k: dashboard[k] for k in shared}
