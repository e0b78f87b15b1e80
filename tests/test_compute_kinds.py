"""The per-kind compute model, `calibrate`'s fit of it, and measured mode (timing tables)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import splitimpera as si
from splitimpera.calibrate import TimedModel, calibrate, write_profile
from splitimpera.cli import main
from splitimpera.calibrate.fit import fit_base
from splitimpera.config.profile_registry import parse_profile, resolve_relative_paths
from splitimpera.config.yaml_files import read_yaml
from splitimpera.latency.compute import compute_mode, compute_time_s
from splitimpera.latency.kind_model import KindCoef, KindModel
from splitimpera.model.cost import profile_model, profile_nodes
from splitimpera.model.splits import trace

SHAPE = (3, 64, 64)
# A known per-kind model: depthwise convolutions at a tenth of the dense rate, norms and
# element-wise ops bound by bytes, every kind with its own call overhead.
TRUTH = {
    "all": KindCoef(4e-6, 1 / 20e9, 1 / 15e9),
    "conv": KindCoef(18e-6, 1 / 60e9, 1 / 40e9),
    "conv_dw": KindCoef(9e-6, 1 / 6e9, 1 / 10e9),
    "norm": KindCoef(7e-6, 0.0, 1 / 12e9),
    "act": KindCoef(3e-6, 0.0, 1 / 25e9),
    "eltwise": KindCoef(2.5e-6, 0.0, 1 / 18e9),
    "pool": KindCoef(11e-6, 0.0, 1 / 4e9),
    "view": KindCoef(0.8e-6, 0.0, 0.0),
}


def _traced(name):
    return trace(si.load_model(name, "none"), SHAPE)


def synthetic_measure(models, repeats, warmup, disturb=0.0):
    """Node times from TRUTH instead of a clock (``disturb``: share of nodes slowed 3x)."""
    rng = np.random.default_rng(0)
    out = []
    for name, tm in models:
        nodes = profile_nodes(tm).copy()
        t = KindModel(TRUTH).predict_s(nodes)
        hit = rng.random(len(t)) < disturb
        nodes["measured_s"] = np.where(hit, 3 * t, t)
        out.append(TimedModel(name, nodes, float(KindModel(TRUTH).predict_s(nodes).sum())))
    return out


@pytest.fixture(scope="module")
def synthetic_cal():
    return calibrate(["resnet18", "mobilenet_v3_small"], ["mobilenet_v2"], input_shape=SHAPE, peak_gflops=100.0,
                     idle_w=1.0, active_w=3.0, name="synthetic", timer=synthetic_measure, residual=False)


def _fitted_kinds(cal):
    table = cal.table if cal.table is not None else None
    counts = pd.concat([m.nodes for m in cal.timed_models[:2]])["kind"].value_counts()
    return [k for k in TRUTH if k != "all" and counts.get(k, 0) >= 6], table


def test_calibrate_recovers_a_known_per_kind_profile(synthetic_cal):
    kinds, _ = _fitted_kinds(synthetic_cal)
    assert {"conv", "conv_dw", "norm", "act", "eltwise"} <= set(kinds)
    got = synthetic_cal.profile.compute.kinds
    for k in kinds:
        want = TRUTH[k].to_yaml()
        for field, v in want.items():
            if v is None:
                assert getattr(got[k], field) is None or getattr(got[k], field) > 1e3, (k, field)
            else:
                assert getattr(got[k], field) == pytest.approx(v, rel=2e-3), (k, field)
    # The depthwise rate is told apart from the dense one: a single efficiency could not.
    assert got["conv"].gmacs_per_s / got["conv_dw"].gmacs_per_s == pytest.approx(10, rel=1e-2)
    # Held out: the per-kind model predicts the truth's times; the roofline does not.
    s = synthetic_cal.summary
    assert s["kinds"]["layer_mdape"] < 0.5
    assert s["roofline"]["layer_mdape"] > 5 * max(s["kinds"]["layer_mdape"], 1.0)
    assert synthetic_cal.chosen == "kinds" and synthetic_cal.profile.compute.error_pct is not None


def test_base_fit_shrugs_off_disturbed_nodes():
    models = [("resnet18", _traced("resnet18")), ("mobilenet_v3_small", _traced("mobilenet_v3_small"))]
    clean = pd.concat([m.nodes for m in synthetic_measure(models, 1, 0)])
    noisy = pd.concat([m.nodes for m in synthetic_measure(models, 1, 0, disturb=0.1)])
    for nodes in (clean, noisy):
        nodes["macs"] = nodes["flops"]
    fit = fit_base(noisy)
    for k in ("conv", "conv_dw", "norm"):
        np.testing.assert_allclose(fit[k].vector(), TRUTH[k].vector(), rtol=0.05, atol=1e-13)


def test_profile_loads_and_simulate_uses_the_per_kind_model(synthetic_cal, tmp_path):
    path = tmp_path / "devices" / "synthetic.yaml"
    write_profile(synthetic_cal.data, path, table=synthetic_cal.table)
    prof = parse_profile("devices", resolve_relative_paths("devices", read_yaml(path), path.parent), str(path))
    tm = _traced("mobilenet_v2")
    p = profile_model(tm)
    head = compute_time_s(p, "head", prof).to_numpy()
    # Equal to the profile's per-kind node times summed up to each split …
    nodes = p.attrs["nodes"]
    coef = {k: KindCoef.from_yaml(v.model_dump()) for k, v in prof.compute.kinds.items()}
    per_node = KindModel(coef).predict_s(nodes)
    cum = np.concatenate([[0.0], np.cumsum(per_node)])
    k = np.searchsorted(np.asarray(nodes["pos"]), p["index"].to_numpy(), side="right")
    np.testing.assert_allclose(head, cum[k], rtol=1e-12)
    # … which are the truth's for every kind the fit set had enough of.
    kinds, _ = _fitted_kinds(synthetic_cal)
    seen = np.isin(np.asarray(nodes["kind"], dtype=object), kinds)
    assert seen.mean() > 0.9
    np.testing.assert_allclose(per_node[seen], KindModel(TRUTH).predict_s(nodes)[seen], rtol=2e-3)
    assert compute_mode(p, "head", prof) == "per-kind model"


def _table_profile(tmp_path, tm, times, input_shape=SHAPE):
    from splitimpera.model.cost import structure_hash

    nodes = profile_nodes(tm)
    csv = tmp_path / "t.csv"
    pd.DataFrame({"node": nodes.index, "pos": nodes["pos"], "kind": nodes["kind"], "measured_s": times}).to_csv(
        csv, index=False)
    data = si.get_device("rpi4").model_dump()
    data["compute"]["timings"] = [{"file": str(csv), "model": "mobilenet_v2", "input": "x".join(map(str, input_shape)),
                                   "structure": structure_hash(tm)}]
    return si.DeviceProfile.model_validate(data)


def test_measured_mode_reproduces_the_timing_table(tmp_path):
    tm = _traced("mobilenet_v2")
    n = len(profile_nodes(tm))
    times = np.random.default_rng(3).uniform(1e-6, 1e-3, n)
    dev = _table_profile(tmp_path, tm, times)
    p = profile_model(tm)
    head = compute_time_s(p, "head", dev).to_numpy()
    tail = compute_time_s(p, "tail", dev).to_numpy()
    cum = np.concatenate([[0.0], np.cumsum(times)])
    k = np.searchsorted(profile_nodes(tm)["pos"].to_numpy(), p["index"].to_numpy(), side="right")
    np.testing.assert_allclose(head, cum[k], rtol=1e-12)
    np.testing.assert_allclose(tail, times.sum() - cum[k], rtol=1e-9, atol=1e-15)
    assert head[-1] == pytest.approx(times.sum()) and compute_mode(p, "head", dev).startswith("measured (timing table")
    # Another input shape is another graph: the table does not apply, the model predicts.
    other = profile_model(trace(si.load_model("mobilenet_v2", "none"), (3, 32, 32)))
    assert compute_mode(other, "head", dev) == "roofline"
    assert not np.allclose(compute_time_s(other, "head", dev).to_numpy()[-1], times.sum())


def test_predict_latency_api_matches_what_simulate_uses():
    tm = _traced("resnet18")
    got = si.predict_latency_s(tm, device="rpi4", server="server_t4")
    p = profile_model(tm)
    np.testing.assert_array_equal(got["head_s"], compute_time_s(p, "head", si.get_device("rpi4")).to_numpy())
    np.testing.assert_array_equal(got["tail_s"], compute_time_s(p, "tail", si.get_device("server_t4")).to_numpy())
    assert list(got.index) == list(p.index) and got.attrs["mode"] == {"head": "roofline", "tail": "roofline"}


def test_cli_for_model_writes_a_profile_that_simulate_uses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    devs = tmp_path / "profiles" / "devices"
    devs.mkdir(parents=True)
    out = devs / "mypi.yaml"
    rc = main(["calibrate", "--for-model", "digits_cnn", "--profile", "rpi4", "-o", str(out), "--repeats", "3",
               "--warmup", "1", "--threads", "1"])
    text = capsys.readouterr().out
    assert rc == 0 and "digits_cnn at 1x32x32" in text
    data = yaml.safe_load(out.read_text())
    (entry,) = data["compute"]["timings"]
    table = pd.read_csv(devs / entry["file"])
    assert entry["input"] == "1x32x32" and (table["measured_s"] >= 0).all()
    # The nodes were scaled to sum to the plain forward the command reports (4 digits).
    import re

    forward_ms = float(re.search(r"plain forward ([\d.]+) ms", text).group(1))
    assert table["measured_s"].sum() * 1e3 == pytest.approx(forward_ms, rel=1e-3)
    assert table["raw_s"].sum() > 0 and (table["measured_s"] >= 0).all()
    monkeypatch.setenv("SPLITIMPERA_PROFILES", str(tmp_path / "profiles"))
    si.config.profile_registry.DEVICES.reset()
    try:
        sc = si.load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "demo.yaml",
                              overrides={"device": "mypi", "analysis.engine": "analytic"})
        res = si.run(sc)
        assert res.meta["compute"]["device"] == f"measured (timing table {entry['file']})"
        assert res.meta["compute"]["server"] == "roofline"
        # The device's compute time of the whole model is the table's sum.
        out_row = res.table.xs("output", level="split").iloc[0]
        assert out_row["device_compute_s"] == pytest.approx(table["measured_s"].sum(), rel=1e-6)
        # A second run on the same file replaces its entry rather than adding one.
        assert main(["calibrate", "--for-model", "digits_cnn", "--profile", str(out), "--repeats", "2",
                     "--warmup", "0", "--threads", "1"]) == 0
        assert len(yaml.safe_load(out.read_text())["compute"]["timings"]) == 1
    finally:
        monkeypatch.delenv("SPLITIMPERA_PROFILES")
        si.config.profile_registry.DEVICES.reset()


@pytest.mark.parametrize("argv,field", [
    (["--for-model", "digits_cnn"], "--profile"),
    (["--for-model", "no_such_net", "--profile", "rpi4", "-o", "x.yaml"], "--for-model"),
    (["--for-model", "digits_cnn", "--profile", "rpi4"], "-o"),
    (["--for-model", "digits_cnn", "--profile", "nope.yaml"], "--profile"),
    (["--profile", "rpi4"], "--profile"),
    (["--num-classes", "3"], "--num-classes"),
    (["--for-model", "digits_cnn", "--profile", "rpi4", "-o", "x.yaml", "--idle-w", "3"], "--idle-w"),
    (["--for-model", "digits_cnn", "--profile", "bad.yaml"], "bad.yaml"),
])
def test_for_model_bad_input_is_one_line(argv, field, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import splitimpera.calibrate as cal_mod

    def no_measuring(*a, **k):
        raise AssertionError("measured before the options and the base profile were checked")

    monkeypatch.setattr(cal_mod, "time_model", no_measuring)  # every case here must be refused first
    if "bad.yaml" in argv:  # a base profile that is not a valid device profile: said before measuring
        (tmp_path / "bad.yaml").write_text("name: bad\ncompute: {peak_gflops: -1}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["calibrate", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and field in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_kinds_need_an_all_entry_and_known_names():
    data = si.get_device("rpi4").model_dump()
    data["compute"]["kinds"] = {"conv": {"overhead_us": 1.0, "gmacs_per_s": 1.0}}
    with pytest.raises(Exception, match="'all'"):
        si.DeviceProfile.model_validate(data)
    data["compute"]["kinds"] = {"all": {"overhead_us": 1.0}, "convv": {"overhead_us": 1.0}}
    with pytest.raises(Exception, match="convv"):
        si.DeviceProfile.model_validate(data)


def test_ties_within_the_error_of_the_compute_that_differs():
    from splitimpera.qos import mark_ties

    t = pd.DataFrame({"device_compute_s": [0.010, 0.020, 0.001, 0.010, 0.0],
                      "server_compute_s": [0.0, 0.005, 0.0, 0.0, 0.0],
                      "latency_qos_s": [0.100, 0.1015, 0.1040, 0.1001, 0.1001], "rank": [1, 2, 3, 4, pd.NA]})
    out = mark_ties(t, 0.10, 0.20)
    # The band on each point: device × 10 % + server × 20 %.
    np.testing.assert_allclose(out["latency_err_s"], [0.001, 0.003, 0.0001, 0.001, 0.0])
    # rank 2: 1.5 ms behind, the compute that differs could be off by 0.1 × 10 ms + 0.2 × 5 ms = 2 ms: a tie;
    # rank 3: 4 ms behind, 0.9 ms: not; rank 4 runs the same compute: 0.1 ms behind is no tie at all;
    # the unranked (infeasible) row never ties.
    assert list(out["tie"]) == [False, True, False, False, False]
    # A side without a stated error adds nothing; neither stated: no band, no tie.
    np.testing.assert_allclose(mark_ties(t, 0.10, float("nan"))["latency_err_s"], [0.001, 0.002, 0.0001, 0.001, 0])
    assert list(mark_ties(t, 0.10, float("nan"))["tie"]) == [False, False, False, False, False]
    none = mark_ties(t, float("nan"), float("nan"))
    assert none["latency_err_s"].isna().all() and not none["tie"].any()


def test_simulate_shows_the_band_from_the_profiles_error(repo_root, capsys):
    dev = si.get_device("rpi4").model_dump()
    dev["compute"]["error_pct"] = 1000.0  # absurd on purpose: a band wide enough to tie
    dev["name"] = "rpi4_err"
    sc = si.load_scenario(repo_root / "scenarios" / "demo.yaml",
                          overrides={"device": dev, "analysis.engine": "analytic"})
    res = si.run(sc)
    t = res.table
    srv_e = si.get_device("server_t4").compute.error_pct / 100
    np.testing.assert_allclose(t["latency_err_s"], t["device_compute_s"] * 10.0 + t["server_compute_s"] * srv_e)
    assert res.meta["compute"]["device_error_pct"] == 1000.0 and res.meta["compute"]["server_error_pct"] == srv_e * 100
    from splitimpera.report.text import render_result

    text = render_result(res)
    assert "compute model error rpi4_err ±1000 %" in text
    # output (LC) and classifier_4 run the same layers on the device and differ by the 32 bytes
    # they send: never a tie on compute error; classifier_1 runs less on the device and some
    # on the server: with a 1000 % device error, a tie.
    assert not t.loc[("classifier_4", "none"), "tie"]
    assert t.loc[("classifier_1", "none"), "tie"] and "a tie" in text


@pytest.fixture(scope="module")
def residual_cal():
    def noisy(models, repeats, warmup):
        """TRUTH with what a base cannot hold and a residual can: norms and activations on
        small maps twice as slow, a tenth of the nodes disturbed, and a clock's 2 % noise."""
        out = synthetic_measure(models, repeats, warmup, disturb=0.1)
        rng = np.random.default_rng(1)
        for m in out:
            n = m.nodes
            cold = n["kind"].isin(["norm", "act"]) & (n["out_hw"] <= 64)
            n["measured_s"] = n["measured_s"] * np.where(cold, 2.0, 1.0) * np.exp(rng.normal(0, 0.02, len(n)))
        return out

    return calibrate(["resnet18", "mobilenet_v3_small"], ["mobilenet_v2"], input_shape=SHAPE, peak_gflops=100.0,
                     idle_w=1.0, active_w=3.0, name="resid", timer=noisy, residual=True)


