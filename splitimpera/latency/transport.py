"""One transfer over a link, as TCP or UDP carries it: the model both engines use.

TCP is modelled round by round (after Cardwell, Savage & Anderson, "Modeling TCP latency",
INFOCOM 2000), with the link's serialisation time inside each round
(:mod:`splitimpera.latency.tcp_rounds`: the rounds, loss recovery and timeouts of the two
variants, ``linux`` — Cubic, SACK, PRR, delayed ACKs — and ``newreno``). Per transfer of
``N = ceil(bytes / mss)`` segments over a path of rate ``R`` (the station's share of the
link), base round trip ``RTT`` (the profile's ``rtt_ms``: propagation and protocol delay),
``s`` = one full segment's time on the air and ``a`` = an ACK's. Losses are drawn per
transmission (each data segment is lost with probability ``loss``, ACKs are not).

The expected time with random loss is stratified by where the first loss falls (at most
:data:`SAMPLES` strata, :data:`PATTERNS` patterns of later losses each, from fixed seeds:
common random numbers, the same patterns for every payload, so sizes are compared on equal
terms); the lossless case is computed once and weighted by its probability. Connection states: ``new`` (handshake, initial window), ``idle`` (open, at the
initial window: a persistent connection idle longer than the RTO restarts there, RFC 2861)
and ``warm`` (open, its window grown to the path's bandwidth-delay product, or under loss
to the mean Reno window ``sqrt(3 / (2·loss))``, whichever is smaller).

UDP: the payload goes out in ``ceil(bytes / (mtu − headers))`` datagrams back to back, no
handshake, no retransmission; the frame arrives after its serialisation and RTT/2, and is
lost when any datagram is: frame loss ratio ``1 − (1 − loss)^P``.

Times in seconds; "transfer time" runs from handing the payload to the socket to its last
byte at the receiver, propagation included.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..config.hardware import NetworkProfile
from .link import contention_share
from .tcp_rounds import CONNECTIONS, VARIANTS, ConnState, Losses, rto_s, tcp_transfer

SAMPLES = 128  # strata of the first loss's position for the mean under loss
PATTERNS = 4  # patterns of the later losses per stratum
_SEED = 20001  # fixed: the analytic path is a deterministic function of the scenario


@dataclass(frozen=True)
class Path:
    """What one transfer sees: the station's rate and the link's timing (seconds, bytes)."""

    rate_bps: float
    ack_rate_bps: float
    rtt_s: float
    loss: float
    mss: int
    header: int
    transport: str = "tcp"
    init_cwnd: int = 10
    min_rto_s: float = 0.2
    syn_rto_s: float = 1.0
    rwnd_segments: int = 2896
    variant: str = "linux"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    @property
    def seg_s(self) -> float:
        """Time on the air of one full segment."""
        return (self.mss + self.header) * 8.0 / self.rate_bps

    @property
    def ack_s(self) -> float:
        return self.header * 8.0 / self.ack_rate_bps

    @property
    def base_rtt_s(self) -> float:
        """Round trip of a lone segment: its serialisation, the RTT, its ACK's serialisation."""
        return self.rtt_s + self.seg_s + self.ack_s

    def segments(self, payload_bytes: int) -> tuple[int, int]:
        """(segment count, bytes in the last segment) of a payload (≥ 1 byte)."""
        n = max(1, math.ceil(payload_bytes / self.mss))
        return n, int(payload_bytes - (n - 1) * self.mss)

    def warm_cwnd(self) -> int:
        """The window of an open connection that has grown: one that fills the path, or under
        loss the mean of the Reno sawtooth, ``sqrt(3 / (2p))`` segments (Mathis, Semke,
        Mahdavi & Ott, CCR 1997), whichever is smaller."""
        bdp = math.ceil(self.base_rtt_s / self.seg_s) + 1
        if self.loss > 0:
            bdp = min(bdp, math.ceil(math.sqrt(1.5 / self.loss)))
        return int(min(self.rwnd_segments, max(self.init_cwnd, bdp)))


