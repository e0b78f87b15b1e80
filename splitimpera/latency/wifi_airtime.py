"""Wi-Fi uplink contention from air time: Bianchi's saturation model with A-MPDU and Block Ack.

The per-station share of ``n`` saturated stations, relative to one station alone, follows
from how much of the air time each channel access spends on payload. One access is an
EDCA backoff, one A-MPDU (as many MPDUs as fit in 65 535 bytes, the Block Ack window and
the 5.484 ms PPDU limit) at the data MCS, then a Block Ack at the control rate. With
``n`` stations some of those accesses collide: each colliding station loses its whole
A-MPDU, doubles its contention window and, before sending the MPDUs again, sends a Block
Ack Request in an access of its own (what ns-3 and most drivers do after a missed Block
Ack) — so a collision costs one more access per colliding station.

The collision probability ``p`` and the per-slot attempt probability ``τ`` are Bianchi's
fixed point (G. Bianchi, "Performance Analysis of the IEEE 802.11 Distributed Coordination
Function", IEEE JSAC 18(3), 2000), for CWmin 15, CWmax 1023 (EDCA best effort). A station
alternates between data and Block Ack Request attempts: an attempt after a collided one is
a request, so a fraction ``p`` of attempts are requests. The mean slot lasts

    E[T] = (1 − P_tr)·σ + P_s·((1 − p)·T_s,data + p·T_s,bar) + P_c,bar·T_c,bar + (P_c − P_c,bar)·T_c,data

(``P_tr`` some station sends, ``P_s`` exactly one, ``P_c = P_tr − P_s``, ``P_c,bar`` a
collision of requests only), and the aggregate goodput is ``n·τ·(1 − p)²·L / E[T]`` with
``L`` the UDP payload bits of one A-MPDU. For one station ``p = 0``: ``L / (AIFS + 7.5·σ +
T_ppdu + SIFS + T_BA)``.

Timing constants (IEEE 802.11-2020): slot σ 9 µs; SIFS 16 µs at 5/6 GHz and 10 µs at
2.4 GHz, where OFDM frames carry a 6 µs signal extension; AIFS = SIFS + 3σ; Block Ack (32
bytes), Block Ack Request (24 bytes) at 24 Mbit/s legacy OFDM; after a collision, EIFS
(SIFS + an Ack at 6 Mbit/s + AIFS) instead of SIFS + Block Ack + AIFS. PPDUs: HT-mixed,
VHT and HE SU preambles; guard interval 800 ns for HT/VHT (4 µs symbols) and 3.2 µs for HE
(16 µs symbols; ns-3's default, HE's longest). MPDU: 1472-byte UDP payload + 28 bytes IP/UDP + 8 LLC/SNAP + 26 QoS MAC
header + 4 FCS, a 4-byte delimiter, padded to 4 bytes.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..config.wifi_phy import SLOT_S, WifiPhy

AIFSN = 3
CW_MIN = 15
CW_MAX = 1023
AMPDU_MAX_BYTES = 65535
BA_WINDOW = 64
PPDU_MAX_S = 5.484e-3
UDP_PAYLOAD_BYTES = 1472
MPDU_BYTES = UDP_PAYLOAD_BYTES + 28 + 8 + 26 + 4
CONTROL_MBPS = 24.0
BA_BYTES, BAR_BYTES, ACK_BYTES = 32, 24, 14  # compressed Block Ack, Block Ack Request, Ack


def aifs_s(phy: WifiPhy) -> float:
    """EDCA best-effort AIFS: SIFS + AIFSN slots."""
    return phy.sifs_s + AIFSN * SLOT_S


def ampdu_bytes(k: int) -> int:
    """Bytes of an A-MPDU of ``k`` MPDUs (every subframe but the last padded to 4 bytes)."""
    sub = MPDU_BYTES + 4 + (-(MPDU_BYTES + 4)) % 4
    return (k - 1) * sub + MPDU_BYTES + 4


def mpdus_per_ampdu(phy: WifiPhy) -> int:
    """MPDUs in one A-MPDU: the byte limit, the Block Ack window and the PPDU time limit."""
    sub = MPDU_BYTES + 4 + (-(MPDU_BYTES + 4)) % 4
    k = min((AMPDU_MAX_BYTES + sub - MPDU_BYTES - 4) // sub, BA_WINDOW)
    while k > 1 and phy.ppdu_s(ampdu_bytes(k)) > PPDU_MAX_S:
        k -= 1
    return k


def bianchi_tau(p: float, w: int = CW_MIN + 1, m: int = round(math.log2((CW_MAX + 1) / (CW_MIN + 1)))) -> float:
    """Bianchi's per-slot attempt probability for collision probability ``p`` (window ``w``, ``m`` doublings)."""
    if abs(1 - 2 * p) < 1e-9:
        p += 1e-9
    return 2 * (1 - 2 * p) / ((1 - 2 * p) * (w + 1) + p * w * (1 - (2 * p) ** m))


