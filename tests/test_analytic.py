"""The analytic latency model against closed forms."""


import pytest

import splitimpera as si
from splitimpera.latency.analytic import analytic_latency
from splitimpera.latency.link import contention_share, wire_bytes
from splitimpera.latency.transport import transfer_latency_s


def _scenario(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def test_closed_form_ideal_device_and_link(prof, repo_root):
    """Efficiency 1, no overhead, unbounded memory (the roofline is compute bound), no loss,
    MTU ≫ payload: every term has a textbook value."""
    sc = _scenario(repo_root, **{
        "device": {"name": "ideal", "compute": {"peak_gflops": 10, "efficiency": {"conv": 1, "linear": 1, "other": 1},
                                                 "layer_overhead_us": 0},
                   "memory": {"capacity_gb": 1, "bandwidth_gbps": 1e12}, "power": {"idle_w": 0, "active_w": 2}},
        "server": {"base": "server_t4", "compute": {"layer_overhead_us": 0,
                                                     "efficiency": {"conv": 1, "linear": 1, "other": 1}},
                   "memory": {"bandwidth_gbps": 1e12}},
        "network": {"name": "ideal", "uplink_mbps": 8, "downlink_mbps": 16, "rtt_ms": 10, "mtu_bytes": 1_000_000,
                    "header_bytes": 0},
        "workload.result_at": "device",
    })
    lat = analytic_latency(prof, sc)
    srv = si.get_device("server_t4").compute.peak_gflops * 1e9 / 2
    for split in ["input", "features_9", "classifier_1"]:
        r, p = lat.loc[split], prof.loc[split]
        assert r["device_compute_s"] == pytest.approx(p["head_flops"] / 5e9)  # 10 GFLOP/s = 5 G MAC/s
        assert r["uplink_s"] == pytest.approx(p["tx_bytes"] * 8 / 8e6 + 0.005)
        assert r["server_compute_s"] == pytest.approx(p["tail_flops"] / srv)
        assert r["downlink_s"] == pytest.approx(8 * 8 / 16e6 + 0.005)
        assert r["latency_s"] == pytest.approx(r[["device_compute_s", "uplink_s", "server_compute_s",
                                                  "downlink_s"]].sum())
        assert r["energy_j"] == pytest.approx(2 * r["device_compute_s"])  # no radio power given
    out = lat.loc["output"]
    assert out["uplink_s"] == 0 and out["downlink_s"] == 0 and out["bytes_sent"] == 0
    assert lat.loc["input", "device_compute_s"] == 0


def test_packetisation_and_contention():
    net = si.get_network("lte")  # a contention list (the Wi-Fi profiles' curves come from their PHY)
    payload = net.payload_per_packet * 3 + 1  # four packets
    assert wire_bytes(payload, net) == payload + 4 * net.header_bytes
    # The contention curve is interpolated between its points and starts at 1.
    pts = dict(net.contention)
    assert contention_share(net, 1) == 1.0
    assert contention_share(net, 2) == pytest.approx(pts[2])
    (n0, f0), (n1, f1) = next((a, b) for a, b in zip(net.contention, net.contention[1:]) if b[0] - a[0] > 1)
    mid = (n0 + n1) / 2
    assert contention_share(net, mid) == pytest.approx(f0 + (f1 - f0) * (mid - n0) / (n1 - n0))
    # UDP: serialisation at the station's share of the rate plus half the RTT, in closed form.
    udp = net.model_copy(update={"transport": "udp", "header_bytes": 28, "loss": 0.0})
    wire = wire_bytes(1e6, udp)
    for n in (1, 4):
        assert transfer_latency_s(udp, 10**6, stations=n) == pytest.approx(
            wire * 8 / (udp.uplink_bps * pts[n]) + udp.rtt_s / 2)


def test_payload_dtype_and_result_location(prof, repo_root):
    from splitimpera.latency.engine import point_frame

    fp32 = analytic_latency(prof, _scenario(repo_root))
    # The old key still loads, and means the nominal bottleneck (sizes only, nothing measured).
    old = _scenario(repo_root, **{"workload.payload_dtype": "int8"})
    sc = _scenario(repo_root, **{"bottleneck.name": "int8", "bottleneck.nominal": True})
    assert old.bottleneck.name == "int8" and old.bottleneck.nominal
    assert old.model_dump() == sc.model_dump()
    assert _scenario(repo_root, **{"workload.payload_dtype": "float32"}).model_dump() == \
        _scenario(repo_root).model_dump()
    # int8 sends one byte per element plus its range (lo and scale, fp32): 8 B more than the old key.
    prep = si.prepare(old)
    pts = prep.points.table
    assert list(pts.index.get_level_values("bottleneck").unique()) == ["int8"]
    int8 = analytic_latency(point_frame(prof, pts), old).xs("int8", level="bottleneck")
    assert int8.loc["features_4", "bytes_sent"] == fp32.loc["features_4", "bytes_sent"] // 4 + 8
    assert int8.loc["features_4", "uplink_s"] < fp32.loc["features_4", "uplink_s"]
    acc = pts.xs("int8", level="bottleneck")
    assert (acc.drop(index="output")["accuracy_source"] == "full model (nominal)").all()
    assert (acc["accuracy"] == prep.full_accuracy).all()
    # float16: two bytes per element, no side information.
    fp16 = si.prepare(_scenario(repo_root, **{"workload.payload_dtype": "float16"})).points.table
    assert fp16.at[("features_4", "fp16"), "bytes_sent"] * 2 == fp32.loc["features_4", "bytes_sent"]
    # Result at the server (default): no downlink, and `output` sends the 8-byte prediction.
    assert (fp32["downlink_s"] == 0).all() and fp32.loc["output", "bytes_sent"] == 8


def test_more_bandwidth_never_hurts(prof, repo_root):
    slow = analytic_latency(prof, _scenario(repo_root, **{"network.uplink_mbps": 1}))
    fast = analytic_latency(prof, _scenario(repo_root, **{"network.uplink_mbps": 100}))
    assert (fast["latency_s"] <= slow["latency_s"]).all()
    assert (fast.loc["input", "latency_s"] < slow.loc["input", "latency_s"])
