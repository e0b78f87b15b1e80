"""Unequal per-station shares (``network.unequal_shares``): the draw has ns-3's Jain index
within its sampling error, the shared link serves stations in proportion to their weights
with the curve's aggregate, and the default (off) leaves the link as it was."""

import math

import numpy as np
import pytest
import simpy

import splitimpera as si
from splitimpera.config.hardware import NetworkProfile
from splitimpera.latency.link import contention_share, describe_contention
from splitimpera.latency.share_draw import JAIN_NS3, draw_weights, jain_index, target_jain
from splitimpera.latency.simulation import SharedLink, Sink, common_streams, uplink_weights


def test_jain_index_closed_forms():
    assert jain_index([3, 3, 3]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)  # one takes all: 1/n
    assert jain_index([1, 2]) == pytest.approx(9 / 10)


def test_target_is_ns3_at_its_points_and_falls_beyond():
    for n, j in JAIN_NS3:
        assert target_jain(n) == pytest.approx(j)
    assert target_jain(32) == pytest.approx(0.656)  # ns-3, wifi4 at 32 stations (issue: ~0.65)
    assert 0.656 < target_jain(20) < 0.745 and target_jain(64) < target_jain(32)


@pytest.mark.parametrize("stations", [8, 20, 32])
def test_draw_has_the_stated_jain_index_within_sampling_error(stations):
    rng = np.random.default_rng(7)
    js = np.array([jain_index(draw_weights(stations, rng)) for _ in range(2000)])
    se = js.std(ddof=1) / math.sqrt(len(js))
    # The mean index sits ~0.01 above the target (the index is convex in CV²), far inside
    # one draw's scatter (~0.05), which is what a single simulation sees.
    assert abs(js.mean() - target_jain(stations)) < 0.015 + 3 * se
    assert 0.03 < js.std() < 0.08
    assert (draw_weights(stations, rng) > 0).all()


def _link(transfers, share, weights, rate_bps=1e6):
    n = len(transfers)
    env = simpy.Environment()
    done = [math.nan] * n
    link = SharedLink(env, rate_bps, share, Sink(env, done), bits=[b for _, b in transfers], delay_s=[0.0] * n,
                      station=[s for s, _ in transfers], radio_j=[0.0] * n, weights=weights)
    for rid in range(n):
        link.put(rid)
    env.run()
    return np.array(done)


def test_link_serves_stations_in_proportion_to_their_weights():
    net = si.get_network("wifi5")
    share = lambda k: contention_share(net, k)  # noqa: E731
    rate, each, weights = 1e6, 8_000.0, [0.5, 1.0, 1.5, 1.0]
    transfers = [(s, each) for s in range(4)]
    done = _link(transfers, share, weights, rate)
    # All four send at once: station s at rate·share(4)·4·w_s/Σw until the first ends, etc.
    agg = rate * share(4) * 4
    t_first = each / (agg * 1.5 / 4.0)
    assert done[2] == pytest.approx(t_first, rel=1e-12)
    # Then three (Σw = 2.5) until stations 1 and 3 end, then station 0 alone at the whole rate.
    t_mid = t_first + (each - each / 1.5) / (rate * share(3) * 3 / 2.5)
    assert done[1] == pytest.approx(t_mid, rel=1e-12) and done[3] == pytest.approx(t_mid, rel=1e-12)
    assert done[0] == pytest.approx(t_mid + (each / 0.5 - each) * 0.5 / rate, rel=1e-12)
    # Equal weights are exactly the unweighted link.
    same = [(s, each * (1 + s)) for s in range(3)] * 2
    assert np.allclose(_link(same, share, [1.0, 1.0, 1.0], rate), _link(same, share, None, rate), rtol=1e-12)


def test_saturated_throughput_follows_the_weights_and_keeps_the_aggregate():
    net = si.get_network("wifi4")
    share = lambda k: contention_share(net, k)  # noqa: E731
    rate, per, each = 1e6, 20, 4_000.0
    w = draw_weights(6, np.random.default_rng(3)).tolist()
    transfers = [(s, each) for _ in range(per) for s in range(6)]
    done = _link(transfers, share, w, rate)
    station = np.array([s for s, _ in transfers])
    end = max(done)
    # While all six send, station s gets share(6)·6·w_s/Σw of the rate: the first to finish shows it.
    first = int(np.argmin([done[station == s].max() for s in range(6)]))
    thr = per * each / done[station == first].max()
    assert thr == pytest.approx(rate * share(6) * 6 * w[first] / sum(w), rel=1e-9)
    assert per * each * 6 / end <= rate * share(1) + 1e-6  # never above one station's whole rate


def test_off_by_default_on_from_the_seed_and_said():
    net = si.get_network("wifi4")
    assert net.unequal_shares is False and uplink_weights(net, 12, common_streams(0)["shares"]) is None
    on = NetworkProfile.model_validate({**net.model_dump(), "unequal_shares": True})
    a = uplink_weights(on, 12, common_streams(0)["shares"])
    assert a == uplink_weights(on, 12, common_streams(0)["shares"]) != uplink_weights(on, 12, common_streams(1)["shares"])
    assert len(a) == 12 and uplink_weights(on, 1, common_streams(0)["shares"]) is None
    assert "unequal uplink shares drawn" in describe_contention(on, 12, simulated=True)
    assert "only the simulation draws them" in describe_contention(on, 12, simulated=False)
    assert "equal shares" in describe_contention(net, 12, simulated=True)
    # The streams the simulation already drew are unchanged by the new one (spawned last).
    assert common_streams(0)["arrivals"].random() == np.random.default_rng(
        np.random.SeedSequence(0).spawn(1)[0]).random()


def test_simulation_draws_them_when_asked_and_says_so(repo_root, capsys, monkeypatch):
    from splitimpera.cli import main

    monkeypatch.chdir(repo_root)
    over = {"network": "wifi4", "network.uplink_mbps": 1.0, "workload.num_devices": 6, "workload.num_requests": 60,
            "workload.rate_hz": 20, "analysis.engine": "simpy", "data.source": "none", "qos.min_accuracy": None}
    runs = {}
    for on in (None, False, True):
        extra = {} if on is None else {"network.unequal_shares": on}
        req = si.run(si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={**over, **extra})).sim.requests
        runs[on] = req.sort_values(["split", "device_id", "t_arrival_s"])["uplink_s"].to_numpy()
    assert np.array_equal(runs[None], runs[False])  # off is the default, and changes nothing
    # On: transfers that overlap another station's go at their station's drawn share.
    changed = ~np.isclose(runs[True], runs[False], rtol=1e-9)
    assert 0.05 < changed.mean() < 1.0
    argv = ["simulate", "scenarios/demo.yaml", *[f"--set={k}={'null' if v is None else v}" for k, v in over.items()],
            "--set", "network.unequal_shares=true"]
    assert main(argv) == 0
    assert "unequal uplink shares drawn from the seed" in capsys.readouterr().out
