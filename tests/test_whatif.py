"""What-if helpers behind the dashboard (splitimpera.whatif)."""

import shlex

import numpy as np
import pandas as pd
import pytest

import splitimpera as si
from splitimpera import whatif
from splitimpera.config.scenario import parse_overrides
from splitimpera.prepared import prepare_key
from splitimpera.report.view import View

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
    key = prepare_key(demo)
    # Engine, network, device, workload and QoS only change evaluate(): same key.
    for over in ({"analysis.engine": "simpy"}, {"network.uplink_mbps": 1}, {"device": "jetson_nano"},
                 {"workload.result_at": "device", "workload.arrival": "poisson", "qos.max_latency_ms": 10}):
        assert prepare_key(si.load_scenario(path, over)) == key
    # What prepare() reads changes it: the bottlenecks measured among them.
    keys = {prepare_key(si.load_scenario(path, over)) for over in (
        {"seed": 1}, {"data.limit": 50}, {"model.weights": "none"}, {"analysis.cui.method": "layercam"},
        {"bottleneck.name": "int8"}, {"bottleneck.name": ["none", "int8"]}, {"bottleneck.name": ["int8", "none"]},
        {"bottleneck.name": "int8", "bottleneck.nominal": True}, {"bottleneck.coder": "zstd"})}
    assert len(keys) == 9 and key not in keys


def test_prepare_key_reads_the_bottlenecks_not_their_spelling(repo_root):
    path = repo_root / "scenarios/demo.yaml"
    glob = si.load_scenario(path, {"bottleneck.name": "int?"})
    names = si.load_scenario(path, {"bottleneck.name": ["int8", "int4", "int2"]})
    assert whatif.bottleneck_names(glob) == ["int8", "int4", "int2"] == si.list_bottlenecks(include="int?")
    assert prepare_key(glob) == prepare_key(names)
    assert prepare_key(glob) != prepare_key(si.load_scenario(path, {"bottleneck.name": ["int8", "int4"]}))


def test_bottleneck_choice_is_the_override_to_set(demo, repo_root):
    assert whatif.bottleneck_choice(demo, ["none"]) == {}
    assert whatif.bottleneck_choice(demo, ["int8"]) == {"bottleneck.name": "int8"}
    assert whatif.bottleneck_choice(demo, ["none", "int8"]) == {"bottleneck.name": ["none", "int8"]}
    globbed = si.load_scenario(repo_root / "scenarios/demo.yaml", {"bottleneck.name": "int?"})
    assert whatif.bottleneck_choice(globbed, ["int8", "int4", "int2"]) == {}  # the scenario's own, spelt out
    assert whatif.bottleneck_choice(globbed, ["int8", "int4"]) == {"bottleneck.name": ["int8", "int4"]}
    assert whatif.bottleneck_choice(demo, []) == {"bottleneck.name": []}  # validation names the problem


def test_schema_choices_are_the_literals():
    import typing

    from splitimpera.config.scenario import AnalysisSpec, BottleneckSpec, CUISpec, DataSpec, QoSSpec, WorkloadSpec

    def literal(model, field):
        return list(typing.get_args(model.model_fields[field].annotation))

    for key, model, field in (("qos.objective", QoSSpec, "objective"),
                              ("qos.latency_statistic", QoSSpec, "latency_statistic"),
                              ("workload.arrival", WorkloadSpec, "arrival"),
                              ("workload.result_at", WorkloadSpec, "result_at"),
                              ("analysis.engine", AnalysisSpec, "engine"),
                              ("bottleneck.coder", BottleneckSpec, "coder"),
                              ("data.source", DataSpec, "source")):
        assert whatif.schema_choices(key) == literal(model, field), key
    assert whatif.schema_choices("qos.objective") == ["latency", "energy", "bytes", "accuracy", "weighted"]
    # Optional and union fields: their Literal members (None and list[str] left out).
    assert whatif.schema_choices("analysis.cui.target") == list(typing.get_args(
        typing.get_args(CUISpec.model_fields["target"].annotation)[0]))
    assert whatif.schema_choices("bottleneck.splits") == ["all", "nominated"]
    for bad in ("qos.max_latency_ms", "qos.no_such", "nope", "qos.objective.deeper"):
        with pytest.raises(KeyError):
            whatif.schema_choices(bad)