def test_written_residual_profile_predicts_what_calibrate_evaluated(residual_cal, tmp_path):
    from splitimpera.latency.kind_model import model_for

    assert residual_cal.chosen == "kinds+residual" and residual_cal.table is not None
    path = tmp_path / "devices" / "resid.yaml"
    write_profile(residual_cal.data, path, table=residual_cal.table)
    raw = read_yaml(path)
    assert raw["compute"]["residual_table"] == "resid.nodes.csv" and (path.parent / "resid.nodes.csv").is_file()
    prof = parse_profile("devices", resolve_relative_paths("devices", raw, path.parent), str(path))
    nodes = profile_nodes(_traced("mobilenet_v2"))
    loaded = model_for(prof).predict_s(nodes)
    # The same numbers calibrate's held-out check used: its predicted total for the held-out model.
    got = residual_cal.errors.loc[("kinds+residual", "mobilenet_v2"), "predicted_s"]
    assert loaded.sum() == pytest.approx(got, rel=1e-12)
    assert compute_mode(profile_model(_traced("mobilenet_v2")), "head", prof) == "per-kind model + residual"


@pytest.mark.parametrize("content,what", [
    ("kind,macs\n", "lacks column"),
    (None, "fewer than 5 timed nodes"),
    ("abc", "has 'abc'"),
])
def test_a_bad_residual_table_is_one_user_error(residual_cal, tmp_path, content, what):
    from splitimpera.errors import UserError
    from splitimpera.latency.kind_model import model_for

    path = tmp_path / "devices" / "resid.yaml"
    write_profile(residual_cal.data, path, table=residual_cal.table)
    side = path.parent / "resid.nodes.csv"
    table = pd.read_csv(side)
    if content is None:
        side.write_text(table.head(0).to_csv(index=False))
    elif content == "abc":
        table["measured_s"] = table["measured_s"].astype(object)
        table.loc[3, "measured_s"] = "abc"
        side.write_text(table.to_csv(index=False))
    else:
        side.write_text(content)
    prof = parse_profile("devices", resolve_relative_paths("devices", read_yaml(path), path.parent), str(path))
    with pytest.raises(UserError, match=what) as e:
        model_for(prof)
    assert "resid.nodes.csv" in str(e.value) and "residual_table" in str(e.value)


