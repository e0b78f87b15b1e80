"""A handful of transfers through ns-3 against the transport model (runs with the [ns3] extra).

ns-3's import takes ~10 s; the transfers themselves a few seconds. The full grid is
``benchmarks/bench_network_fidelity.py``.
"""

import math
import statistics

import pytest

from splitimpera.latency import ns3
from splitimpera.latency.transport import Path, expected_transfer, udp_transfer_s

pytestmark = pytest.mark.skipif(not ns3.available(), reason="ns-3 (the [ns3] extra) is not installed")

TCP_HDR, UDP_HDR = 54, 30  # IPv4 + TCP with timestamps / UDP, + ns-3's 2-byte PPP header


@pytest.fixture(scope="module")
def p2p():
    from splitimpera.latency.ns3 import p2p

    p2p._lib()
    return p2p


def _path(rate, rtt, loss=0.0):
    return Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=loss, mss=1448, header=TCP_HDR, variant="newreno")


@pytest.mark.parametrize("rate,rtt,size,conn", [
    (5.85e6, 0.07, 512, "new"), (5.85e6, 0.07, 64_000, "new"), (5.85e6, 0.15, 256_000, "idle"),
    (100e6, 0.01, 1_000_000, "idle"), (1e6, 0.3, 16_000, "new"),
])
def test_lossless_tcp_matches_ns3(p2p, rate, rtt, size, conn):
    ref = p2p.tcp_transfer_s(rate, rtt, size, 0.0, connection=conn)
    assert expected_transfer(_path(rate, rtt), size, conn).time_s == pytest.approx(ref, rel=0.01)
    # The old model (bytes / rate + RTT/2) misses slow start's round trips here.
    old = (size + math.ceil(size / 1448) * TCP_HDR) * 8 / rate + rtt / 2 + (rtt if conn == "new" else 0)
    if size >= 64_000:
        assert abs(old - ref) / ref > 0.1


def test_lossy_tcp_mean_matches_ns3(p2p):
    rate, rtt, size, loss = 5.85e6, 0.07, 64_000, 0.01
    runs = [p2p.tcp_transfer_s(rate, rtt, size, loss, connection="idle", run=r) for r in range(1, 151)]
    ref = statistics.fmean(runs)
    clean = p2p.tcp_transfer_s(rate, rtt, size, 0.0, connection="idle")
    assert ref > clean * 1.05  # loss costs something measurable at this size
    ours = expected_transfer(_path(rate, rtt, loss), size, "idle").time_s
    assert ours == pytest.approx(ref, rel=0.12)


def test_udp_time_and_frame_loss_match_ns3(p2p):
    rate, rtt, size = 20e6, 0.05, 64_000
    path = Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=0.0, mss=1472, header=UDP_HDR, transport="udp")
    t, lost = p2p.udp_frames(rate, rtt, size, 0.0, frames=3)
    assert lost == 0 and float(udp_transfer_s(path, size)) == pytest.approx(t, rel=1e-3)
    frames = 600
    _, lost = p2p.udp_frames(rate, rtt, size, 0.01, frames=frames)
    expect = 1 - 0.99 ** math.ceil(size / 1472)
    assert abs(lost - expect) < 4 * math.sqrt(expect * (1 - expect) / frames)