def test_changed_keeps_only_real_changes(demo):
    values = {"network": "lte", "network.uplink_mbps": 5.85, "network.rtt_ms": 70, "qos.min_accuracy": 0.95,
              "workload.arrival": "poisson", "qos.max_latency_ms": 50.0, "qos.max_energy_mj": None,
              "device": "jetson_nano", "bottleneck.nominal": False, "bottleneck.coder": "raw"}
    assert whatif.changed(demo, values) == {"workload.arrival": "poisson", "qos.max_latency_ms": 50.0,
                                            "device": "jetson_nano"}
    assert whatif.current_value(demo, "network") == "lte"
    assert whatif.current_value(demo, "network.uplink_mbps") == pytest.approx(5.85)
    assert whatif.current_value(demo, "no.such.key") is None
    assert whatif.changed(demo, {"qos.min_accuracy": None}) == {"qos.min_accuracy": None}


def test_overrides_reproduce_on_the_command_line(demo, repo_root):
    over = {"network.uplink_mbps": 2.5, "network": "wifi5", "qos.min_accuracy": None,
            "analysis.cui.classes": [3, 5], "bottleneck.name": ["none", "int8"], "bottleneck.nominal": True,
            "name": "a b"}
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
    assert e.value.line() == "up.yaml: workload.rate_hz: Input should be greater than 0 (got 0)"
    with pytest.raises(si.UserError, match="up.yaml: a scenario must be a YAML mapping, got a list"):
        whatif.scenario_from_text("- a\n- b\n", source="up.yaml")


def test_ranked_view_matches_the_result(demo, prepared):
    res = si.evaluate(demo, prepared)
    view = whatif.ranked_view(res)
    t = res.table
    assert view.index.names == ["split", "bottleneck"]
    assert list(view.index) == list(res.ranked().index) == list(View.of(res).all_rows().index)
    assert view.index[0] == res.recommended
    assert view["rank"].iloc[0] == 1
    assert "p95 ms" not in view and "dev wait ms" not in view  # analytic: no queueing, no spread
    assert "downlink ms" not in view and "accuracy from" not in view  # result at the server; full-model accuracy
    np.testing.assert_allclose(view["latency ms"], t.loc[view.index, "latency_s"] * 1e3)
    np.testing.assert_allclose(view["RTT/2 ms"] + view["transmit ms"], t.loc[view.index, "uplink_s"] * 1e3)
    assert (view["sent"] == t.loc[view.index, "bytes_sent"]).all()
    bad = ~t.loc[view.index, "feasible"].to_numpy()
    assert (view["verdict"][~bad] == "ok").all()
    assert (view["verdict"][bad] == t.loc[view.index, "reason"][bad]).all()
    sim = si.evaluate(demo.model_copy(update={"analysis": demo.analysis.model_copy(update={"engine": "simpy"}),
                                             "qos": demo.qos.model_copy(update={"latency_statistic": "p99"})}),
                      prepared)
    sview = whatif.ranked_view(sim)
    assert {"p95 ms", "p99 ms", "dev wait ms", "srv wait ms", "mean ms"} <= set(sview.columns)
    np.testing.assert_allclose(sview["p99 ms"], sim.table.loc[sview.index, "latency_p99_s"] * 1e3)


@pytest.fixture(scope="module")
def two(repo_root):
    """The demo with two bottlenecks (none and nominal int8: nothing to measure), analytic."""
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml", {"analysis.engine": "analytic",
                                                               "bottleneck.name": ["none", "int8"],
                                                               "bottleneck.nominal": True})
    return sc, si.prepare(sc)