def test_a_timing_table_with_a_bad_time_is_one_user_error(tmp_path):
    from splitimpera.errors import UserError

    tm = _traced("mobilenet_v2")
    times = np.full(len(profile_nodes(tm)), 1e-4)
    times[7] = np.nan
    dev = _table_profile(tmp_path, tm, times)
    with pytest.raises(UserError, match="graph position"):
        compute_time_s(profile_model(tm), "head", dev)


def test_ties_are_judged_only_when_ranking_by_latency():
    from splitimpera.qos import mark_ties

    t = pd.DataFrame({"device_compute_s": [0.010, 0.020], "server_compute_s": [0.0, 0.005],
                      "latency_qos_s": [0.100, 0.1015], "rank": [1, 2]})
    assert list(mark_ties(t, 0.1, 0.2, "latency")["tie"]) == [False, True]
    assert list(mark_ties(t, 0.1, 0.2, "energy")["tie"]) == [False, False]


def test_calibrate_keeps_the_roofline_when_it_predicts_better():
    """Times made by a roofline: the roofline fit is exact on the held-out model, the per-kind
    model is not; left to choose, calibrate writes no kinds."""
    from tests.test_calibrate import synthetic

    cal = calibrate(["resnet18", "squeezenet1_0"], ["mobilenet_v3_small"], input_shape=SHAPE, peak_gflops=100.0,
                    idle_w=1.0, active_w=3.0, name="roof", timer=synthetic)
    assert cal.summary["roofline"]["model_mdape"] < 1e-6 < cal.summary["kinds"]["model_mdape"]
    assert cal.chosen == "roofline" and cal.profile.compute.kinds is None
    assert cal.profile.compute.error_pct == pytest.approx(0.1)  # floored: never a stated 0 %


