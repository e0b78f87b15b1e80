"""Per-request overhead, server dispatch and the link's message floor
(:mod:`splitimpera.latency.overhead`): a profile that states them gets them in both engines,
in the utilisation the overload check reads, and so in feasibility and the advice."""

import numpy as np
import pytest

import splitimpera as si
from splitimpera.latency.engine import point_frame, utilisation

FAST = {"data.source": "none", "qos.min_accuracy": None, "workload.stochastic_network": False,
        "network": "ethernet", "server": "rpi4"}
POINT = ("input", "none")  # the server runs the whole model; the device only sends


@pytest.fixture(scope="module")
def prepared(demo_scenario):
    return si.prepare(demo_scenario(**FAST))


@pytest.mark.parametrize("engine", ["analytic", "simpy"])
def test_overhead_puts_a_point_past_capacity_that_compute_alone_is_under(engine, prepared, demo_scenario):
    base = demo_scenario(**FAST, **{"analysis.engine": engine})
    tail_s = si.evaluate(base, prepared).table.loc[POINT, "server_compute_s"]
    rate = 0.8 / tail_s  # compute alone: the server at 80 %
    over = {**FAST, "analysis.engine": engine, "workload.rate_hz": rate, "workload.num_requests": 200}
    plain = si.evaluate(demo_scenario(**over), prepared).table.loc[POINT]
    assert plain["server_utilisation"] == pytest.approx(0.8) and plain["overload"] == ""
    assert np.isfinite(plain["latency_s"])
    # Half the tail time again of software work per request on the server: 1.2 × its capacity.
    request_us = 0.5 * tail_s * 1e6
    t = si.evaluate(demo_scenario(**over, **{"server.overhead.request_us": request_us}), prepared).table
    r = t.loc[POINT]
    assert r["server_utilisation"] == pytest.approx(1.2)
    assert r["overload"] == "server" and not r["feasible"] and np.isinf(r["latency_s"])
    assert r["reason"] == "server overloaded (1.2× its capacity), latency unbounded"
    assert r["throughput_rps"] == pytest.approx(1 / (1.5 * tail_s))


def test_overhead_is_counted_per_request_when_the_server_batches(prepared, demo_scenario):
    over = {**FAST, "workload.max_batch": 4, "workload.batch_cost_fraction": 0.5, "workload.rate_hz": 10,
            "server.overhead.request_us": 100.0, "server.overhead.per_byte_us": 0.01}
    sc = demo_scenario(**over)
    frame = point_frame(prepared.profile, prepared.points.table)
    load = utilisation(frame, sc).loc[POINT, "server_utilisation"]
    bare = utilisation(frame, demo_scenario(**{k: v for k, v in over.items() if "overhead" not in k})).loc[POINT]
    o_s = (100.0 + 0.01 * frame.loc[POINT, "tx_bytes"]) * 1e-6
    # Batching shares the compute, not the per-request work: 4 requests, 4 overheads, per 4 served.
    assert load == pytest.approx(bare["server_utilisation"] + 10 * o_s)


def test_both_engines_add_overhead_dispatch_and_the_message_floor_alike(prepared, demo_scenario):
    over = {**FAST, "workload.rate_hz": 5, "workload.num_requests": 20,
            "device.overhead.request_us": 300.0, "device.overhead.per_byte_us": 0.02,
            "server.overhead.request_us": 150.0, "server.overhead.per_byte_us": 0.01,
            "server.overhead.dispatch_us": 70.0, "network.message_floor_ms": 0.25}
    bare = {k: v for k, v in over.items() if "overhead" not in k and "floor" not in k}
    tabs = {(e, b): si.evaluate(demo_scenario(**(over if b else bare), **{"analysis.engine": e}), prepared).table
            for e in ("analytic", "simpy") for b in (False, True)}
    cols = ["device_compute_s", "uplink_s", "server_wait_s", "server_compute_s", "latency_s"]
    # Nothing queues at 5 Hz and nothing is random: the simulation's means are the closed form.
    np.testing.assert_allclose(tabs["simpy", True][cols], tabs["analytic", True][cols], rtol=1e-9, atol=1e-12)
    a, b = tabs["analytic", True], tabs["analytic", False]
    sent = a["bytes_sent"].to_numpy(dtype=float)
    out = a.index.get_level_values("split") == "output"
    np.testing.assert_allclose(a["device_compute_s"] - b["device_compute_s"], (300 + 0.02 * sent) * 1e-6)
    np.testing.assert_allclose((a["server_compute_s"] - b["server_compute_s"])[~out], (150 + 0.01 * sent[~out]) * 1e-6)
    np.testing.assert_allclose(a["server_wait_s"][~out], 70e-6)
    assert (a["uplink_s"] >= 0.25e-3 - 1e-12).all() and (a["uplink_s"] >= b["uplink_s"]).all()
    # A profile without the fields behaves as before: no wait, no percentiles in the closed form.
    assert (b["server_wait_s"] == 0).all() and b["latency_p95_s"].isna().all()
