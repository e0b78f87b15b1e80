"""What-if helpers behind the dashboard (splitimpera.whatif)."""

import shlex

import numpy as np
import pytest

import splitimpera as si
from splitimpera import whatif
from splitimpera.config.scenario import parse_overrides

DEMO_TEXT = """
name: mine
model: {name: digits_cnn}
data: {source: digits}
device: rpi4
server: server_t4
network: lte
workload: {rate_hz: 10}
qos: {max_latency_ms: 90, min_accuracy: 0.95}
"""


@pytest.fixture(scope="module")
def demo(repo_root):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", {"analysis.engine": "analytic"})


@pytest.fixture(scope="module")
def prepared(demo):
    return si.prepare(demo)


def test_prepare_key_ignores_what_evaluate_reads(demo, repo_root):
    path = repo_root / "scenarios/demo.yaml"
    key = whatif.prepare_key(demo)
    # Engine, network, device, workload and QoS only change evaluate(): same key.
    for over in ({"analysis.engine": "simpy"}, {"network.uplink_mbps": 1}, {"device": "jetson_nano"},
                 {"workload.payload_dtype": "int8", "qos.max_latency_ms": 10}):
        assert whatif.prepare_key(si.load_scenario(path, over)) == key
    # What prepare() reads changes it.
    for over in ({"seed": 1}, {"data.limit": 50}, {"model.weights": "none"}, {"analysis.cui.method": "layercam"}):
        assert whatif.prepare_key(si.load_scenario(path, over)) != key


def test_changed_keeps_only_real_changes(demo):
    values = {"network": "lte", "network.uplink_mbps": 5.85, "network.rtt_ms": 70, "qos.min_accuracy": 0.95,
              "workload.payload_dtype": "int8", "qos.max_latency_ms": 50.0, "qos.max_energy_mj": None,
              "device": "jetson_nano"}
    assert whatif.changed(demo, values) == {"workload.payload_dtype": "int8", "qos.max_latency_ms": 50.0,
                                            "device": "jetson_nano"}
    assert whatif.current_value(demo, "network") == "lte"
    assert whatif.current_value(demo, "network.uplink_mbps") == pytest.approx(5.85)
    assert whatif.current_value(demo, "no.such.key") is None
    assert whatif.changed(demo, {"qos.min_accuracy": None}) == {"qos.min_accuracy": None}


def test_overrides_reproduce_on_the_command_line(demo, repo_root):
    over = {"network.uplink_mbps": 2.5, "network": "wifi5", "qos.min_accuracy": None,
            "analysis.cui.classes": [3, 5], "workload.payload_dtype": "int8", "name": "a b"}
    cmd = whatif.cli_command("scenarios/demo.yaml", over)
    args = shlex.split(cmd)
    assert args[:3] == ["splitimpera", "simulate", "scenarios/demo.yaml"]
    sets = [a for a in args[3:] if a != "--set"]
    assert parse_overrides(sets) == over  # --set parses every value back to what the dashboard set


def test_switch_model_drops_what_no_longer_fits(demo):
    assert whatif.switch_model(demo, "digits_cnn") == {}
    over = whatif.switch_model(demo, "resnet18")
    assert over == {"model.name": "resnet18", "model.weights": "none", "data.source": "none",
                    "qos.min_accuracy": None}
    sc = si.load_scenario(demo.source, {**over, "analysis.engine": "analytic"})  # validates: no data, no accuracy limit
    assert sc.model.name == "resnet18" and sc.data.source == "none" and sc.qos.min_accuracy is None
    assert sc.qos.max_latency_ms == demo.qos.max_latency_ms  # the rest stays


