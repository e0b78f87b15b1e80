"""Overload: a resource at or over its capacity has no steady state.

The closed-form utilisation of each resource (device, uplink, server with batching) is
checked against the discrete-event simulation run anyway: just under 1 the waits stay
bounded, just over 1 they grow with the run. Both engines then report such points as
unbounded and infeasible, say which resource and by how much, and advise on the rate.
"""

import numpy as np
import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.latency.engine import latency_table, point_frame, utilisation
from splitimpera.latency.simulation import simulate_point

FAST = {"data.source": "none", "qos.min_accuracy": None, "workload.stochastic_network": False}
N_REQ = 400


@pytest.fixture(scope="module")
def prepared(demo_scenario):
    return si.prepare(demo_scenario(**FAST))


def _growth(prep, sc, point, wait_col):
    """Mean wait at one resource in the last quarter of a device's requests minus the first
    quarter (seconds): about 0 when stable, growing with the run when overloaded."""
    frame = point_frame(prep.profile, prep.points.table)
    req = simulate_point(point, frame, sc)
    req = req[req["device_id"] == 0]
    q = len(req) // 4
    return req[wait_col].iloc[-q:].mean() - req[wait_col].iloc[:q].mean()


CASES = {
    # resource: (point, overrides, wait column of the simulation)
    "device": (("classifier_1", "none"), {"network": "ethernet"}, "device_wait_s"),
    "uplink": (("input", "none"), {}, "uplink_s"),
    "server": (("input", "none"), {"network": "ethernet", "server": "rpi4", "workload.num_devices": 3},
               "server_wait_s"),
    "server batched": (("input", "none"), {"network": "ethernet", "server": "rpi4", "workload.max_batch": 4,
                                           "workload.server_workers": 2, "workload.batch_cost_fraction": 0.5},
                       "server_wait_s"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_closed_form_utilisation_predicts_where_the_simulated_queue_grows(case, prepared, demo_scenario):
    point, over, wait_col = CASES[case]
    resource = case.split()[0]
    base = demo_scenario(**FAST, **over, **{"workload.rate_hz": 1, "workload.num_requests": N_REQ})
    frame = point_frame(prepared.profile, prepared.points.table)
    rho_1hz = utilisation(frame, base).loc[point, f"{resource}_utilisation"]  # linear in the rate
    growth = {}
    for rho in (0.9, 1.1):
        sc = demo_scenario(**FAST, **over, **{"workload.rate_hz": rho / rho_1hz, "workload.num_requests": N_REQ})
        load = utilisation(frame, sc).loc[point]
        assert load[f"{resource}_utilisation"] == pytest.approx(rho)
        assert (load["overload"] == resource) == (rho > 1), "only the resource pushed over 1 is overloaded"
        growth[rho] = _growth(prepared, sc, point, wait_col)
        period = 1 / sc.workload.rate_hz
        if rho > 1:
            # Overloaded, deterministic: the backlog grows by (rho - 1) periods of work every
            # period, so the last quarter's mean wait exceeds the first's by that times the
            # distance between the quarters' centres, 3/4 of the kept requests.
            kept = N_REQ - int(sc.workload.warmup_fraction * N_REQ)
            assert growth[rho] == pytest.approx(0.75 * kept * (rho - 1) * period, rel=0.05)
        else:
            assert abs(growth[rho]) < 0.1 * period, "stable: the wait does not grow with the run"


@pytest.mark.parametrize("engine", ["simpy", "analytic"])
def test_overloaded_points_are_unbounded_and_infeasible_in_both_engines(engine, prepared, demo_scenario):
    # Device utilisation 1.2 at classifier_1 (rate × head time), so it is overloaded; the
    # `input` split runs nothing on the device and sends 4 kB over gigabit Ethernet: stable.
    base = demo_scenario(**FAST, network="ethernet", **{"analysis.engine": engine})
    head_s = si.evaluate(base, prepared).table.loc[("classifier_1", "none"), "device_compute_s"]
    rate = 1.2 / head_s
    sc = demo_scenario(**FAST, network="ethernet", **{"analysis.engine": engine, "workload.rate_hz": rate})
    sim, lat = latency_table(sc, prepared.profile, prepared.points.table)
    t = si.evaluate(sc, prepared).table
    over = t["device_utilisation"] >= 1
    assert over.loc[("classifier_1", "none")] and not over.loc[("input", "none")]
    np.testing.assert_allclose(t["device_utilisation"], rate * t["device_compute_s"])
    assert np.isinf(t.loc[over, "latency_s"]).all() and np.isinf(t.loc[over, "device_wait_s"]).all()
    assert np.isfinite(t.loc[~over, "latency_s"]).all()
    assert not t.loc[over, "feasible"].any()
    r = t.loc[("classifier_1", "none")]
    assert r["reason"] == "device overloaded (1.2× its capacity), latency unbounded"
    # The most it can serve is the device's own rate: 1 / head time.
    assert r["throughput_rps"] == pytest.approx(1 / head_s)
    if sim is not None:  # overloaded points are not simulated (a finite run's mean means nothing)
        simulated = set(sim.summary.index)
        assert simulated == set(t.index[~over])


def test_cli_names_the_overloaded_resource_and_advises_the_rate(capsys):
    rc = main(["simulate", "demo", "--set", "data.source=none", "--set", "qos.min_accuracy=null",
               "--set", "workload.rate_hz=1e9"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "No split meets the QoS" in out
    assert "overloaded (" in out and "latency unbounded" in out
    flat = " ".join(out.split())  # prose wraps to the terminal's width
    assert "a request rate below" in flat and "Hz per device (now 1000000000)" in flat and "e+" not in out
    assert "a latency limit of" not in out  # the old advice: a finite limit for an unbounded latency
    assert "∞" in out
