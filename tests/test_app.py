"""The Streamlit what-if dashboard (app.py), driven headless by streamlit.testing.v1.AppTest.

Caches (st.cache_resource) live for the test process, so only the first test pays for the
model, the profile, the accuracy and the importance analysis of the demo.

Uploads: the file uploader and the "Paste YAML" text area both go through app.load_text;
AppTest (Streamlit 1.67) can set an uploaded file and type into the text area, so both
paths are tested.
"""

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import splitimpera as si  # noqa: E402

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


def _table(at):
    return _frame(at, "rank", "sent B", "verdict")


def test_demo_runs_and_ranks(app):
    _ok(app)
    assert "Recommended: `output`" in app.success[0].value
    t = _table(app)
    assert len(t) == 22 and t.index[0] == "output" and t["rank"].iloc[0] == 1
    assert {"latency ms", "uplink ms", "verdict", "Pareto"} <= set(t.columns)
    assert "p95 ms" not in t  # analytic engine by default
    assert "engine **analytic**" in app.caption[0].value
    # The CUI curve, its nominations and the best split per class are on the page.
    assert list(_frame(app, "split", "prominence", "kind")["split"]) == ["features_14", "features_4", "features_10"]
    assert len(_frame(app, "best_split", "n_images")) == 10


def test_bandwidth_control_changes_the_table(app, repo_root):
    before = _table(app)
    _widget(app.select_slider, "Uplink (Mbit/s)").set_value(1).run()
    _ok(app)
    after = _table(app)
    # Every split that sends something is slower over 1 Mbit/s than over LTE's 5.85.
    assert (after.loc[before.index, "uplink ms"] > before["uplink ms"]).all()
    assert after.loc["features_0", "uplink ms"] > 4 * before.loc["features_0", "uplink ms"]
    # The page shows what the library computes for the same overrides.
    res = si.run(si.load_scenario(repo_root / "scenarios/demo.yaml",
                                  {"analysis.engine": "analytic", "network.uplink_mbps": 1}))
    expect = res.table["latency_s"] * 1e3
    assert after["latency ms"].to_dict() == pytest.approx(expect.to_dict())
    assert list(after.index[after["rank"].notna()]) == list(res.table["rank"].dropna().sort_values().index)
    cli = next(c.value for c in app.code if c.value.startswith("splitimpera simulate"))
    assert cli == "splitimpera simulate scenarios/demo.yaml --set analysis.engine=analytic --set network.uplink_mbps=1"
    app.button(key="reset").click().run()  # back to the scenario's own values
    _ok(app)
    assert _table(app)["latency ms"].to_dict() == pytest.approx(before["latency ms"].to_dict())


def test_simpy_toggle_and_payload_dtype(app):
    _widget(app.toggle, "SimPy engine").set_value(True)
    _widget(app.radio, "Payload dtype (bytes only, accuracy unmeasured)").set_value("int8")
    app.run()
    _ok(app)
    t = _table(app)
    assert {"p95 ms", "device wait ms", "server wait ms", "mean ms"} <= set(t.columns)
    assert t.loc["features_0", "sent B"] == 65536 // 4  # int8: one byte per element
    assert "engine **simpy**" in app.caption[0].value


def test_bottleneck_and_coder_change_bytes_and_accuracy(app, repo_root):
    _widget(app.selectbox, "Bottleneck on the sent tensor").set_value("int2").run()
    _widget(app.radio, "Lossless coder").set_value("zstd").run()
    _ok(app)
    t = _table(app)
    ref = si.run(si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={
        "analysis.engine": "analytic", "bottleneck.name": "int2", "bottleneck.coder": "zstd"})).table
    assert t["sent B"].to_dict() == ref.loc[t.index, "bytes_sent"].to_dict()
    assert t["accuracy %"].to_dict() == pytest.approx((ref.loc[t.index, "accuracy"] * 100).to_dict(), abs=0.051)
    assert t["accuracy %"].nunique() > 1  # 2-bit codes cost accuracy at some splits
    cli = next(c.value for c in app.code if c.value.startswith("splitimpera simulate"))
    assert "--set bottleneck.name=int2 --set bottleneck.coder=zstd" in cli


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
    assert len(t) == 61 and "features_2_block_0_0" in t.index and "accuracy %" not in t
    assert any("mobilenet_v3_small" in c.value and "weights none" in c.value for c in app.caption)


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
    _widget(app.radio, "Payload dtype (bytes only, accuracy unmeasured)").set_value("float16").run()
    _ok(app)
    diff = _frame(app, "A", "B")
    assert diff.loc["workload.payload_dtype"].tolist() == ["float32", "float16"]
    cmp = _frame(app, "A ms", "B ms", "Δ ms")
    assert (cmp.loc["features_0", "Δ ms"] < 0) and cmp.loc["output", "Δ ms"] == pytest.approx(0, abs=1e-9)


def test_cli_dashboard_command(monkeypatch, repo_root):
    import os
    import sys

    from splitimpera import cli

    seen = {}
    monkeypatch.setattr(os, "execv", lambda path, args: seen.update(path=path, args=args))
    assert cli.main(["dashboard", "--server.port", "8599", "--server.headless", "true"]) == 0
    assert seen["path"] == sys.executable
    assert seen["args"] == [sys.executable, "-m", "streamlit", "run", str(repo_root / "app.py"),
                            "--server.fileWatcherType", "none", "--server.port", "8599", "--server.headless", "true"]
    assert cli.dashboard_command() == seen["args"][:7]
