"""Transfers over a link profile: packetisation, loss, contention share, radio energy.

A payload of ``b`` bytes travels in ``ceil(b / (mtu - header))`` packets, each carrying
``header_bytes`` of overhead; with loss probability ``p`` every packet is sent ``1/(1-p)``
times on average (retransmission). One-way latency adds half the RTT (propagation and
protocol delay, held by the link, not by the sender or receiver).
"""

from __future__ import annotations

import numpy as np

from ..config.hardware import NetworkProfile


def wire_bytes(payload_bytes, net: NetworkProfile) -> np.ndarray:
    """Bytes on the air for each payload, headers included, before retransmissions."""
    b = np.asarray(payload_bytes, dtype=float)
    packets = np.ceil(b / net.payload_per_packet)
    return b + packets * net.header_bytes


def contention_share(net: NetworkProfile, stations: int) -> float:
    """Fraction of the link rate one station gets when ``stations`` share the medium.

    Linear interpolation of the profile's curve; beyond its last point the last point's
    aggregate throughput (fraction × stations) is split evenly.
    """
    pts = np.asarray(net.contention, dtype=float)
    n, f = pts[:, 0], pts[:, 1]
    if stations <= n[-1]:
        return float(np.interp(stations, n, f))
    return float(f[-1] * n[-1] / stations)


def transfer_time_s(payload_bytes, net: NetworkProfile, direction: str = "up", stations: int = 1) -> np.ndarray:
    """Expected serialisation time of each payload (no propagation), seconds."""
    rate = (net.uplink_bps if direction == "up" else net.downlink_bps) * contention_share(net, stations)
    return wire_bytes(payload_bytes, net) * 8.0 / rate / (1.0 - net.loss)


def radio_power_w(net: NetworkProfile, direction: str = "up", stations: int = 1) -> float:
    """Huang et al. (MobiSys 2012): P = alpha × throughput_Mbps + beta, watts."""
    r = net.radio
    if direction == "up":
        mbps = net.uplink_mbps * contention_share(net, stations)
        return (r.alpha_up_mw_per_mbps * mbps + r.beta_mw) * 1e-3
    mbps = net.downlink_mbps * contention_share(net, stations)
    return (r.alpha_down_mw_per_mbps * mbps + r.beta_mw) * 1e-3
