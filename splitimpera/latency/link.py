"""Transfers over a link profile: packetisation, contention share, radio energy.

A payload of ``b`` bytes travels in ``ceil(b / mss)`` packets (``mss`` = MTU − headers, or
the TCP MSS), each carrying ``header_bytes`` of overhead. How long a transfer takes —
slow start, retransmissions, timeouts, propagation — is :mod:`splitimpera.latency.transport`'s
business (its :func:`~splitimpera.latency.transport.link_transfers` takes a column of payloads).
"""

from __future__ import annotations

import math

import numpy as np

from ..config.hardware import NetworkProfile
from .wifi_airtime import station_share


def wire_bytes(payload_bytes, net: NetworkProfile) -> np.ndarray:
    """Bytes on the air for each payload, headers included, before retransmissions."""
    b = np.asarray(payload_bytes, dtype=float)
    packets = np.ceil(b / net.payload_per_packet)
    return b + packets * net.header_bytes


def contention_share(net: NetworkProfile, stations: int) -> float:
    """Fraction of the link rate one station gets when ``stations`` share the medium.

    An explicit ``contention`` list: linear interpolation of it; beyond its last point the
    last point's aggregate throughput (fraction × stations) is split evenly. Without one, a
    Wi-Fi link's share is the air-time model's for its PHY
    (:func:`splitimpera.latency.wifi_airtime.station_share`, at a whole number of stations:
    interpolated between the two around a fractional one), and any other link's is 1/n.
    """
    if net.contention is not None:
        pts = np.asarray(net.contention, dtype=float)
        n, f = pts[:, 0], pts[:, 1]
        if stations <= n[-1]:
            return float(np.interp(stations, n, f))
        return float(f[-1] * n[-1] / stations)
    phy = net.wifi_phy
    if phy is None:
        return 1.0 / stations if stations > 1 else 1.0
    if stations <= 1:
        return 1.0
    lo = int(math.floor(stations))
    if lo == stations:
        return station_share(phy, lo)
    a, b = station_share(phy, lo), station_share(phy, lo + 1)
    return a + (b - a) * (stations - lo)


def contention_source(net: NetworkProfile) -> str:
    """Where :func:`contention_share` takes the share from, in words."""
    if net.contention is not None:
        return f"the profile's contention list ({len(net.contention)} points)"
    phy = net.wifi_phy
    if phy is None:
        return "an even split (1/n)"
    streams = "" if phy.standard == "802.11n" else f", {phy.nss} stream{'s' if phy.nss > 1 else ''}"
    return (f"the Wi-Fi air-time model ({phy.standard} MCS {phy.mcs}, {phy.width_mhz} MHz{streams}, "
            f"{phy.band_ghz:g} GHz: {phy.rate_mbps:.1f} Mbit/s PHY rate)")


def describe_contention(net: NetworkProfile, stations: int, simulated: bool) -> str:
    """The contention the run used, in words: the curve's source, the share at ``stations``
    and whether per-station shares were drawn unequal (only the simulation draws them)."""
    from .share_draw import target_jain

    text = f"{contention_source(net)}; {contention_share(net, stations):.4g} of the rate per station with {stations}"
    if not net.unequal_shares or stations <= 1:
        return text + ("; equal shares" if stations > 1 else "")
    if simulated:
        return text + (f"; unequal uplink shares drawn from the seed (ns-3's spread: Jain index "
                       f"{target_jain(stations):.2f})")
    return text + "; equal shares (unequal_shares is set, but only the simulation draws them)"
