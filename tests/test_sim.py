"""The discrete-event simulation against closed forms, the analytic model and itself."""

import math

import numpy as np
import pandas as pd
import pytest
import simpy

import splitimpera as si
from splitimpera.latency.analytic import analytic_latency
from splitimpera.latency.link import contention_share
from splitimpera.latency.engine import point_frame
from splitimpera.latency.simulation import REQUEST_COLUMNS, Processor, SharedLink, Sink, Source, simulate

COMPONENT_COLUMNS = ["device_compute_s", "uplink_s", "server_compute_s", "downlink_s", "latency_s", "energy_j",
                     "bytes_sent"]


def _scenario(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def _sim(sc, prof, splits=None):
    """Simulate ``splits`` (topological order; default all) of ``prof`` sending the fp32 tensor."""
    names = [n for n in prof.index if splits is None or n in set(splits)]
    return simulate(sc, point_frame(prof.loc[names]))


# --------------------------------------------------------------------------------------------
# Queueing closed forms, on the server component alone


def _queue(n, lam, service_s, seed, *, service="deterministic", workers=1, max_batch=1, batch_timeout_s=0.0,
           batch_cost_fraction=1.0, arrivals=None):
    """Poisson arrivals (or the given times) into one Processor; (enter, start, end) arrays."""
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1 / lam, n)) if arrivals is None else np.asarray(arrivals, dtype=float)
    env = simpy.Environment()
    enter, start, end, done = ([math.nan] * n for _ in range(4))
    proc = Processor(env, service_s, Sink(env, done), enter=enter, start=start, end=end, workers=workers,
                     max_batch=max_batch, batch_timeout_s=batch_timeout_s, batch_cost_fraction=batch_cost_fraction,
                     service=service, rng=rng)
    Source(env, range(n), arr.tolist(), proc)
    env.run()
    assert done == end  # the server hands every request on when its batch ends
    return np.array(enter), np.array(start), np.array(end)