def path_for(net: NetworkProfile, direction: str = "up", stations: int = 1) -> Path:
    """The :class:`Path` of one station's transfer in ``direction`` with ``stations`` sharing."""
    share = contention_share(net, stations)
    up, down = net.uplink_bps * share, net.downlink_bps * share
    rate, ack = (up, down) if direction == "up" else (down, up)
    mss = net.payload_per_packet
    t = net.tcp
    return Path(rate_bps=rate, ack_rate_bps=ack, rtt_s=net.rtt_s, loss=net.loss, mss=mss,
                header=net.header_bytes, transport=net.transport, init_cwnd=t.init_cwnd_segments,
                min_rto_s=t.min_rto_ms * 1e-3, syn_rto_s=t.syn_rto_ms * 1e-3,
                rwnd_segments=max(1, t.rwnd_bytes // mss), variant=t.variant)


def udp_transfer_s(path: Path, payload_bytes) -> np.ndarray:
    """Serialisation of every datagram plus RTT/2: the arrival of a delivered frame's last byte."""
    b = np.asarray(payload_bytes, dtype=float)
    packets = np.maximum(1, np.ceil(b / path.mss))
    return (b + packets * path.header) * 8.0 / path.rate_bps + path.rtt_s / 2.0


def frame_loss_ratio(net: NetworkProfile, payload_bytes) -> np.ndarray:
    """UDP: probability that a frame loses a datagram, ``1 − (1 − loss)^P``; 0 for TCP and empty payloads."""
    b = np.asarray(payload_bytes, dtype=float)
    if net.transport != "udp":
        return np.zeros_like(b)
    packets = np.where(b > 0, np.ceil(b / net.payload_per_packet), 0.0)
    return -np.expm1(packets * np.log1p(-net.loss)) if net.loss > 0 else np.zeros_like(b)


@dataclass(frozen=True)
class Expected:
    """Mean outcome of a transfer over the loss patterns: seconds, segments, seconds."""

    time_s: float
    tx_segments: float
    active_s: float


def _pattern(p: float, first: int, k: int = 0) -> Losses:
    """Loss pattern ``k`` whose first loss is transmission ``first``; the later ones random,
    from a stream seeded by ``(first, k)`` alone (the same for every payload: common random numbers)."""
    losses = Losses(p, random.Random((_SEED * 1_000_003 + first) * 64 + k))
    losses.next = first
    return losses


@lru_cache(maxsize=4096)
def _expected_tcp(path: Path, payload_bytes: int, connection: str) -> Expected:
    """Mean over loss patterns, stratified by the first lost transmission.

    A transfer of ``n`` segments uses transmissions ``0 … H`` when nothing is lost
    (``H = n``, the SYN included). The first loss is at ``k`` with probability
    ``(1 − p)^k p``; beyond ``H`` the transfer is the lossless one. ``0 … H`` is cut into at
    most :data:`SAMPLES` runs of positions (the SYN one of its own); each contributes its probability times the mean
    of :data:`PATTERNS` transfers whose first loss is at the run's middle (later losses drawn
    at random). With ``H < SAMPLES`` every position is its own run: single losses are counted
    exactly, so a rare loss on a short transfer is neither missed nor overcounted by sampling.
    """
    state = ConnState.initial(path, connection)
    clean = tcp_transfer(path, payload_bytes, state, Losses(0.0, None))
    p = path.loss
    if p <= 0:
        return Expected(clean.time_s, clean.tx_segments, clean.active_s)
    n, _ = path.segments(payload_bytes)
    horizon = n + (0 if state.open else 1)
    q = math.log1p(-p)
    # A lost SYN (position 0 of a new connection) costs a SYN timeout, the data positions far
    # less: it is a run of its own, so no other position is weighted with its cost.
    syn = 0 if state.open else 1
    width = math.ceil((horizon - syn) / (SAMPLES - syn))
    p_clean = math.exp(horizon * q)  # no loss among the first `horizon` transmissions
    tot_t, tot_tx, tot_a = (p_clean * v for v in (clean.time_s, clean.tx_segments, clean.active_s))
    for lo in [0] * syn + list(range(syn, horizon, width)):
        hi = 1 if lo < syn else min(lo + width, horizon)
        weight = (math.exp(lo * q) - math.exp(hi * q)) / PATTERNS  # P(first loss in [lo, hi)) per pattern
        for k in range(PATTERNS):
            tr = tcp_transfer(path, payload_bytes, state, _pattern(p, (lo + hi - 1) // 2, k))
            tot_t += weight * tr.time_s
            tot_tx += weight * tr.tx_segments
            tot_a += weight * tr.active_s
    return Expected(tot_t, tot_tx, tot_a)


def expected_transfer(path: Path, payload_bytes: int, connection: str = "new") -> Expected:
    """Mean time, segments on the air and sender-active time of one transfer (see module doc)."""
    if payload_bytes <= 0:
        return Expected(0.0, 0.0, 0.0)
    if path.transport == "udp":
        n, _ = path.segments(int(payload_bytes))
        t = float(udp_transfer_s(path, payload_bytes))
        return Expected(t, float(n), t - path.rtt_s / 2.0)
    return _expected_tcp(path, int(payload_bytes), connection)


@dataclass(frozen=True)
class Transfers:
    """Mean outcome per payload: ``time_s`` (hand-over to last byte, RTT/2 included; 0 for an
    empty payload), ``bits`` on the air (headers and retransmissions), ``active_s`` (the
    sender's part) and ``radio_j`` (Huang et al.: alpha × Mbit + beta × active seconds)."""

    time_s: np.ndarray
    bits: np.ndarray
    active_s: np.ndarray
    radio_j: np.ndarray


def link_transfers(net: NetworkProfile, payload_bytes, direction: str = "up", stations: int = 1,
                   connection: str = "new") -> Transfers:
    """:func:`~splitimpera.latency.transport.expected_transfer` for each payload (one per distinct size)."""
    b = np.asarray(payload_bytes, dtype=float)
    path = path_for(net, direction, stations)
    sizes, at = np.unique(np.ceil(b), return_inverse=True)  # one transfer per distinct size
    each = [expected_transfer(path, int(v), connection) if v > 0 else Expected(0.0, 0.0, 0.0) for v in sizes]
    pick = lambda attr: np.array([getattr(e, attr) for e in each], dtype=float)[at.reshape(b.shape)]  # noqa: E731
    time_s, tx, active = pick("time_s"), pick("tx_segments"), pick("active_s")
    short = np.where(b > 0, np.ceil(b / path.mss) * path.mss - b, 0.0)  # the last segment's missing payload
    bits = np.where(b > 0, (tx * (path.mss + path.header) - short) * 8.0, 0.0)
    r = net.radio
    alpha = r.alpha_up_mw_per_mbps if direction == "up" else r.alpha_down_mw_per_mbps
    radio = (alpha * bits * 1e-6 + r.beta_mw * active) * 1e-3
    return Transfers(time_s, bits, active, radio)


def transfer_latency_s(net: NetworkProfile, payload_bytes: int, *, connection: str = "new", stations: int = 1,
                       direction: str = "up") -> float:
    """Mean seconds from handing ``payload_bytes`` to the socket to its last byte at the
    receiver, propagation included, over ``net``'s transport (TCP or UDP).

    ``connection``: ``new`` (handshake included), ``idle`` (an open connection at its
    initial window) or ``warm`` (an open connection whose window has grown); ignored for UDP.
    ``stations``: devices sharing the medium (each gets the contention share of the rate).
    """
    if connection not in CONNECTIONS:
        raise ValueError(f"connection must be one of {CONNECTIONS}, got {connection!r}")
    return expected_transfer(path_for(net, direction, stations), int(payload_bytes), connection).time_s


def idle_restart_s(net: NetworkProfile) -> float:
    """Idle time after which a persistent connection's window restarts (RFC 2861): its RTO."""
    p = path_for(net)
    return rto_s(p, ConnState(p.init_cwnd, acks=10_000), 0)


def request_transfers(net: NetworkProfile, payload_bytes, direction: str, stations: int, period_s: float,
                      ) -> Transfers:
    """Mean transfers of requests ``period_s`` apart on one device: over a ``new`` connection
    each has a handshake; over a persistent one, a transfer that leaves the connection idle
    longer than the RTO before the next request starts it at the initial window (``idle``),
    else the grown window carries over (``warm``)."""
    if net.tcp.connection == "new" or net.transport == "udp":
        return link_transfers(net, payload_bytes, direction, stations, "new")
    idle = link_transfers(net, payload_bytes, direction, stations, "idle")
    warm = link_transfers(net, payload_bytes, direction, stations, "warm")
    restart = (period_s - idle.active_s) > idle_restart_s(net)
    pick = lambda a, b: np.where(restart, a, b)  # noqa: E731
    return Transfers(pick(idle.time_s, warm.time_s), pick(idle.bits, warm.bits), pick(idle.active_s, warm.active_s),
                     pick(idle.radio_j, warm.radio_j))


class LinkSender:
    """The transport of one link direction inside the discrete-event simulation.

    Per station, the TCP connection is carried from request to request (persistent: opened
    before the first request; ``new``: one per request, handshake included); a persistent
    connection idle longer than its RTO restarts at ``min(cwnd, initial window)`` in slow
    start (ssthresh reset, as the analytic ``idle`` state). Per
    request, :meth:`start` gives the bits it puts on the air, the time it stalls off the
    medium (waiting for ACKs and timeouts, handshake included) and whether the frame is lost
    (UDP). ``stochastic``: each request's losses come from its own seed (one per request,
    the same for every design point: common random numbers); otherwise every transfer is the
    mean one of its connection state.
    """

    def __init__(self, net: NetworkProfile, direction: str, seeds, stochastic: bool):
        self.net, self.direction, self.stochastic = net, direction, stochastic
        self.seeds = [int(x) for x in seeds]
        self.restart_s = idle_restart_s(net)
        self.states: dict[int, tuple[ConnState, float]] = {}

    def start(self, rid: int, station: int, now: float, rate_bps: float, payload_bytes: int,
              ) -> tuple[float, float, float]:
        """(bits on the air, stall seconds, frame loss) of request ``rid``'s transfer starting
        now. Frame loss (UDP): 1.0 or 0.0 as sampled, or with ``stochastic`` off the probability."""
        net = self.net
        path = path_for(net, self.direction, 1)
        if rate_bps > 0:  # in an outage (a trace at 0) the rounds are timed at the profile's mean rate
            path = replace(path, rate_bps=float(rate_bps))
        n, _ = path.segments(int(payload_bytes))
        if net.transport == "udp":
            p_lost = float(frame_loss_ratio(net, payload_bytes))
            if self.stochastic:
                p_lost = float(random.Random(self.seeds[rid]).random() < p_lost)
            return (payload_bytes + n * path.header) * 8.0, 0.0, p_lost
        short = (n * path.mss - payload_bytes) * 8.0
        prev = self.states.get(station)
        if net.tcp.connection == "new" and self.direction == "up":  # the answer comes back on it
            state, label = ConnState.initial(path, "new"), "new"
        elif prev is None:
            state, label = ConnState.initial(path, "idle"), "idle"
        else:
            state, t_end = prev
            idle = now - t_end > self.restart_s
            label = "idle" if idle else "warm"
            if idle:  # starts over at the initial window, like the analytic `idle` state (Linux
                # would keep max(ssthresh, 3/4 cwnd) from before the gap: a simplification)
                state = ConnState(min(state.cwnd, path.init_cwnd), math.inf, state.acks, True)
        if not self.stochastic:
            e = expected_transfer(path, payload_bytes, label)
            tx, active, after = e.tx_segments, e.active_s, ConnState.initial(path, "warm")
        else:
            tr = tcp_transfer(path, payload_bytes, state, Losses(net.loss, random.Random(self.seeds[rid])))
            tx, active, after = tr.tx_segments, tr.active_s, tr.state
        bits = tx * (path.mss + path.header) * 8.0 - short
        self.states[station] = (after, now + active)
        return bits, max(0.0, active - bits / path.rate_bps), 0.0


def uplink_mbps_for(net: NetworkProfile, payload_bytes: int, target_s: float, connection: str = "idle",
                    ) -> float | None:
    """The least uplink rate (Mbit/s) at which one transfer of ``payload_bytes`` takes at most
    ``target_s`` (bisection in log rate: the round trips of slow start and the handshake do not
    shrink with the rate), or None when no rate is enough."""
    def t(mbps):
        return transfer_latency_s(net.model_copy(update={"uplink_mbps": mbps}), payload_bytes, connection=connection)

    lo, hi = net.uplink_mbps, net.uplink_mbps * 1e6
    if t(hi) > target_s:
        return None
    if t(lo) <= target_s:
        return lo
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if t(mid) > target_s else (lo, mid)
        if hi / lo < 1.001:
            break
    return hi