def collision_probability(n: int) -> tuple[float, float]:
    """Bianchi's fixed point ``p = 1 − (1 − τ(p))^(n−1)`` for ``n`` stations: ``(p, τ)``."""
    if n <= 1:
        return 0.0, bianchi_tau(0.0)
    lo, hi = 0.0, 1.0
    for _ in range(80):  # 1 − (1 − τ(p))^(n−1) − p falls with p: bisection
        mid = (lo + hi) / 2
        if 1 - (1 - bianchi_tau(mid)) ** (n - 1) > mid:
            lo = mid
        else:
            hi = mid
    p = (lo + hi) / 2
    return p, bianchi_tau(p)


def aggregate_goodput_bps(phy: WifiPhy, n: int, *, explicit_bar: bool = True) -> float:
    """Saturated UDP goodput of ``n`` stations together, bit/s (module docstring)."""
    k = mpdus_per_ampdu(phy)
    payload_bits = 8 * k * UDP_PAYLOAD_BYTES
    t_data = phy.ppdu_s(ampdu_bytes(k))
    t_ba = phy.legacy_s(BA_BYTES, CONTROL_MBPS)
    t_bar = phy.legacy_s(BAR_BYTES, CONTROL_MBPS)
    eifs_tail = phy.sifs_s + phy.legacy_s(ACK_BYTES, 6.0) + aifs_s(phy)  # after a frame nobody decoded
    ts_data = t_data + phy.sifs_s + t_ba + aifs_s(phy)
    ts_bar = t_bar + phy.sifs_s + t_ba + aifs_s(phy)
    tc_data, tc_bar = t_data + eifs_tail, t_bar + eifs_tail
    p, tau = collision_probability(n)
    q = p if (explicit_bar and n > 1) else 0.0  # fraction of attempts that are Block Ack Requests
    idle = (1 - tau) ** n
    p_tr = 1 - idle
    p_s = n * tau * (1 - tau) ** (n - 1)
    p_c = p_tr - p_s
    # Collisions of requests only: at least two senders, every one sending a request.
    p_c_bar = (1 - tau + tau * q) ** n - idle - n * tau * q * (1 - tau) ** (n - 1)
    slot = (idle * SLOT_S + p_s * ((1 - q) * ts_data + q * ts_bar)
            + p_c_bar * tc_bar + (p_c - p_c_bar) * tc_data)
    return p_s * (1 - q) * payload_bits / slot


def single_station_goodput_bps(phy: WifiPhy) -> float:
    """One saturated station: one A-MPDU per AIFS + mean backoff (CWmin/2 slots) + Block Ack."""
    k = mpdus_per_ampdu(phy)
    cycle = (aifs_s(phy) + CW_MIN / 2 * SLOT_S + phy.ppdu_s(ampdu_bytes(k)) + phy.sifs_s
             + phy.legacy_s(BA_BYTES, CONTROL_MBPS))
    return 8 * k * UDP_PAYLOAD_BYTES / cycle


@lru_cache(maxsize=4096)
def station_share(phy: WifiPhy, n: int, *, explicit_bar: bool = True) -> float:
    """Per-station goodput with ``n`` saturated stations relative to one station alone."""
    if n < 1:
        raise ValueError(f"stations must be >= 1, got {n}")
    return aggregate_goodput_bps(phy, n, explicit_bar=explicit_bar) / n / aggregate_goodput_bps(phy, 1)


def share_curve(phy: WifiPhy, stations=(1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 32)) -> list[tuple[int, float]]:
    """``[(n, share)]``: the model's contention curve in a profile's ``contention`` form."""
    return [(int(n), 1.0 if n == 1 else station_share(phy, int(n))) for n in stations]
