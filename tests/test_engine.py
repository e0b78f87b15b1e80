"""`si.run` on the SimPy engine, and link-rate trace replay."""

import math

import numpy as np
import pandas as pd
import pytest
import simpy
import yaml

import splitimpera as si
from splitimpera.latency.analytic import analytic_latency
from splitimpera.latency.link import contention_share, wire_bytes
from splitimpera.latency.engine import TABLE_COLUMNS, point_frame
from splitimpera.report.text import render_result
from splitimpera.latency.simulation import REQUEST_COLUMNS, SharedLink, Sink, simulate
from splitimpera.config.rate_trace import read_trace_csv

LATENCY_COLUMNS = ["device_compute_s", "uplink_s", "server_compute_s", "downlink_s", "latency_s", "energy_j"]
# No data: no accuracy to measure, so run() is quick.
FAST = {"data.source": "none", "qos.min_accuracy": None}


def _scenario(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={**FAST, **over})


def _write_trace(path, times, up, down=None):
    cols = "time_s,uplink_mbps" + (",downlink_mbps" if down is not None else "")
    rows = [f"{float(t)!r},{float(u)!r}" + (f",{float(d)!r}" if down is not None else "")
            for t, u, d in zip(times, up, down if down is not None else up)]
    path.write_text("# test trace\n" + cols + "\n" + "\n".join(rows) + "\n")
    return path


def _finish(t0, bits, times, rates_bps):
    """Closed form: when ``bits`` started alone at ``t0`` end on a piecewise-constant rate."""
    k = int(np.searchsorted(times, t0, side="right")) - 1
    t, left = t0, bits
    while True:
        r = rates_bps[k]
        end = times[k + 1] if k + 1 < len(times) else math.inf
        if r > 0 and t + left / r <= end:
            return t + left / r
        left -= r * (end - t)
        t, k = end, k + 1


# --------------------------------------------------------------------------------------------
# run() on either engine


