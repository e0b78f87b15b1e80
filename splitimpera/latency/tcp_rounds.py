"""TCP round by round: one transfer under one loss pattern, as NewReno or as Linux runs it.

The path (:class:`~splitimpera.latency.transport.Path`) gives the rate, the RTT, the
segment and ACK times ``s`` and ``a``, and the TCP settings. Round ``k`` sends
``m_k = min(cwnd_k, segments left, receive window)`` back to back; the next round starts
when the round's first ACK returns; the last byte arrives ``(m_last − 1)·s + s_last + RTT/2``
after its round starts. A new connection first spends ``s_syn + RTT + a`` on the handshake
(a lost SYN waits ``syn_rto``, doubling). Data segments are lost as the pattern says, ACKs
are not. A loss with at least 3 later segments of the round or of limited transmit
(RFC 3042) behind it is recovered in the next round (SACK: every hole of the round at
once); otherwise the sender waits for the retransmission timeout ``max(min_rto, srtt +
4·rttvar)`` (RFC 6298; rttvar from the handshake's sample, shrinking by 3/4 per ACK,
doubling per repeated timeout), armed by the last new ACK, and restarts at 1 segment.

Variants (:data:`VARIANTS`):

``newreno``
    an ACK per segment (the first ACK of a round returns ``RTT + s + a`` after it starts);
    slow start doubles the window per round, then +1 segment per round; a loss halves it.
``linux``
    Cubic with SACK, PRR and delayed ACKs (an ACK per 2 segments: the first returns one
    segment later, ``RTT + 2s + a``). Slow start counts bytes (RFC 3465: still doubling per
    round); hybrid slow start leaves it once the pipe is full (a round's ACK train outlasts
    the round trip, or the queue it built delays the next round by more than the round trip).
    A loss sets ``ssthresh = cwnd = β·cwnd`` (β = 0.7) and PRR (RFC 6937) recovers it in one
    round at that window, on top of the segments the ACKs ahead of the hole released before the
    loss was detected (less PRR's share for their own ACKs, which falls in the round after);
    a hole among those released segments belongs to the same recovery, which then lasts a round
    longer, and every hole found until it ends is resent without a second reduction; a lost
    retransmission waits for the timeout (RFC 6675 resends a hole once). Congestion avoidance follows Cubic (RFC 8312):
    ``W(t) = C·(t − K)³ + W_max``, ``K = ∛(W_max·(1 − β)/C)``, ``C = 0.4`` segments/s³, at
    least the Reno-friendly ``+3(1 − β)/(1 + β)`` segments per round, at most ×1.5 per
    round; before any loss (``W_max`` unknown) at least ``cwnd/20`` per round. A timeout sets
    ``ssthresh = β·cwnd`` and forgets ``W_max``.

Times in seconds; segments counted as data segments (retransmissions included).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport import Path

VARIANTS = ("linux", "newreno")
CONNECTIONS = ("new", "idle", "warm")
RTTVAR_DECAY = 0.75  # RFC 6298: rttvar ← 3/4 rttvar + 1/4 |srtt − r| per sample, r = srtt
MAX_RTO_S = 60.0  # RFC 6298 (2.5): a maximum of at least 60 s may be placed on the RTO
CUBIC_BETA = 0.7  # multiplicative decrease (RFC 8312, Linux, ns-3)
CUBIC_C = 0.4  # segments / s³
HYSTART_LOW_WINDOW = 16  # segments: hybrid slow start watches windows from here (Linux, ns-3)
HYSTART_ACK_DELTA_S = 0.002  # ACKs closer than this form a train
HYSTART_DELAY_MIN_S = 0.004  # the least queueing delay that ends slow start
NO_LOSS_GROWTH = 1 / 20  # Cubic before its first loss: cwnd/20 a round at least (Linux's cnt clamp)


@dataclass
class ConnState:
    """A TCP connection between transfers: window, slow-start threshold, ACKs seen, and
    (Cubic) the window at the last loss, 0 when there was none."""

    cwnd: float
    ssthresh: float = math.inf
    acks: int = 0
    open: bool = True
    w_max: float = 0.0

    @classmethod
    def initial(cls, path: "Path", connection: str) -> "ConnState":
        if connection not in CONNECTIONS:
            raise ValueError(f"connection must be one of {CONNECTIONS}, got {connection!r}")
        if connection == "warm":
            w = path.warm_cwnd()
            return cls(cwnd=w, ssthresh=w, acks=10_000)
        return cls(cwnd=path.init_cwnd, open=connection == "idle")


@dataclass(frozen=True)
class Transfer:
    """Outcome of one transfer: ``time_s`` (hand-over to last byte), ``tx_segments`` (data
    segments put on the air, retransmissions included), ``active_s`` (the sender's part:
    ``time_s`` less the last byte's propagation), the connection's state after it, and the
    number of segments lost."""

    time_s: float
    tx_segments: int
    active_s: float
    state: ConnState
    lost: int = 0


class Losses:
    """Loss positions over transmission numbers 0, 1, 2, …: gaps are geometric(``p``)."""

    def __init__(self, p: float, rng: random.Random | None):
        self.p, self.rng = p, rng
        self.log1p = math.log1p(-p) if 0 < p < 1 else 0.0
        self.next = self.gap(-1)

    def gap(self, after: int) -> float:
        """The next lost transmission after ``after`` (inf: none)."""
        if self.p <= 0 or self.rng is None:
            return math.inf
        u = self.rng.random()
        return after + 1 + math.floor(math.log1p(-u) / self.log1p)

    def take(self, start: int, count: int) -> list[int]:
        """Offsets (from ``start``) of the lost transmissions among ``count`` from ``start``."""
        out = []
        while self.next < start + count:
            out.append(int(self.next - start))
            self.next = self.gap(int(self.next))
        return out


def rto_s(path: "Path", state: ConnState, backoff: int) -> float:
    """The retransmission timeout after ``state.acks`` ACKs and ``backoff`` timeouts in a row."""
    srtt = path.base_rtt_s
    rttvar = srtt / 2.0 * RTTVAR_DECAY ** min(state.acks, 200)
    return min(MAX_RTO_S, max(path.min_rto_s, srtt + max(1e-3, 4.0 * rttvar)) * (2 ** min(backoff, 16)))


class _Cubic:
    """Cubic's congestion-avoidance window over one transfer (segments, seconds)."""

    def __init__(self, w_max: float):
        self.w_max, self.epoch = w_max, None
        self.origin = self.k = self.reno = 0.0

    def next(self, w: float, now: float, rtt: float) -> float:
        """The window one round after a round at window ``w`` that started at ``now``."""
        if self.epoch is None:
            self.epoch, self.reno = now, w
            self.origin = max(self.w_max, w)
            self.k = (max(0.0, self.w_max - w) / CUBIC_C) ** (1 / 3)
        t = now + rtt - self.epoch
        target = self.origin + CUBIC_C * (t - self.k) ** 3
        self.reno += 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
        grow = max(target - w, self.reno - w, w * NO_LOSS_GROWTH if self.w_max == 0 else 0.0)
        return w + min(max(grow, 0.0), w / 2)

    def loss(self, w: float) -> None:
        """A loss at window ``w``: remember it (fast convergence: less when below the last)."""
        self.w_max = w * (1 + CUBIC_BETA) / 2 if w < self.w_max else w
        self.epoch = None


def tcp_transfer(path: "Path", payload_bytes: int, state: ConnState, losses: Losses) -> Transfer:
    """One TCP transfer of ``payload_bytes`` from ``state`` under the loss pattern ``losses``.

    ``state.open`` False: a handshake first. The state is not modified; the one after is returned.
    """
    linux = path.variant == "linux"
    n, last = path.segments(int(payload_bytes))
    s, rtt, base = path.seg_s, path.rtt_s, path.base_rtt_s
    s_last = (last + path.header) * 8.0 / path.rate_bps
    ack_wait = base + (s if linux else 0.0)  # the first ACK of a round (delayed ACK: after 2 segments)
    st = ConnState(state.cwnd, state.ssthresh, state.acks, state.open, state.w_max)
    t, x = 0.0, 0  # time, transmission number
    if not st.open:  # SYN (lost SYNs wait syn_rto, doubling), SYN-ACK
        tries = 0
        while losses.take(x, 1):
            x += 1
            t += min(MAX_RTO_S, path.syn_rto_s * (2 ** min(tries, 16)))
            tries += 1
        x += 1
        t += path.ack_s + base - path.seg_s  # SYN ≈ an ACK's size each way
        st.open, st.acks, st.cwnd = True, 0, path.init_cwnd
    cubic = _Cubic(st.w_max) if linux else None
    left, tx, lost_total, backoff = n, 0, 0, 0
    # Linux after a fast retransmit, for the next round: how many of its leading segments went out
    # before that recovery began, how many more than the window it sends, where its retransmissions are
    covered = boost = 0
    resent = (0, 0)
    w, ssthresh = max(1, st.cwnd), st.ssthresh
    while True:
        episode, covered, extra, boost = covered, 0, boost, 0
        rtx, resent = resent, (0, 0)
        m = int(min(w + extra, left, path.rwnd_segments))
        lost = losses.take(x, m)
        x += m
        tx += m
        round_s = max(ack_wait if m > 1 else base, m * s)
        if not lost:
            left -= m
            st.acks += m
            backoff = 0
            if left == 0:
                arrive = t + (m - 1) * s + s_last
                if m >= int(w):  # a window-limited round grows the window; one that did not fill it does not (RFC 7661)
                    w, ssthresh = _grow(path, w, ssthresh, m, t, cubic)
                st.cwnd, st.ssthresh = min(w, path.rwnd_segments), ssthresh
                st.w_max = cubic.w_max if cubic else 0.0
                return Transfer(arrive + rtt / 2.0, tx, arrive, st, lost_total)
            w, ssthresh = _grow(path, w, ssthresh, m, t, cubic)
            t += round_s
            w = min(w, path.rwnd_segments)
            continue
        L, j = len(lost), lost[0] + 1  # j: 1-based position of the first loss in the round
        lost_total += L
        later = m - j - (L - 1)
        limited = min(2, left - m)
        if linux:  # the ACKs of the j − 1 segments before the loss released new ones (two each in
            # slow start, one in congestion avoidance): they arrive behind the hole as duplicate ACKs too
            limited = min(left - m, (2 if w < ssthresh else 1) * (j - 1) + 2)
        # In slow start each ACK before the loss grew the window by one: the flight when the
        # loss is detected is m + j − 1 (RFC 5681 eq. 4 halves it; Cubic keeps β of it).
        flight = m + j - 1 if w < ssthresh else m
        left -= m - L
        st.acks += m - L
        # a lost retransmission is found by the timeout alone (RFC 6675: a hole is resent once)
        rtx_lost = any(rtx[0] <= q < rtx[1] for q in lost)
        if linux and lost[0] < episode and later + limited >= 3 and not rtx_lost:
            # a hole among the segments sent before the last recovery began: that recovery goes on
            # until its retransmission is acknowledged, a round later, and every hole found until
            # then is resent in it without another reduction (RFC 6675); the next round's first
            # segments go out before this hole is found
            covered = min(m, max(q for q in lost if q < episode) + 3)
            resent = (covered, covered + L)
            t += round_s
            backoff = 0
            continue
        if linux:
            ssthresh = max(math.floor(flight * CUBIC_BETA), 2)
        else:
            ssthresh = max(flight // 2, 2)
        if later + limited >= 3 and not rtx_lost:  # fast retransmit, recovery in one round (SACK; PRR for linux)
            w = ssthresh
            if cubic:
                cubic.loss(flight)
                covered = limited
                # they went out before the recovery began; PRR then sends ssthresh × delivered /
                # flight: for the rest of this round's ACKs in the next round, for theirs in the one after
                flight_now = m - j + 1 + limited
                boost = max(0, round(limited * (1 - ssthresh / flight_now)))
                resent = (limited, limited + L)
            t += round_s
            backoff = 0
        else:  # retransmission timeout, armed by the last new ACK
            armed = t + ((j - 2) * s + base if j > 1 else 0.0)  # the ACK of segment j − 1 arrives
            if j > 1:
                backoff = 0
            t = armed + rto_s(path, st, backoff)
            backoff += 1
            w = 1
            if cubic:
                cubic.w_max, cubic.epoch = 0.0, None


def _grow(path: "Path", w: float, ssthresh: float, m: int, now: float, cubic: _Cubic | None,
          ) -> tuple[float, float]:
    """(window, ssthresh) after a lossless round of ``m`` segments at window ``w``."""
    if cubic is None:  # NewReno: doubling to ssthresh, then +1
        return (min(2 * w, max(ssthresh, w + 1)) if w < ssthresh else w + 1), ssthresh
    if w >= ssthresh:
        return cubic.next(w, now, path.base_rtt_s), ssthresh
    grown = min(2 * w, max(ssthresh, w + 1))
    if grown >= HYSTART_LOW_WINDOW and math.isinf(ssthresh):
        s, base = path.seg_s, path.base_rtt_s
        if 2 * s <= HYSTART_ACK_DELTA_S and m * s > base:  # the ACK train outlasts the round trip
            exit_w = min(grown, w + math.ceil(base / s))
            return exit_w, exit_w
        if m * s - base > max(base, HYSTART_DELAY_MIN_S):  # the next round's ACKs wait behind this one
            return grown, grown
    return grown, ssthresh