@pytest.mark.parametrize("service, seed", [("deterministic", 1), ("exponential", 2)])
def test_m_d_1_and_m_m_1_mean_wait(service, seed):
    """ρ = 0.5: M/D/1 Wq = ρS/(2(1-ρ)) = S/2, M/M/1 Wq = ρS/(1-ρ) = S (Pollaczek-Khinchine)."""
    n, lam, s = 200_000, 50.0, 0.01
    enter, start, end = _queue(n, lam, s, seed, service=service)
    rho = lam * s
    expected = rho * s / (1 - rho) * (0.5 if service == "deterministic" else 1.0)
    wait = (start - enter)[n // 20:]  # drop the empty-system start
    err = wait.mean() / expected - 1
    assert abs(err) < 0.03, f"{service}: mean wait {wait.mean():.6f} s vs {expected:.6f} s ({err:+.2%})"
    if service == "exponential":  # the service draws really are exponential with the right mean
        svc = end - start
        assert svc.mean() == pytest.approx(s, rel=0.02) and svc.std() == pytest.approx(s, rel=0.03)
    else:
        assert np.allclose(end - start, s, rtol=0, atol=1e-12)


def test_two_workers_m_m_2_erlang_c():
    """M/M/c with c = 2 workers, ρ = 0.5 each: Wq = ErlangC(c, a) · S / (c − a), a = λS."""
    n, lam, s = 300_000, 100.0, 0.01
    enter, start, _ = _queue(n, lam, s, 3, service="exponential", workers=2)
    a = lam * s  # offered load, Erlang
    c = 2
    rho = a / c
    top = a ** c / math.factorial(c) / (1 - rho)
    erlang_c = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
    expected = erlang_c * s / (c - a)
    wait = (start - enter)[n // 20:]
    assert wait.mean() == pytest.approx(expected, rel=0.03)


def test_dynamic_batching_fills_or_times_out():
    s, c = 0.010, 0.25
    # Four requests at once, max batch 4: one batch at once, t(4) = s (1 + 3c).
    enter, start, end = _queue(4, 1, s, 0, max_batch=4, batch_timeout_s=1.0, batch_cost_fraction=c,
                               arrivals=[0.0] * 4)
    assert np.all(start == 0) and np.allclose(end, s * (1 + 3 * c))
    # Three requests, the fourth never comes: they leave the queue when the oldest has waited the timeout.
    enter, start, end = _queue(3, 1, s, 0, max_batch=4, batch_timeout_s=0.005, batch_cost_fraction=c,
                               arrivals=[0.0, 0.001, 0.002])
    assert np.allclose(start, 0.005) and np.allclose(end, 0.005 + s * (1 + 2 * c))
    # Batch 1 (no batching) is exactly the single-request time, back to back.
    enter, start, end = _queue(3, 1, s, 0, arrivals=[0.0] * 3)
    assert np.allclose(start, [0, s, 2 * s]) and np.allclose(end - start, s, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------------------
# The shared link


def _link(net, transfers, rate_bps=1e6):
    """transfers: list of (station, bits) put at t=0 in order; returns per-request finish times."""
    n = len(transfers)
    env = simpy.Environment()
    done, radio = [math.nan] * n, [0.0] * n
    link = SharedLink(env, rate_bps, lambda k: contention_share(net, k), Sink(env, done),
                      bits=[b for _, b in transfers], delay_s=[0.0] * n, station=[s for s, _ in transfers],
                      radio_j=radio)
    for rid in range(n):
        link.put(rid)
    env.run()
    return np.array(done)


@pytest.mark.parametrize("stations", [1, 2, 3, 4, 8, 40])
def test_saturated_stations_each_get_their_contention_share(stations):
    net = si.get_network("wifi5")  # curve points at 1, 2, 4, 8, ..., 32; 3 interpolates, 40 extrapolates
    rate, per_station, each = 1e6, 10, 8_000.0
    transfers = [(s, each) for _ in range(per_station) for s in range(stations)]
    done = _link(net, transfers, rate)
    station = np.array([s for s, _ in transfers])
    for s in range(stations):
        thr = per_station * each / done[station == s].max()
        assert thr == pytest.approx(rate * contention_share(net, stations), rel=0.02)
    # Shares really differ with n: the per-station rate is not rate/n (Bianchi's curve is below it).
    if stations > 1:
        assert contention_share(net, stations) != pytest.approx(1 / stations, rel=0.02)


def test_rates_are_recomputed_when_a_station_leaves():
    net = si.get_network("lte")
    share2 = contention_share(net, 2)
    rate = 1e6
    done = _link(net, [(0, 1000.0), (1, 5000.0)], rate)
    t_a = 1000.0 / (rate * share2)
    assert done[0] == pytest.approx(t_a, rel=1e-12)
    # Station 1 got share(2) until t_a, then the whole link.
    assert done[1] == pytest.approx(t_a + (5000.0 - 1000.0) / rate, rel=1e-12)


# --------------------------------------------------------------------------------------------
# The whole simulation


@pytest.mark.parametrize("result_at", ["server", "device"])
def test_without_queueing_or_randomness_it_equals_the_analytic_model(prof, repo_root, result_at):
    sc = _scenario(repo_root, **{"network": "wifi5", "network.loss": 0.02, "workload.result_at": result_at,
                                 "workload.rate_hz": 2, "workload.num_requests": 6,
                                 "workload.stochastic_network": False})
    ana = analytic_latency(prof, sc)
    res = _sim(sc, prof)
    req = res.requests
    assert list(req.columns) == REQUEST_COLUMNS
    assert list(res.summary.index) == [(n, "none") for n in prof.index]
    assert len(req) == len(prof) * 6  # warm-up: floor(10 % of 6) = 0 requests
    for col in ["device_wait_s", "server_wait_s"]:
        assert (req[col].abs() < 1e-12).all()
    per_split = ana.loc[req["split"]].reset_index(drop=True)
    for col in COMPONENT_COLUMNS:
        diff = (req[col] - per_split[col]).abs().max()
        assert diff < 1e-9, f"{col}: off by {diff}"
    # The degenerate splits follow analytic.py's result_at semantics.
    out = req[req["split"] == "output"]
    if result_at == "device":
        assert (out["uplink_s"] == 0).all() and (out["bytes_sent"] == 0).all()
    else:
        assert (out["uplink_s"] > 0).all() and (out["bytes_sent"] == 8).all()
    assert (out["server_compute_s"] == 0).all() and (out["downlink_s"] == 0).all()


def test_same_seed_same_table_other_seed_differs(prof, repo_root):
    over = {"workload.arrival": "poisson", "workload.rate_hz": 30, "workload.num_devices": 3,
            "workload.num_requests": 40, "network.loss": 0.05}
    splits = ["input", "features_4", "output"]
    a = _sim(_scenario(repo_root, **over), prof, splits).requests
    b = _sim(_scenario(repo_root, **over), prof, splits).requests
    c = _sim(_scenario(repo_root, seed=1, **over), prof, splits).requests
    assert a.equals(b)
    assert not a.equals(c)
    assert not np.allclose(a["latency_s"], c["latency_s"])
    # A split's results do not depend on the others simulated.
    alone = _sim(_scenario(repo_root, **over), prof, ["features_4"]).requests
    assert alone.equals(a[a["split"] == "features_4"].reset_index(drop=True))
    # Randomness reaches the link: jitter and retransmissions spread the uplink time.
    up = a[a["split"] == "input"]["uplink_s"]
    assert up.std() > 0


def test_common_random_numbers_across_splits(prof, repo_root):
    """Every split sees the same arrivals and, per request, the same link draws."""
    over = {"workload.arrival": "poisson", "workload.rate_hz": 2, "workload.num_requests": 60,
            "network.loss": 0.05, "network.jitter_ms": 5}
    # features_14 and classifier_0 send the same 4096 bytes: with a light load nothing
    # queues, so each request's uplink time must be identical on both splits.
    assert prof.loc["features_14", "tx_bytes"] == prof.loc["classifier_0", "tx_bytes"]
    req = _sim(_scenario(repo_root, **over), prof, ["input", "features_9", "features_14", "classifier_0"]).requests
    by = {s: g.reset_index(drop=True) for s, g in req.groupby("split")}
    assert np.array_equal(by["input"]["t_arrival_s"], by["features_14"]["t_arrival_s"])
    assert np.allclose(by["features_14"]["uplink_s"], by["classifier_0"]["uplink_s"], rtol=0, atol=1e-12)
    assert by["features_14"]["uplink_s"].std() > 0
    # Losses are coupled through one loss pattern per request over transmission numbers: a
    # request whose larger transfer lost nothing lost nothing on the smaller one either (its
    # transmissions are a prefix). (A larger payload may still be luckier: a loss near the end
    # of the small one is a tail loss waiting for a timeout, while the large one's three later
    # segments fast-retransmit it — TCP, not noise.)
    assert prof.loc["features_9", "tx_bytes"] == 2 * prof.loc["features_14", "tx_bytes"]
    req = _sim(_scenario(repo_root, **{**over, "network.jitter_ms": 0}), prof, ["features_9", "features_14"]).requests
    big, small = (req[req["split"] == s]["uplink_s"].to_numpy() for s in ("features_9", "features_14"))
    clean_big = np.isclose(big, big.min(), rtol=0, atol=1e-12)
    assert 0 < clean_big.sum() < len(big)  # some requests lose packets at 5 %, some do not
    assert np.allclose(small[clean_big], small.min(), rtol=0, atol=1e-12)
    assert big.mean() > small.mean()


def test_warmup_removed_and_summary_matches_requests(prof, repo_root):
    over = {"workload.arrival": "poisson", "workload.rate_hz": 40, "workload.num_devices": 2,
            "workload.num_requests": 20, "qos.max_latency_ms": 50, "network": "wifi5"}
    splits = ["input", "features_9"]
    full = _sim(_scenario(repo_root, **over, **{"workload.warmup_fraction": 0}), prof, splits)
    cut = _sim(_scenario(repo_root, **over, **{"workload.warmup_fraction": 0.25}), prof, splits)
    req = cut.requests
    assert len(full.requests) == 2 * 2 * 20 and len(req) == 2 * 2 * 15
    # Dropping the first 5 requests of each device is the only difference.
    f = full.requests
    rank = f.groupby(["split", "device_id"])["t_arrival_s"].rank(method="first")
    expected = f[rank > 5].reset_index(drop=True)
    assert req.equals(expected)
    for (name, bottleneck), row in cut.summary.iterrows():
        assert bottleneck == "none"
        lat = req.loc[req["split"] == name, "latency_s"].to_numpy()
        r = req[req["split"] == name]
        assert row["requests"] == len(lat)
        assert row["latency_mean_s"] == pytest.approx(lat.mean(), rel=1e-12)
        for q in (50, 95, 99):
            assert row[f"latency_p{q}_s"] == np.percentile(lat, q)
        assert row["deadline_miss_ratio"] == pytest.approx(np.mean(lat > 0.050))
        span = (r["t_arrival_s"] + r["latency_s"]).max() - r["t_arrival_s"].min()
        assert row["throughput_rps"] == pytest.approx(len(lat) / span)
        assert row["energy_j"] == pytest.approx(r["energy_j"].mean())
    assert cut.summary.loc[("input", "none"), "deadline_miss_ratio"] < 1


def test_contention_and_server_queueing_show_up_end_to_end(prof, repo_root):
    """Eight devices sending the raw input over a slow link: queueing makes latency exceed the
    one-device analytic figure, and the link's share makes it exceed the 8-station figure too."""
    over = {"network.uplink_mbps": 1, "network.jitter_ms": 0, "network.loss": 0, "workload.rate_hz": 20,
            "workload.num_devices": 8, "workload.num_requests": 30, "workload.arrival": "poisson"}
    sc = _scenario(repo_root, **over)
    res = _sim(sc, prof, ["input"])
    one = analytic_latency(prof, _scenario(repo_root, **{**over, "workload.num_devices": 1})).loc["input"]
    assert res.summary.loc[("input", "none"), "latency_p50_s"] > one["latency_s"]
    assert res.requests["uplink_s"].max() > one["uplink_s"] * 2


def test_unknown_split_is_a_user_error(repo_root):
    with pytest.raises(si.UserError, match=r"splits: unknown split\(s\) nope"):
        si.simulate(_scenario(repo_root), splits=["nope"])


def test_simulate_profiles_the_model_itself(prof, repo_root):
    sc = _scenario(repo_root, **{"workload.num_requests": 5})
    res = si.simulate(sc, splits=["features_4", "input"])
    assert list(res.summary.index) == [("input", "none"), ("features_4", "none")]  # topological, whatever the order asked
    assert res.summary["bytes_sent"].tolist() == prof.loc[["input", "features_4"], "tx_bytes"].tolist()
    assert isinstance(res, si.SimResult)
    with pytest.raises(Exception):
        res.requests = pd.DataFrame()  # frozen
