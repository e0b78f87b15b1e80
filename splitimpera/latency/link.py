"""Transfers over a link profile: packetisation, contention share, radio energy.

A payload of ``b`` bytes travels in ``ceil(b / mss)`` packets (``mss`` = MTU − headers, or
the TCP MSS), each carrying ``header_bytes`` of overhead. How long a transfer takes —
slow start, retransmissions, timeouts, propagation — is :mod:`splitimpera.latency.transport`'s
business (its :func:`~splitimpera.latency.transport.link_transfers` takes a column of payloads).
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