@pytest.mark.parametrize("result_at", ["server", "device"])
def test_simpy_engine_equals_analytic_without_queueing_or_randomness(repo_root, result_at):
    """One slow periodic device, no jitter, mean retransmissions: the simulated means are the
    closed form, so the two engines give the same table and the same ranking."""
    over = {"workload.stochastic_network": False, "workload.rate_hz": 2, "workload.num_requests": 5,
            "network.loss": 0.02, "workload.result_at": result_at, "qos.max_latency_ms": 60}
    sim = si.run(_scenario(repo_root, **over))
    ana = si.run(_scenario(repo_root, **over, **{"analysis.engine": "analytic"}))
    assert list(sim.table.columns) == list(ana.table.columns)
    assert list(sim.table.columns[:len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert list(sim.table.index) == list(ana.table.index) == [(n, "none") for n in sim.profile.index]
    for col in LATENCY_COLUMNS:
        diff = (sim.table[col] - ana.table[col]).abs().max()
        assert diff < 1e-9, f"{col}: off by {diff}"
    assert (sim.table["bytes_sent"] == ana.table["bytes_sent"]).all()
    assert (sim.table[["device_wait_s", "server_wait_s"]].abs() < 1e-12).all().all()
    assert (ana.table[["device_wait_s", "server_wait_s"]] == 0).all().all()
    # Deterministic: every percentile is the mean; the analytic engine has none.
    for q in (50, 95, 99):
        assert (sim.table[f"latency_p{q}_s"] - sim.table["latency_s"]).abs().max() < 1e-9
        assert ana.table[f"latency_p{q}_s"].isna().all()
    assert sim.table["feasible"].equals(ana.table["feasible"])
    assert sim.recommended == ana.recommended
    assert sim.sim is not None and ana.sim is None
    assert len(sim.sim.requests) == len(sim.table) * 5


def test_many_devices_queue_so_simpy_latency_is_at_least_analytic(repo_root, prof):
    """Eight Poisson devices on LTE. Each simulated request is at least the one-device
    closed form (shares ≤ 1, waits ≥ 0); where the offered link load exceeds the link,
    queueing also beats the n-device closed form (which charges every transfer the
    8-station share but never waits)."""
    over = {"workload.num_devices": 8, "workload.rate_hz": 20, "workload.arrival": "poisson",
            "workload.num_requests": 40, "workload.stochastic_network": False}
    splits = ["input", "features_0", "features_9", "classifier_1", "output"]
    sc = _scenario(repo_root, **over)
    res = _sim(sc, prof, splits)
    one = analytic_latency(prof, _scenario(repo_root, **{**over, "workload.num_devices": 1})).loc[splits]
    many = analytic_latency(prof, sc).loc[splits]
    req = res.requests
    floor = one.loc[req["split"], "latency_s"].to_numpy()
    assert (req["latency_s"].to_numpy() >= floor - 1e-12).all()
    assert (req[["device_wait_s", "server_wait_s"]] >= 0).all().all()
    mean = res.summary["latency_mean_s"].droplevel("bottleneck")
    assert (mean >= one["latency_s"]).all()
    # Offered uplink load: devices × rate × one transfer's time on the medium at the full rate
    # (its bits; slow-start rounds spent waiting for ACKs leave the medium to the others).
    load = 8 * 20 * pd.Series(wire_bytes(one["bytes_sent"], sc.network), index=one.index) * 8 / sc.network.uplink_bps
    heavy = load[load > 1].index
    assert len(heavy) >= 2
    assert (mean[heavy] > many.loc[heavy, "latency_s"]).all()
    assert (mean > one["latency_s"] + 1e-6).any()


def test_run_simulates_only_nominated_splits_and_reuses_the_profile(repo_root, monkeypatch):
    import splitimpera.pipeline as pipeline

    calls = []
    real = pipeline.profile_model

    def profile_once(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "profile_model", profile_once)
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                          overrides={"analysis.splits": "nominated", "workload.num_requests": 10})
    res = si.run(sc)
    assert len(calls) == 1, "run() profiles once and hands the profile to the simulation"
    nominated = set(res.importance.nominated["split"])
    assert set(res.table.index.get_level_values("split")) == nominated
    assert list(res.sim.summary.index) == list(res.table.index)  # topological, only those
    assert set(res.sim.requests["split"]) == nominated


def test_save_writes_requests_matching_the_summary(repo_root, tmp_path):
    sc = _scenario(repo_root, **{"workload.num_requests": 20, "workload.num_devices": 2,
                                 "workload.arrival": "poisson", "workload.rate_hz": 30})
    res = si.run(sc)
    folder = res.save(tmp_path)
    assert {p.name for p in folder.iterdir()} == {"splits.csv", "splits.parquet", "result.json", "scenario.yaml",
                                                  "requests.parquet"}
    req = pd.read_parquet(folder / "requests.parquet")
    assert list(req.columns) == REQUEST_COLUMNS
    pd.testing.assert_frame_equal(req, res.sim.requests, check_dtype=False)
    table = pd.read_csv(folder / "splits.csv", index_col=["split", "bottleneck"])
    # 60 requests/s of 64 kB overload LTE at the first splits: those are not simulated.
    over = table["overload"].notna()
    assert over.sum() > 0 and np.isinf(table.loc[over, "latency_s"]).all()
    table = table[~over]
    g = req.groupby(["split", "bottleneck"], sort=False)
    assert list(g.size().index) == list(table.index)
    assert (g.size() == res.sim.summary["requests"]).all() and (g.size() == 2 * 18).all()
    for col in ("latency_s", "device_wait_s", "uplink_s", "server_wait_s", "energy_j"):
        assert np.allclose(g[col].mean(), table[col], rtol=1e-12, atol=0)
    assert np.allclose(g["latency_s"].quantile(0.95), table["latency_p95_s"], rtol=1e-12)
    assert (g["bytes_sent"].first() == table["bytes_sent"]).all()
    # The analytic engine writes no per-request file.
    ana = si.run(_scenario(repo_root, **{"analysis.engine": "analytic"}))
    assert "requests.parquet" not in {p.name for p in ana.save(tmp_path / "ana").iterdir()}


def test_terminal_view_names_the_engine_and_shows_p95(repo_root):
    res = si.run(_scenario(repo_root, **{"workload.num_requests": 10}))
    out = render_result(res)
    assert "engine simpy: 198 simulated requests (9 per design point after warm-up" in out
    assert "p95 ms" in out and "dev wait ms" in out and "srv wait ms" in out and "mean ms" in out
    rec = res.recommended
    assert f"(p95 {res.table.loc[rec, 'latency_p95_s'] * 1e3:.3g} ms)" in out
    ana = render_result(si.run(_scenario(repo_root, **{"analysis.engine": "analytic"})))
    assert "engine analytic" in ana and "p95" not in ana


# --------------------------------------------------------------------------------------------
# Trace replay


def _sim(sc, prof, splits):
    """Simulate ``splits`` (topological order) of ``prof`` sending the fp32 tensor."""
    return simulate(sc, point_frame(prof.loc[[n for n in prof.index if n in set(splits)]]))


def _link(transfers, rate_bps, trace, net):
    """transfers: (station, bits, put time); returns finish times (no propagation delay)."""
    n = len(transfers)
    env = simpy.Environment()
    done = [math.nan] * n
    link = SharedLink(env, rate_bps, lambda k: contention_share(net, k), Sink(env, done),
                      bits=[b for _, b, _ in transfers], delay_s=[0.0] * n, station=[s for s, _, _ in transfers],
                      radio_j=[0.0] * n, rate_trace=trace)
    for rid, (_, _, t) in enumerate(transfers):
        env.process(_put_at(env, link, rid, t))
    env.run()
    return np.array(done)


def _put_at(env, link, rid, t):
    yield env.timeout(t)
    link.put(rid)


def test_a_transfer_spanning_rate_changes_takes_the_piecewise_time():
    net = si.get_network("lte")
    times, rates = [0.0, 0.010, 0.013, 0.020], [1e6, 2e6, 0.0, 0.5e6]
    # Alone, from t = 0.004: 6 kbit by 0.010 at 1 Mbit/s, 6 more by 0.013 at 2 Mbit/s, then an outage until 0.020.
    done = _link([(0, 12_000.0, 0.004)], 9e9, (times, rates), net)
    assert done[0] == pytest.approx(0.013, rel=1e-12)
    done = _link([(0, 14_000.0, 0.004)], 9e9, (times, rates), net)
    assert done[0] == pytest.approx(0.020 + 2_000.0 / 0.5e6, rel=1e-12)  # through the outage
    assert done[0] == pytest.approx(_finish(0.004, 14_000.0, times, rates), rel=1e-12)
    # Two stations sharing (lte: share(2) = 0.55), and a change while both send.
    s2 = contention_share(net, 2)
    done = _link([(0, 1000.0, 0.0), (1, 5000.0, 0.0)], 0, ([0.0, 0.001], [1e6, 2e6]), net)
    t_a = 0.001 + (1000.0 - 0.001 * 1e6 * s2) / (2e6 * s2)
    assert done[0] == pytest.approx(t_a, rel=1e-12)
    assert done[1] == pytest.approx(t_a + 4000.0 / 2e6, rel=1e-12)


def test_simulated_uplink_follows_the_trace_exactly(repo_root, prof, tmp_path):
    rng = np.random.default_rng(5)
    times = np.round(np.arange(0, 6, 0.013), 6)
    up = np.round(rng.uniform(0.5, 3.0, len(times)), 3)
    up[40:45] = 0.0  # an outage
    trace = _write_trace(tmp_path / "t.csv", times, up)
    sc = _scenario(repo_root, **{"network": {"base": "lte", "trace_csv": str(trace), "loss": 0, "jitter_ms": 0},
                                 "workload.rate_hz": 2, "workload.num_requests": 10,
                                 "workload.warmup_fraction": 0, "workload.stochastic_network": False})
    assert sc.network.uplink_mbps == pytest.approx(read_trace_csv(trace).mean_mbps("up"))
    splits = ["input", "features_9", "classifier_1"]
    req = _sim(sc, prof, splits).requests
    assert (req["device_wait_s"] == 0).all()
    for _, r in req.iterrows():
        bits = float(wire_bytes(r["bytes_sent"], sc.network)) * 8
        t0 = r["t_arrival_s"] + r["device_compute_s"]
        expected = _finish(t0, bits, times, up * 1e6) - t0 + sc.network.rtt_s / 2
        assert abs(r["uplink_s"] - expected) < 1e-9, (r["split"], r["uplink_s"], expected)
    spans = req["uplink_s"] - sc.network.rtt_s / 2
    assert spans.max() > 0.013  # transfers do span change points


def test_constant_trace_equals_no_trace(repo_root, prof, tmp_path):
    base = {"workload.num_devices": 3, "workload.arrival": "poisson", "workload.rate_hz": 20,
            "workload.num_requests": 30, "workload.result_at": "device"}
    lte = si.get_network("lte")
    trace = _write_trace(tmp_path / "c.csv", [0, 1.5, 2.25, 7], [lte.uplink_mbps] * 4, [lte.downlink_mbps] * 4)
    plain = _scenario(repo_root, **base)
    traced = _scenario(repo_root, **base, **{"network.trace_csv": str(trace)})
    assert traced.network.trace is not None and plain.network.trace is None
    assert traced.network.uplink_mbps == lte.uplink_mbps and traced.network.downlink_mbps == lte.downlink_mbps
    splits = ["input", "features_4", "output"]
    a = _sim(plain, prof, splits)
    b = _sim(traced, prof, splits)
    pd.testing.assert_frame_equal(a.requests, b.requests, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(analytic_latency(prof, plain), analytic_latency(prof, traced))


def test_analytic_uses_the_time_weighted_mean(repo_root, prof, tmp_path):
    trace = _write_trace(tmp_path / "m.csv", [0, 1, 4, 5], [8.0, 2.0, 6.0, 99.0])  # last row only holds
    tr = read_trace_csv(trace)
    assert tr.mean_mbps("up") == pytest.approx((8 * 1 + 2 * 3 + 6 * 1) / 5) and tr.downlink_mbps is None
    traced = _scenario(repo_root, **{"network.trace_csv": str(trace)})
    fixed = _scenario(repo_root, **{"network.uplink_mbps": 4.0})
    assert traced.network.downlink_mbps == si.get_network("lte").downlink_mbps  # no downlink column
    pd.testing.assert_frame_equal(analytic_latency(prof, traced), analytic_latency(prof, fixed))


def test_trace_path_is_relative_to_the_yaml_naming_it(repo_root, tmp_path):
    (tmp_path / "traces").mkdir()
    _write_trace(tmp_path / "traces" / "x.csv", [0, 2], [3.0, 5.0])
    data = yaml.safe_load((repo_root / "scenarios/demo.yaml").read_text())
    data["network"] = {"base": "lte", "trace_csv": "traces/x.csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    sc = si.load_scenario(tmp_path / "s.yaml")
    assert sc.network.trace_csv == str((tmp_path / "traces" / "x.csv").resolve())
    again = tmp_path / "resolved.yaml"
    again.write_text(sc.to_yaml())
    assert si.load_scenario(again).model_dump() == sc.model_dump()
    # The bundled profile names its trace relative to itself.
    drive = si.get_network("lte_drive")
    assert drive.trace_csv == str((repo_root / "profiles/networks/traces/lte_drive.csv").resolve())
    assert "SYNTHETIC" in (repo_root / "profiles/networks/traces/lte_drive.csv").read_text().splitlines()[0]


def test_bundled_trace_scenario_runs(repo_root):
    res = si.run(si.load_scenario(repo_root / "scenarios/lte_drive.yaml"))
    assert res.sim is not None and res.recommended is not None
    # The fade and the handover gap make the big transfers queue far beyond the mean-rate figure.
    ana = si.run(si.load_scenario(repo_root / "scenarios/lte_drive.yaml", overrides={"analysis.engine": "analytic"}))
    point = ("features_5", "none")
    assert res.table.loc[point, "latency_p95_s"] > ana.table.loc[point, "latency_s"]
    # 64 kB at 10 Hz is more than the trace's mean rate carries: unbounded in both engines.
    point = ("features_0", "none")
    assert ana.table.loc[point, "uplink_utilisation"] > 1 and res.table.loc[point, "overload"] == "uplink"
    assert np.isinf(res.table.loc[point, "latency_p95_s"]) and np.isinf(ana.table.loc[point, "latency_s"])


@pytest.mark.parametrize("text, needle", [
    ("time_s,uplink_mbps\n0,5\n1,5\n1,4\n", "must increase"),
    ("time_s,uplink_mbps\n0,5\n1,-2\n", "must be >= 0"),
    ("time_s,downlink_mbps\n0,5\n", "missing column 'uplink_mbps'"),
    ("time_s,uplink_mbps,latency\n0,5,1\n", "unknown column"),
    ("time_s,uplink_mbps\n0.5,5\n", "must be 0"),
    ("time_s,uplink_mbps\n0,5\n1,0\n", "last uplink_mbps must be > 0"),
    ("time_s,uplink_mbps\n0,fast\n", "not a number"),
    ("# only a comment\n", "empty trace"),
])
def test_bad_trace_files_are_one_line_errors(tmp_path, text, needle):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=needle) as info:
        read_trace_csv(p)
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)
    with pytest.raises(si.UserError) as info:
        si.load_scenario(_demo_copy(tmp_path), overrides={"network.trace_csv": "bad.csv"})
    assert info.value.field == "network.trace_csv" and needle in info.value.message


def _demo_copy(tmp_path):
    from pathlib import Path

    path = tmp_path / "scenario.yaml"
    path.write_text((Path(__file__).resolve().parent.parent / "scenarios/demo.yaml").read_text())
    return path


def test_evaluate_on_a_prepared_run_equals_a_full_run(repo_root):
    """The what-if fast path: reuse the heavy stages, change the link, get the full run's answer."""
    base = si.load_scenario(repo_root / "scenarios/demo.yaml")
    prep = si.prepare(base)
    for over in ({"network": "wifi5"}, {"network.uplink_mbps": 0.8, "qos.max_latency_ms": 200},
                 {"workload.num_devices": 3, "device": "jetson_nano"}):
        sc = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)
        fast = si.evaluate(sc, prep).table
        full = si.run(sc).table
        pd.testing.assert_frame_equal(fast, full)
    assert not si.evaluate(si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"network": "3g"}),
                           prep).table.equals(si.evaluate(base, prep).table)
