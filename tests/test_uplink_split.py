"""The terminal splits the uplink into propagation (RTT/2) and transmission (demo scenario)."""

import numpy as np
import pytest

import splitimpera as si
from splitimpera.latency.link import wire_bytes
from splitimpera.report.text import render_result


def test_uplink_is_rtt_half_plus_transmission_at_the_links_rate(demo_scenario):
    # One packet, no loss, one request alone: the transfer is RTT/2 plus the bytes at the rate.
    sc = demo_scenario(**{"data.source": "none", "qos.min_accuracy": None, "device": "stm32h7", "network": "catm1",
                          "network.loss": 0, "analysis.engine": "analytic", "qos.max_latency_ms": 1000})
    res = si.run(sc)
    out = render_result(res, top=30)
    head = next(line for line in out.splitlines() if line.startswith("rank"))
    assert "RTT/2 ms" in head and "transmit ms" in head and "uplink ms" not in head
    net = sc.network
    for split in ("output", "classifier_1"):
        row = next(line for line in out.splitlines() if line.split()[1:2] == [split])
        cells = row.split()
        b = res.table.loc[(split, "none"), "bytes_sent"]
        tx_ms = float(wire_bytes(b, net)) * 8 / net.uplink_bps * 1e3
        assert res.table.loc[(split, "none"), "uplink_s"] * 1e3 == pytest.approx(net.rtt_ms / 2 + tx_ms)
        assert f"{net.rtt_ms / 2:.3g}" in cells and f"{tx_ms:.3g}" in cells


def test_breakdown_splits_the_uplink(repo_root):
    from splitimpera.report.view import UPLINK_PARTS, View

    res = si.run(si.load_scenario("demo", {"data.source": "none", "qos.min_accuracy": None,
                                           "analysis.engine": "analytic"}))
    v = View.of(res)
    st = v.stages()
    sent = res.table["uplink_s"] > 0
    half = res.scenario.network.rtt_s / 2
    np.testing.assert_allclose(st.loc[sent, UPLINK_PARTS[0]], half)
    np.testing.assert_allclose(st[list(UPLINK_PARTS)].sum(axis=1), res.table["uplink_s"].fillna(0), rtol=1e-12)
    np.testing.assert_allclose(st.sum(axis=1), res.table["latency_s"], rtol=1e-9)