def test_scenario_from_text_errors_are_one_line():
    data, sc = whatif.scenario_from_text(DEMO_TEXT, source="up.yaml")
    assert sc.name == "mine" and data["network"] == "lte" and sc.source == "up.yaml"
    with pytest.raises(si.UserError) as e:
        whatif.scenario_from_text("name: [oops\nmodel: x\n", source="up.yaml")
    assert e.value.line().startswith("up.yaml: not valid YAML: line ")
    assert "\n" not in e.value.line()
    with pytest.raises(si.UserError) as e:
        whatif.scenario_from_text(DEMO_TEXT.replace("rate_hz: 10", "rate_hz: 0"), source="up.yaml")
    assert e.value.line() == "up.yaml: workload.rate_hz: Input should be greater than 0"
    with pytest.raises(si.UserError, match="up.yaml: a scenario must be a YAML mapping, got a list"):
        whatif.scenario_from_text("- a\n- b\n", source="up.yaml")


def test_ranked_view_matches_the_result(demo, prepared):
    res = si.evaluate(demo, prepared)
    view = whatif.ranked_view(res)
    t = res.table
    assert list(view.index) == list(res.ranked().index)
    assert view.index[0] == res.recommended
    assert view["rank"].iloc[0] == 1
    assert "p95 ms" not in view and "device wait ms" not in view  # analytic: no queueing, no spread
    np.testing.assert_allclose(view["latency ms"], t.loc[view.index, "latency_s"] * 1e3)
    np.testing.assert_allclose(view["uplink ms"], t.loc[view.index, "uplink_s"] * 1e3)
    assert (view["sent B"] == t.loc[view.index, "bytes_sent"]).all()
    bad = ~t.loc[view.index, "feasible"].to_numpy()
    assert (view["verdict"][~bad] == "ok").all()
    assert (view["verdict"][bad] == t.loc[view.index, "reason"][bad]).all()
    sim = si.evaluate(demo.model_copy(update={"analysis": demo.analysis.model_copy(update={"engine": "simpy"})}),
                      prepared)
    sview = whatif.ranked_view(sim)
    assert {"p95 ms", "device wait ms", "server wait ms", "mean ms"} <= set(sview.columns)


def test_compare_and_diff(demo, prepared, repo_root):
    b_sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                            {"analysis.engine": "analytic", "network.uplink_mbps": 1, "workload.payload_dtype": "int8"})
    a, b = si.evaluate(demo, prepared), si.evaluate(b_sc, prepared)
    diff = whatif.scenario_diff(demo, b_sc)
    assert {"network.uplink_mbps", "workload.payload_dtype", "network.name"} == set(diff.index)
    assert diff.loc["workload.payload_dtype"].tolist() == ["float32", "int8"]
    assert whatif.scenario_diff(demo, demo).empty
    cmp = whatif.compare_results(a, b)
    assert list(cmp.index) == list(a.table.index)
    np.testing.assert_allclose(cmp["Δ ms"], (b.table["latency_s"] - a.table["latency_s"]) * 1e3)
    assert cmp.loc[a.recommended, "A rank"] == 1


def test_uploaded_user_models_are_refused_unless_trusted(monkeypatch, tmp_path):
    import sys
    import textwrap

    import splitimpera as si
    from splitimpera.whatif import TRUST_ENV, scenario_from_text

    (tmp_path / "evil_mod.py").write_text(textwrap.dedent("""
        import pathlib
        pathlib.Path(__file__).with_name("ran").write_text("imported")
        import torch.nn as nn
        def build(num_classes=2):
            return nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    text = ("name: up\nmodel: {name: 'evil_mod:build', weights: none, input_shape: [4]}\n"
            "device: rpi4\nserver: server_t4\nnetwork: lte\n")
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(si.UserError, match="not accepted from an uploaded") as e:
        scenario_from_text(text, source="upload.yaml")
    assert e.value.field == "model.name" and not (tmp_path / "ran").exists()
    monkeypatch.setenv(TRUST_ENV, "1")
    _, sc = scenario_from_text(text, source="upload.yaml")
    assert sc.model.name == "evil_mod:build" and (tmp_path / "ran").exists()
    sys.modules.pop("evil_mod", None)