def test_cli_threads_do_not_outlive_the_command(tmp_path, monkeypatch):
    """`main([... --threads 1])` in a process that goes on leaves torch's thread count as it was:
    results computed after it (multi-threaded reductions) must not depend on an earlier command."""
    import torch

    monkeypatch.chdir(tmp_path)
    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1, so that a leaked --threads 1 shows
    try:
        assert main(["simulate", "no_such.yaml", "--threads", "1"]) == 2  # set, then the command fails
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)


def test_tracing_from_several_threads_at_once():
    """torch.fx patches nn.Module calls process-wide while tracing: concurrent traces (a
    dashboard's sessions, device threads) must not see each other's modules."""
    import threading

    out, errors = [], []

    def go():
        try:
            for _ in range(5):
                out.append(len(trace(si.load_model("resnet18", "none"), (3, 32, 32)).nodes))
        except Exception as e:  # noqa: BLE001  (the test reports whatever a thread hit)
            errors.append(repr(e))

    ts = [threading.Thread(target=go) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors and len(out) == 20 and len(set(out)) == 1


def test_a_residual_that_helps_no_kind_is_not_written():
    # Exact per-kind times: the base holds everything, no kind's residual beats it.
    cal = calibrate(["resnet18", "mobilenet_v3_small"], ["mobilenet_v2"], input_shape=SHAPE, peak_gflops=100.0,
                    idle_w=1.0, active_w=3.0, name="exact", timer=synthetic_measure)
    assert cal.residual_kinds == () and len(cal.residual_cv) > 0
    assert cal.chosen == "kinds" and cal.table is None
    assert "residual_table" not in cal.data["compute"] and "residual_kinds" not in cal.data["compute"]


def test_the_cli_names_the_residual_table_it_writes(residual_cal, capsys, tmp_path, monkeypatch):
    import splitimpera.calibrate as cal_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cal_mod, "calibrate", lambda *a, **k: residual_cal)
    assert main(["calibrate", "-o", "devices/r.yaml"]) == 0
    out = capsys.readouterr().out
    side = tmp_path / "devices" / "r.nodes.csv"
    assert side.is_file() and f"wrote devices/r.yaml and its residual table {Path('devices/r.nodes.csv')}" in out