def test_views_of_two_bottlenecks(two):
    sc, prep = two
    res = si.evaluate(sc, prep)
    view = whatif.ranked_view(res)
    assert len(view) == 2 * len(prep.profile) and set(view.index.get_level_values("bottleneck")) == {"none", "int8"}
    assert set(view["accuracy from"].drop("output", level="split")) == {"full model (nominal)"}
    best = whatif.best_view(res)
    expect = View.of(res).best_per_bottleneck()
    assert list(best.index) == ["none", "int8"]
    assert best["best split"].tolist() == expect["split"].tolist()
    assert best["feasible splits"].tolist() == expect["feasible_splits"].tolist()
    np.testing.assert_allclose(best["latency ms"], expect["latency_qos_s"] * 1e3)
    assert best.loc[res.recommended.bottleneck, "rank"] == 1


def test_chart_frame_is_the_table_in_topological_order(two):
    sc, prep = two
    res = si.evaluate(sc, prep)
    v = View.of(res)
    df = v.chart_frame()
    t = res.table
    assert len(df) == len(t) and list(df["index"]) == sorted(df["index"])
    assert list(zip(df["split"], df["bottleneck"]))[:2] == [("input", "none"), ("input", "int8")]
    assert df["label"].iloc[2] == "features_0 · none"
    points = list(zip(df["split"], df["bottleneck"]))
    np.testing.assert_allclose(df["latency_s"], t.loc[points, "latency_s"])
    stages = v.stages().loc[points]
    np.testing.assert_allclose(df[list(stages.columns)].sum(axis=1), t.loc[points, "latency_s"], rtol=1e-9)
    assert (df["status"] == "recommended").sum() == 1
    assert tuple(df.loc[df["status"] == "recommended", ["split", "bottleneck"]].iloc[0]) == res.recommended
    best = v.best_per_bottleneck()
    assert sorted(zip(df.loc[df["best"], "bottleneck"], df.loc[df["best"], "split"])) == \
        sorted(zip(best.index, best["split"]))
    assert (df.loc[~df["feasible"], "verdict"] != "ok").all() and (df.loc[df["feasible"], "verdict"] == "ok").all()


def test_compare_and_diff(demo, prepared, two, repo_root):
    b_sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                            {"analysis.engine": "analytic", "network.uplink_mbps": 1, "bottleneck.name": "fp16",
                             "bottleneck.nominal": True})
    a, b = si.evaluate(demo, prepared), si.run(b_sc)
    diff = whatif.scenario_diff(demo, b_sc)
    assert {"network.uplink_mbps", "network.name", "bottleneck.name", "bottleneck.nominal"} == set(diff.index)
    assert diff.loc["bottleneck.name"].tolist() == ["none", "fp16"]
    assert diff.loc["bottleneck.nominal"].tolist() == ["False", "True"]
    assert whatif.scenario_diff(demo, demo).empty
    # One bottleneck each, not the same: split by split.
    cmp = whatif.compare_results(a, b)
    assert cmp.index.names == ["split", "bottleneck"]
    assert list(cmp.index) == [(s, "none → fp16") for s in a.table.index.get_level_values("split")]
    np.testing.assert_allclose(cmp["Δ ms"], (b.for_bottleneck("fp16")["latency_s"]
                                            - a.for_bottleneck("none")["latency_s"]).to_numpy() * 1e3)
    assert cmp.loc[(a.recommended.split, "none → fp16"), "A rank"] == 1
    # Design points: an outer join on (split, bottleneck), A's order first.
    sc2, prep2 = two
    c = si.evaluate(sc2, prep2)
    assert whatif.scenario_diff(demo, sc2).loc["bottleneck.name"].tolist() == ["none", "none, int8"]
    cmp = whatif.compare_results(a, c)
    assert list(cmp.index) == list(dict.fromkeys([*a.table.index, *c.table.index]))
    assert cmp.loc[("features_0", "int8"), "A"] == "—" and pd.isna(cmp.loc[("features_0", "int8"), "A ms"])
    assert pd.isna(cmp.loc[("features_0", "int8"), "A rank"]) and cmp.loc[("features_0", "int8"), "B rank"] >= 1
    # The none points are the same in both (the same bottleneck, the same link).
    np.testing.assert_allclose(cmp.xs("none", level="bottleneck")["Δ ms"], 0, atol=1e-9)
    assert (cmp.xs("int8", level="bottleneck")["B"] != "—").all()  # B ranks them: ok or its reason


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
