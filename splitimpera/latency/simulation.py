"""Discrete-event simulation (SimPy) of split computing: devices, a shared link, a server.

One request's path (times in seconds, SI)::

    Source ─► Processor (device, FIFO, 1 worker) ─► SharedLink (uplink) ─► Processor (server,
    K workers, dynamic batching) ─► SharedLink (downlink, only with result_at: device) ─► Sink

Components hold ``env``, take requests through ``put(rid)`` and serve them in a ``run()``
process; each is wired to the next one's ``put``. A request is an integer id ``rid``;
per-request quantities live in preallocated arrays indexed by it (no per-request objects,
no DataFrame appends).

Semantics, chosen to equal :func:`splitimpera.latency.analytic.analytic_latency` exactly when
nothing queues and nothing is random:

* **Arrivals.** ``workload.num_requests`` requests *per device*; ``periodic``: one every
  ``1/rate_hz`` from a phase drawn uniformly in ``[0, 1/rate_hz)`` per device; ``poisson``:
  exponential gaps of mean ``1/rate_hz`` per device.
* **Device.** FIFO, one request at a time; service = the analytic head time
  (:func:`~splitimpera.latency.compute.compute_time_s`).
* **Link.** The medium is shared by the stations (devices) that have something to send:
  each station sends its transfers one after another, and the ``n`` stations with a
  backlog are served in processor sharing, each at ``rate × contention_share(net, n)``;
  rates change only when a station starts or stops sending. With ``network.unequal_shares``
  each station's uplink share is scaled by its own weight, drawn once per simulation from
  the seed with ns-3's spread (:mod:`~splitimpera.latency.share_draw`). When a transfer starts, the
  transport (:class:`~splitimpera.latency.transport.LinkSender`) decides, at the station's
  share at that moment, the bits it puts on the medium (headers and, over TCP,
  retransmissions) and how long it stalls off the medium (slow-start rounds waiting for
  ACKs, retransmission timeouts, a new connection's handshake): TCP rounds with this
  request's own loss pattern, the persistent connection's window carried from the
  station's previous transfer (restarted after an idle gap longer than the RTO); UDP: the
  datagrams, and the frame lost when one of them is. After the last bit and the stall, the
  link delivers after ``rtt/2 + J``, with jitter ``J ~ Normal(0, jitter_ms)`` clipped so the
  delay stays ≥ 0. With ``workload.stochastic_network: false`` there is no jitter and every
  transfer is the mean one of its connection state (``idle`` or ``warm``; ``new``), so
  times are deterministic. Lost UDP frames count in ``frame_loss_ratio`` and in energy,
  not in the latency statistics (they never arrive).
* **Trace replay.** With ``network.trace_csv`` (:mod:`splitimpera.config.rate_trace`) the link's rate
  follows the trace from ``t = 0``: piecewise constant, the last value held (no looping);
  the per-station rates are recomputed at every change point, as when a station starts or
  stops sending. Without a downlink column the downlink stays at ``downlink_mbps``.
* **Server.** ``server_workers`` workers, each at the profile's rate, one shared FIFO. A
  free worker takes ``min(queue, max_batch)`` requests; with ``batch_timeout_ms > 0`` and a
  partly filled queue it first waits until the queue holds ``max_batch`` or the oldest
  request has waited ``batch_timeout_ms`` (Triton's dynamic batcher). A batch of ``b`` takes

      t(b) = t1 · (1 + c · (b − 1)),   c = ``workload.batch_cost_fraction``

  with ``t1`` the analytic batch-1 tail time, so ``b = 1`` is exactly the analytic time.
  Batch latency affine in ``b`` is the model GPU-serving systems fit to measurements
  (Nexus, SOSP 2019: ℓ(b) = αb + β; Inoue, "Queueing analysis of GPU-based inference
  servers with dynamic batching", 2021, linear batch times); ``c`` is the marginal
  per-request cost over the fixed one. The default 0.3 is an estimate for PyTorch fp32 on a
  T4-class GPU (ResNet-50: ~7.7 ms at batch 1, ~2.3 ms per extra image once saturated);
  ``c = 1`` means no batching gain (CPU-like). Every request of a batch leaves at its end.
* **Result.** ``result_at: server`` ends a request when its prediction exists on the
  server; the ``output`` split sends the prediction up and skips the server.
  ``result_at: device`` sends the 8-byte prediction back over the downlink (a second shared
  link; stations are the devices); ``output`` then sends nothing.
* **Energy** per request, as in the analytic model: device active power × head time, plus
  radio energy ``(α · Mbit sent + β · seconds under way, stalls included) · 1e-3`` per direction, the
  integral of Huang et al.'s ``P = α·throughput + β`` over the transfer whatever the share.
* **Early exit.** A design point with an exit level (``(split, bottleneck, exit)``) and
  per-sample exit decisions replays them: request ``r`` stands for evaluation sample
  ``k_r``, drawn uniformly from the scenario seed's ``exits`` stream (the same samples for
  every point), and exits when that sample did. The device always runs the head and the
  exit head (the head time includes it); an exited request ends there (nothing is sent,
  whatever ``result_at``), the others continue as in split computing. Requests then carry
  ``exit`` (the point's τ label), ``exited`` and ``sample`` (``k_r``).
* **Overhead and spread** (when the profiles state them, :mod:`splitimpera.latency.overhead`):
  each side's per-request overhead is added to its service (the device's only for a
  request that sends something), the server's dispatch delays a request's entry into its
  queue, a transfer lasts at least the link's message floor, and with ``service_cv`` each
  request's service on that side is scaled by a log-normal factor of mean 1 drawn from the
  seed's ``service`` stream (the same factors at every split).
* **Warm-up.** The first ``floor(warmup_fraction · num_requests)`` requests of each device
  (in arrival order) are dropped from the results.

Each split is an independent simulation driven by common random numbers
(:func:`common_streams`): the same arrivals and, per request, the same jitter and loss
quantiles for every split, from the scenario seed alone. Splits are compared on equal
terms, and results do not depend on which other splits were simulated.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import simpy

from .analytic import split_names
from .compute import compute_energy_j, compute_time_s
from .link import contention_share
from .share_draw import draw_weights
from .overhead import dispatch_s, floor_s, lognormal_factors, overhead_s, service_cv
from .transport import LinkSender
from ..config.scenario import Scenario
from ..errors import UserError
from ..model.splits import OUTPUT, PREDICTION_BYTES

log = logging.getLogger(__name__)

REQUEST_COLUMNS = [
    "split", "bottleneck", "device_id", "t_arrival_s", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s",
    "server_compute_s", "downlink_s", "latency_s", "energy_j", "bytes_sent", "frame_lost",
]
SUMMARY_COLUMNS = [
    "requests", "latency_mean_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "energy_j", "bytes_sent",
]


@dataclass(frozen=True)
class SimResult:
    """Outcome of :func:`simulate`.

    ``requests``: one row per simulated request after warm-up, columns
    :data:`REQUEST_COLUMNS` (seconds, joules, bytes; ``uplink_s`` includes waiting for the
    shared medium and propagation; ``frame_lost``: 1.0 for a UDP frame lost on the way, 0.0
    otherwise, or with ``stochastic_network: false`` its probability), ordered by design point (split in topological order,
    then bottleneck), then arrival time.
    ``summary``: one row per design point (index: ``(split, bottleneck)``), columns
    :data:`SUMMARY_COLUMNS`: kept ``requests``, latency mean and percentiles (numpy's
    linear interpolation), ``throughput_rps`` (kept requests / time from the first kept
    arrival to the last kept completion), ``deadline_miss_ratio`` (fraction with
    ``latency_s > qos.max_latency_ms``, NaN without one), mean ``energy_j`` and mean
    ``bytes_sent`` per request.
    """

    scenario: Scenario
    requests: pd.DataFrame
    summary: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Components


class Sink:
    """End of a request's path: stamps its completion time."""

    def __init__(self, env: simpy.Environment, done: list):
        self.env, self.done = env, done

    def put(self, rid: int) -> None:
        self.done[rid] = self.env.now


class Source:
    """Feeds one device's requests to ``out`` at given absolute arrival times (seconds)."""

    def __init__(self, env: simpy.Environment, rids: Sequence[int], times: Sequence[float], out):
        self.env, self.rids, self.times, self.out = env, rids, times, out
        self.proc = env.process(self.run())

    def run(self):
        env, put = self.env, self.out.put
        for rid, t in zip(self.rids, self.times):
            dt = t - env.now
            if dt > 0:
                yield env.timeout(dt)
            put(rid)


class Processor:
    """A FIFO queue served by ``workers`` identical workers, with optional dynamic batching.

    ``service_s`` is the batch-1 time (seconds). A batch of ``b`` takes
    ``service_s · (1 + batch_cost_fraction · (b − 1))``; with ``service="exponential"``
    (for queueing checks: M/M/c) that is the mean of an exponential draw from ``rng``.
    Per request (lists indexed by ``rid``, optional): ``extra_s`` seconds of work batching
    does not share (summed over the batch), ``factor`` a multiplier of the batch's time (the
    batch's mean factor); ``dispatch_s``: each request joins the queue that long after it arrives.
    Stamps ``enter``, ``start`` and ``end`` times into the given per-request arrays.
    """

    def __init__(self, env: simpy.Environment, service_s: float, out, *, enter: list, start: list, end: list,
                 workers: int = 1, max_batch: int = 1, batch_timeout_s: float = 0.0,
                 batch_cost_fraction: float = 1.0, service: str = "deterministic",
                 rng: np.random.Generator | None = None, extra_s: Sequence[float] | None = None,
                 factor: Sequence[float] | None = None, dispatch_s: float = 0.0):
        if service not in ("deterministic", "exponential"):
            raise ValueError(f"service must be 'deterministic' or 'exponential', got {service!r}")
        if service == "exponential" and rng is None:
            raise ValueError("exponential service needs an rng")
        self.env, self.service_s, self.out = env, float(service_s), out
        self.enter, self.start, self.end = enter, start, end
        self.max_batch, self.timeout_s = int(max_batch), float(batch_timeout_s)
        self.cost, self.service, self.rng = float(batch_cost_fraction), service, rng
        self.extra_s, self.factor, self.dispatch_s = extra_s, factor, float(dispatch_s)
        self.queue: deque[int] = deque()
        self._idle: list[simpy.Event] = []     # workers waiting for work
        self._filling: list[simpy.Event] = []  # workers waiting for a batch to fill
        self.procs = [env.process(self.run()) for _ in range(int(workers))]

    def put(self, rid: int) -> None:
        self.enter[rid] = self.env.now
        if self.dispatch_s > 0:
            ev = self.env.timeout(self.dispatch_s)
            ev.callbacks.append(lambda _e, rid=rid: self.enqueue(rid))
        else:
            self.enqueue(rid)

    def enqueue(self, rid: int) -> None:
        """The request joins the queue now; a waiting worker is woken."""
        q = self.queue
        q.append(rid)
        if self._filling:
            if len(q) >= self.max_batch:
                for ev in self._filling:
                    ev.succeed()
                self._filling.clear()
        elif self._idle:
            self._idle.pop().succeed()

    def batch_time_s(self, b: int) -> float:
        t = self.service_s if b == 1 else self.service_s * (1.0 + self.cost * (b - 1))
        return self.rng.exponential(t) if self.service == "exponential" else t

    def time_of(self, batch: Sequence[int]) -> float:
        """Seconds the batch of these requests takes (:meth:`batch_time_s` and the per-request terms)."""
        t = self.batch_time_s(len(batch))
        if self.extra_s is not None:
            t += sum(self.extra_s[r] for r in batch)
        if self.factor is not None:
            t *= sum(self.factor[r] for r in batch) / len(batch)
        return t

    def run(self):
        env, q, start, end = self.env, self.queue, self.start, self.end
        batching = self.max_batch > 1 and self.timeout_s > 0
        while True:
            if not q:
                ev = env.event()
                self._idle.append(ev)
                yield ev
                continue
            if batching and len(q) < self.max_batch:
                wait = self.enter[q[0]] + self.timeout_s - env.now
                if wait > 1e-12:
                    ev = env.event()
                    self._filling.append(ev)
                    yield env.timeout(wait) | ev
                    if ev in self._filling:
                        self._filling.remove(ev)
                    continue
            now = env.now
            if self.max_batch == 1:
                rid = q.popleft()
                start[rid] = now
                yield env.timeout(self.time_of((rid,)))
                end[rid] = env.now
                self.out.put(rid)
            else:
                batch = [q.popleft() for _ in range(min(len(q), self.max_batch))]
                if q and self._idle and not self._filling:
                    self._idle.pop().succeed()  # leftovers for another free worker
                for rid in batch:
                    start[rid] = now
                yield env.timeout(self.time_of(batch))
                for rid in batch:
                    end[rid] = env.now
                    self.out.put(rid)


class SharedLink:
    """A medium shared by stations: processor sharing with a contention-dependent rate.

    Each station sends its transfers in FIFO order; while ``n`` stations have a transfer
    under way, each progresses at ``rate_bps · share(n)`` bit/s. The rate is recomputed only
    when a station starts or stops sending: a virtual clock ``V`` counts the bits every
    active station has received since the link was last idle, and a transfer of ``B`` bits
    started at ``V0`` ends when ``V`` reaches ``V0 + B``.

    Per request ``rid`` (arrays indexed by it): ``bits`` on the air (retransmissions
    included), propagation ``delay_s`` (RTT/2 plus jitter; the link holds it), ``station``.
    After the propagation delay (and no sooner than ``floor_s`` after its ``put``: the link's
    message floor) the request goes to ``out.put``. Radio energy
    ``(alpha_mw_per_mbps · bits/1e6 + beta_mw · transfer time) · 1e-3`` J is added to ``radio_j``.

    ``rate_trace``: optional ``(times_s, rates_bps)``, increasing times: from each time on,
    the link's rate is that value (piecewise constant, the last one held). The shares are
    recomputed at each change point as at a station's start or stop, so a transfer spanning
    a change takes exactly ``Σ bits_k / rate_k`` over the pieces. A rate of 0 is an outage:
    nothing progresses until the next change point.

    ``weights``: optional per-station weights (unequal shares): while ``n`` stations send,
    station ``s`` gets ``rate_bps · share(n) · n · w_s / Σ w`` over the ``n`` (the same aggregate).
    The virtual clock then counts bits per unit weight, and a transfer ends at ``V0 + B / w_s``.
    """

    def __init__(self, env: simpy.Environment, rate_bps: float, share: Callable[[int], float], out, *,
                 bits: Sequence[float], delay_s: Sequence[float], station: Sequence[int], radio_j: list,
                 alpha_mw_per_mbps: float = 0.0, beta_mw: float = 0.0,
                 rate_trace: tuple[Sequence[float], Sequence[float]] | None = None,
                 sender: LinkSender | None = None, payload_bytes: int = 0, lost: list | None = None,
                 weights: Sequence[float] | None = None, floor_s: float = 0.0):
        self.env, self.rate, self.out = env, float(rate_bps), out
        self.floor_s, self.t_put = float(floor_s), {}
        self.bits, self.delay_s, self.station, self.radio_j = bits, delay_s, station, radio_j
        self.sender, self.payload, self.lost = sender, int(payload_bytes), lost
        self.stall_s = [0.0] * len(bits)
        self.delivered: dict[int, float] = {}  # per station: when its last transfer was handed over
        self.in_order = sender is not None and sender.net.transport == "tcp"
        self.alpha, self.beta = alpha_mw_per_mbps, beta_mw
        self._share = share
        self.weights = None if weights is None else [float(w) for w in weights]
        self._rates: dict[int, float] = {}
        self.queues: dict[int, deque[int]] = {}
        self.head_start: dict[int, float] = {}
        self.heads: list[tuple[float, int, int]] = []  # (finish tag, seq, station)
        self.V, self.t_last, self._seq, self._gen = 0.0, 0.0, 0, 0
        self._wake: simpy.Event | None = None
        self.proc = env.process(self.run())
        if rate_trace is not None:
            times, rates = (list(map(float, x)) for x in rate_trace)
            if len(times) != len(rates) or not times or any(b <= a for a, b in zip(times, times[1:])):
                raise ValueError("rate_trace needs as many rates as strictly increasing times, at least one")
            k = 0
            while k < len(times) and times[k] <= env.now:  # already in force
                self.rate, k = rates[k], k + 1
            self.trace_proc = env.process(self.follow(times[k:], rates[k:]))

    def follow(self, times: Sequence[float], rates: Sequence[float]):
        """Process: set the link's rate to ``rates[k]`` at ``times[k]`` (absolute seconds)."""
        env = self.env
        for t, r in zip(times, rates):
            dt = t - env.now
            if dt > 0:
                yield env.timeout(dt)
            self.set_rate(r)

    def set_rate(self, rate_bps: float) -> None:
        """Change the link's rate now; transfers under way continue at the new shares."""
        if rate_bps == self.rate:
            return
        self._advance()  # the bits sent so far went at the old rate
        self.rate = float(rate_bps)
        self._rates.clear()
        self._gen += 1  # the pending timer was computed at the old rate
        w = self._wake
        if w is not None and not w.triggered:
            w.succeed(-1)

    def station_rate_bps(self, n: int) -> float:
        r = self._rates.get(n)
        if r is None:
            r = self._rates[n] = self.rate * self._share(n)
        return r

    def _clock_rate(self) -> float:
        """How fast the virtual clock runs: bit/s per unit weight of the stations sending."""
        n = len(self.heads)
        r = self.station_rate_bps(n)
        if self.weights is None or n == 0:
            return r
        return r * n / sum(self.weights[s] for _, _, s in self.heads)

    def _advance(self) -> None:
        now = self.env.now
        if self.heads:
            self.V += (now - self.t_last) * self._clock_rate()
            tag = self.heads[0][0]
            if self.V < tag and tag - self.V <= 1e-12 * tag:
                self.V = tag  # rounding: it ends now (matters when the rate drops to 0 at that instant)
        self.t_last = now

    def _start(self, s: int, rid: int) -> None:
        if self.sender is not None:  # the transport decides the bits and the stall now, at this share
            n = len(self.heads) + 1
            rate = self.station_rate_bps(n)
            if self.weights is not None:
                rate *= n * self.weights[s] / (self.weights[s] + sum(self.weights[h] for _, _, h in self.heads))
            bits, stall, p_lost = self.sender.start(rid, s, self.env.now, rate, self.payload)
            self.bits[rid], self.stall_s[rid] = bits, stall
            self.delay_s[rid] += stall
            if p_lost and self.lost is not None:  # lost on this link or an earlier one
                self.lost[rid] = 1.0 - (1.0 - self.lost[rid]) * (1.0 - p_lost)
        self._seq += 1
        w = 1.0 if self.weights is None else self.weights[s]
        heapq.heappush(self.heads, (self.V + self.bits[rid] / w, self._seq, s))
        self.head_start[s] = self.env.now

    def put(self, rid: int) -> None:
        if self.floor_s > 0:
            self.t_put[rid] = self.env.now
        s = self.station[rid]
        q = self.queues.get(s)
        if q is None:
            q = self.queues[s] = deque()
        q.append(rid)
        if len(q) == 1:  # the station starts sending: every active station's rate changes
            self._advance()
            self._start(s, rid)
            self._gen += 1
            w = self._wake
            if w is not None and not w.triggered:
                w.succeed(-1)

    def _on_timer(self, ev: simpy.Event) -> None:
        w = self._wake
        if ev.value == self._gen and w is not None and not w.triggered:
            w.succeed(ev.value)

    def run(self):
        env, heads = self.env, self.heads
        while True:
            self._wake = env.event()
            if heads:
                left, r = heads[0][0] - self.V, self._clock_rate()
                if left <= 0 or r > 0:  # in an outage (rate 0) only the next change point wakes it
                    timer = env.timeout(left / r if left > 0 else 0.0, value=self._gen)
                    timer.callbacks.append(self._on_timer)
            else:
                self.V = 0.0  # idle: restart the virtual clock to keep its rounding small
            woken_by = yield self._wake
            if woken_by < 0:
                continue  # a station started sending or the rate changed; the clock is advanced
            # The earliest transfer ends now: set the clock to its tag exactly.
            self.V, self.t_last = heads[0][0], env.now
            while heads and heads[0][0] <= self.V:
                _, _, s = heapq.heappop(heads)
                self._finish(s)

    def _finish(self, s: int) -> None:
        env = self.env
        q = self.queues[s]
        rid = q.popleft()
        tx_s = env.now - self.head_start[s]
        self.radio_j[rid] += (self.alpha * self.bits[rid] * 1e-6 + self.beta * (tx_s + self.stall_s[rid])) * 1e-3
        if q:
            self._start(s, q[0])
        delay = self.delay_s[rid]
        if self.floor_s > 0:  # the message floor: no message is handed over sooner after its put
            delay = max(delay, self.t_put.pop(rid) + self.floor_s - env.now)
        if self.in_order:  # one TCP connection is one byte stream: a transfer whose bytes are all
            # there is still handed over after the one before it (head-of-line blocking)
            delay = max(delay, self.delivered.get(s, 0.0) - env.now)
            self.delivered[s] = env.now + delay
        ev = env.timeout(delay)
        ev.callbacks.append(lambda _e, rid=rid: self.out.put(rid))


# --------------------------------------------------------------------------------------------
# One split


STREAMS = ("arrivals", "uplink", "downlink", "exits", "shares", "service")  # spawn order: a new stream leaves the others as they were


def common_streams(seed: int) -> dict[str, np.random.Generator]:
    """One generator per source of randomness, from the seed alone: common random numbers.

    Every split of a scenario sees the same arrival times and, request by request, the same
    jitter and loss quantiles, so differences between splits come from the splits, not from
    sampling noise (the standard variance reduction for comparing alternatives). Streams are
    independent of each other (``SeedSequence.spawn``), and a split's draws do not depend on
    which other splits are simulated.
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: np.random.default_rng(ss) for name, ss in zip(STREAMS, children)}


def uplink_weights(net, stations: int, rng: np.random.Generator) -> list[float] | None:
    """Per-station uplink weights with ``network.unequal_shares`` (:func:`draw_weights`, from the
    scenario seed's ``shares`` stream: the same for every split), else None (equal shares)."""
    if not net.unequal_shares or stations <= 1:
        return None
    return draw_weights(stations, rng).tolist()


def arrival_times_s(wl, rng: np.random.Generator) -> np.ndarray:
    """Arrival times, shape (num_devices, num_requests), seconds, increasing along axis 1."""
    n_dev, n, period = wl.num_devices, wl.num_requests, 1.0 / wl.rate_hz
    if wl.arrival == "periodic":
        phase = rng.uniform(0.0, period, size=(n_dev, 1))
        return phase + np.arange(n)[None, :] * period
    return np.cumsum(rng.exponential(period, size=(n_dev, n)), axis=1)


def _draws(net, n_total: int, rng: np.random.Generator, stochastic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per transfer: the seed of its loss pattern and its propagation delay ``rtt/2 + J``.

    One integer and one normal per request, always drawn, the same for every payload size:
    a request unlucky on a small payload is unlucky on a large one (common random numbers).
    """
    seeds = rng.integers(0, 2**63 - 1, size=n_total)
    z = rng.standard_normal(n_total)
    half_rtt = net.rtt_s / 2.0
    if stochastic and net.jitter_ms > 0:
        delay = np.maximum(half_rtt + z * net.jitter_ms * 1e-3, 0.0)
    else:
        delay = np.full(n_total, half_rtt)
    return seeds, delay


def _rate_trace(net, direction: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(times_s, rates_bps)`` the link of ``direction`` follows, or None at a constant rate."""
    tr = net.trace
    if tr is None or tr.rates_bps(direction) is None:
        return None
    return tr.time_s, tr.rates_bps(direction)


def warmup_requests(wl) -> int:
    """Requests dropped at the start of each device: ``floor(warmup_fraction × num_requests)``."""
    return int(math.floor(wl.warmup_fraction * wl.num_requests + 1e-9))


class Router:
    """After the device: a request that exits (``exited[rid]``) goes to ``exit_to`` (it is
    answered on the device), the others to ``out``."""

    def __init__(self, exited: Sequence[bool], out, exit_to):
        self.exited, self.out, self.exit_to = exited, out, exit_to

    def put(self, rid: int) -> None:
        (self.exit_to if self.exited[rid] else self.out).put(rid)


def simulate_point(point, frame: pd.DataFrame, scenario: Scenario, seed: int | None = None,
                   decisions: np.ndarray | None = None) -> pd.DataFrame:
    """Simulate one design point (a row label of ``frame``, a
    :func:`~splitimpera.latency.engine.point_frame`); its requests, warm-up dropped (columns
    :data:`REQUEST_COLUMNS`, and ``exit``, ``exited``, ``sample`` for a frame with an exit level).

    Randomness: :func:`common_streams` of ``seed`` (default: the scenario's seed).
    ``decisions``: an early-exit point's per-sample exit decisions (N,) bool, replayed.
    """
    dev, srv, net, wl = scenario.device, scenario.server, scenario.network, scenario.workload
    streams = common_streams(scenario.seed if seed is None else seed)
    n_dev, n_req = wl.num_devices, wl.num_requests
    total = n_dev * n_req
    one = frame.loc[[point]]
    split = str(split_names(one)[0])
    bottleneck = str(point[1]) if isinstance(point, tuple) else "none"
    head_s = float(compute_time_s(one, "head", dev).iloc[0])
    tail_s = float(compute_time_s(one, "tail", srv).iloc[0])
    is_output = split == OUTPUT
    sent = 0 if (is_output and wl.result_at == "device") else int(one["tx_bytes"].iloc[0])
    dev_over, srv_over = float(overhead_s(dev, sent)), float(overhead_s(srv, sent))
    has_server = not is_output
    has_down = wl.result_at == "device" and not is_output

    arrivals = arrival_times_s(wl, streams["arrivals"])
    station = np.repeat(np.arange(n_dev), n_req).tolist()
    with_exit = "exit" in (frame.index.names or [])
    sample = np.full(total, -1, dtype=np.int64)
    exited = np.zeros(total, dtype=bool)
    if decisions is not None and len(decisions):
        sample = streams["exits"].integers(0, len(decisions), size=total)
        exited = np.asarray(decisions, dtype=bool)[sample]
    nan = [math.nan] * total
    t_dev_in, t_dev_start, t_dev_end = list(nan), list(nan), list(nan)
    t_srv_in, t_srv_start, t_srv_end, t_done = list(nan), list(nan), list(nan), list(nan)
    radio_j = [0.0] * total
    z = streams["service"].standard_normal((2, total))  # always drawn: common random numbers
    dev_factor = lognormal_factors(service_cv(dev), z[0]).tolist() if service_cv(dev) else None
    srv_factor = lognormal_factors(service_cv(srv), z[1]).tolist() if service_cv(srv) else None
    dev_extra = np.where(exited, 0.0, dev_over).tolist() if dev_over > 0 else None

    env = simpy.Environment()
    share = lambda n: contention_share(net, n)  # noqa: E731
    stoch = wl.stochastic_network
    nxt = Sink(env, t_done)
    lost = [0.0] * total  # per request: 1.0 lost (sampled) or, deterministic, the probability
    if has_down:
        seeds, delay = _draws(net, total, streams["downlink"], stoch)
        nxt = SharedLink(env, net.downlink_bps, share, nxt, bits=[0.0] * total, delay_s=delay.tolist(),
                         station=station, radio_j=radio_j, alpha_mw_per_mbps=net.radio.alpha_down_mw_per_mbps,
                         beta_mw=net.radio.beta_mw, rate_trace=_rate_trace(net, "down"),
                         sender=LinkSender(net, "down", seeds, stoch), payload_bytes=PREDICTION_BYTES, lost=lost,
                         floor_s=floor_s(net))
    if has_server:
        nxt = Processor(env, tail_s, nxt, enter=t_srv_in, start=t_srv_start, end=t_srv_end,
                        workers=wl.server_workers, max_batch=wl.max_batch, batch_timeout_s=wl.batch_timeout_ms * 1e-3,
                        batch_cost_fraction=wl.batch_cost_fraction, extra_s=[srv_over] * total if srv_over else None,
                        factor=srv_factor, dispatch_s=dispatch_s(srv))
    if sent > 0:
        seeds, delay = _draws(net, total, streams["uplink"], stoch)
        nxt = SharedLink(env, net.uplink_bps, share, nxt, bits=[0.0] * total, delay_s=delay.tolist(),
                         station=station, radio_j=radio_j, alpha_mw_per_mbps=net.radio.alpha_up_mw_per_mbps,
                         beta_mw=net.radio.beta_mw, rate_trace=_rate_trace(net, "up"),
                         sender=LinkSender(net, "up", seeds, stoch), payload_bytes=sent, lost=lost,
                         weights=uplink_weights(net, n_dev, streams["shares"]), floor_s=floor_s(net))
    if exited.any():
        nxt = Router(exited.tolist(), nxt, Sink(env, t_done))
    for d in range(n_dev):
        device = Processor(env, head_s, nxt, enter=t_dev_in, start=t_dev_start, end=t_dev_end, extra_s=dev_extra,
                           factor=dev_factor)
        Source(env, range(d * n_req, (d + 1) * n_req), arrivals[d].tolist(), device)
    env.run()

    # Stage boundaries; a skipped stage takes the next boundary's time, so it lasts 0 s.
    b = np.array([t_dev_in, t_dev_start, t_dev_end, t_srv_in, t_srv_start, t_srv_end, t_done])
    if np.isnan(b[-1]).any():
        raise RuntimeError(f"simulation of split {split!r} ended with unfinished requests")
    for k in range(len(b) - 2, -1, -1):
        b[k] = np.where(np.isnan(b[k]), b[k + 1], b[k])
    keep = np.tile(np.arange(n_req) >= warmup_requests(wl), n_dev)
    device_s = b[2] - b[1]
    out = pd.DataFrame({
        "split": split,
        "bottleneck": bottleneck,
        "device_id": np.asarray(station, dtype=np.int64),
        "t_arrival_s": arrivals.ravel(),
        "device_wait_s": b[1] - b[0],
        "device_compute_s": device_s,
        "uplink_s": b[3] - b[2],
        "server_wait_s": b[4] - b[3],
        "server_compute_s": b[5] - b[4],
        "downlink_s": b[6] - b[5],
        "latency_s": b[6] - arrivals.ravel(),
        "energy_j": compute_energy_j(device_s, dev) + np.asarray(radio_j),
        "bytes_sent": np.where(exited, 0, sent).astype(np.int64),
        "frame_lost": np.asarray(lost, dtype=float),
        **({"exit": str(point[2]), "exited": exited, "sample": sample} if with_exit else {}),
    })[keep]
    return out.sort_values(["t_arrival_s", "device_id"], kind="stable").reset_index(drop=True)


def summarize(requests: pd.DataFrame, points: Sequence[tuple[str, str]], max_latency_s: float | None,
              levels: Sequence[str] = ("split", "bottleneck")) -> pd.DataFrame:
    """One row per design point (in the order given) from a requests table; see :class:`SimResult`.
    ``levels``: the request columns that name a point (``exit`` joins with early exit)."""
    rows = []
    levels = list(levels)
    groups = dict(tuple(requests.groupby(levels, sort=False)))  # one pass, not one scan per point
    empty = requests.iloc[:0]
    for key in points:
        every = groups.get(tuple(key), empty)
        r = every[every["frame_lost"].to_numpy() < 1.0]  # a lost frame has no latency
        lat = r["latency_s"].to_numpy()
        done = r["t_arrival_s"].to_numpy() + lat
        span = done.max() - r["t_arrival_s"].min() if len(r) else math.nan
        p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if len(r) else (math.nan,) * 3
        rows.append({
            "requests": len(r),
            "latency_mean_s": lat.mean() if len(r) else math.nan,
            "latency_p50_s": p50, "latency_p95_s": p95, "latency_p99_s": p99,
            "throughput_rps": len(r) / span if span > 0 else math.nan,
            "deadline_miss_ratio": math.nan if max_latency_s is None or not len(r) else float(np.mean(lat > max_latency_s)),
            "frame_loss_ratio": float(every["frame_lost"].mean()) if len(every) else math.nan,
            "energy_j": every["energy_j"].mean(),
            "bytes_sent": every["bytes_sent"].mean(),
        })
    index = pd.MultiIndex.from_tuples([tuple(k) for k in points], names=levels)
    return pd.DataFrame(rows, index=index, columns=SUMMARY_COLUMNS)


SPLIT_TABLE_COLUMNS = [
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s", "downlink_s",
    "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps", "deadline_miss_ratio",
    "frame_loss_ratio", "energy_j",
]


def split_table(result: SimResult) -> pd.DataFrame:
    """Per-design-point latency breakdown of a simulation, in the analytic model's columns and more.

    Index: the simulated design points ``(split, bottleneck)``; columns :data:`SPLIT_TABLE_COLUMNS`.
    The stage columns and ``energy_j`` are means over the kept requests of the per-request
    columns, so they add up to ``latency_s``, the mean latency; percentiles, throughput and
    deadline misses come from :attr:`SimResult.summary`; ``bytes_sent`` is per request.
    """
    s = result.summary
    stages = ["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s", "downlink_s"]
    req = result.requests
    delivered = req[req["frame_lost"].to_numpy() < 1.0]
    means = delivered.groupby(list(s.index.names), sort=False)[stages].mean().reindex(s.index)
    out = means.assign(
        bytes_sent=s["bytes_sent"].round().astype(np.int64),
        latency_s=s["latency_mean_s"],
        energy_j=s["energy_j"],
        **{c: s[c] for c in ("latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
                             "deadline_miss_ratio", "frame_loss_ratio")},
    )
    return out[SPLIT_TABLE_COLUMNS]


# Measured on the demo (2-core VM, 20-100 devices): peak memory per simulated request while
# the run's tables are built, and simulated requests per second (53k/s on one idle core).
BYTES_PER_REQUEST = 600
REQUESTS_PER_S = 20_000


@dataclass(frozen=True)
class SimSize:
    """How big a simulation is before it runs: ``points`` design points × ``devices`` ×
    ``requests`` per device = :attr:`total` simulated requests, with rough memory and time."""

    points: int
    devices: int
    requests: int

    @property
    def total(self) -> int:
        return self.points * self.devices * self.requests

    @property
    def memory_bytes(self) -> float:
        return self.total * BYTES_PER_REQUEST

    @property
    def seconds(self) -> float:
        return self.total / REQUESTS_PER_S

    def text(self) -> str:
        """``4,400,000 requests (22 design points × 1,000 devices × 200 each), about 3.7 min and 2.64 GB``."""
        s = self.seconds
        t = f"{s:.0f} s" if s < 120 else f"{s / 60:.2g} min" if s < 7200 else f"{s / 3600:.3g} h"
        m = self.memory_bytes
        mem = f"{m / 1e9:.3g} GB" if m >= 1e9 else f"{m / 1e6:.3g} MB" if m >= 1e6 else f"{m / 1e3:.3g} kB"
        return (f"{self.total:,} requests ({self.points:,} design point{'s' if self.points != 1 else ''} "
                f"× {self.devices:,} device{'s' if self.devices != 1 else ''} × {self.requests:,} each), "
                f"about {t} and {mem}")


def simulation_size(scenario: Scenario, points: int) -> SimSize:
    """The :class:`SimSize` of simulating ``points`` design points of ``scenario``."""
    wl = scenario.workload
    return SimSize(int(points), wl.num_devices, wl.num_requests)


def check_size(scenario: Scenario, size: SimSize) -> None:
    """Refuse (:class:`UserError`) a simulation beyond ``analysis.max_simulated_requests``."""
    limit = scenario.analysis.max_simulated_requests
    if size.total <= limit:
        return
    wl = scenario.workload
    field = "workload.num_devices" if wl.num_devices > 1 else "workload.num_requests"
    raise UserError(
        f"simulating {size.text()} is more than analysis.max_simulated_requests ({limit:,}); use analysis.engine=analytic "
        f"(closed form, instant), fewer workload.num_requests (now {wl.num_requests:,}) or devices, fewer "
        "splits (analysis.splits), or raise the limit", source=scenario.source, field=field)


def simulate(scenario: Scenario, frame: pd.DataFrame, progress: Callable[[SimSize], object] | None = None,
             decisions: dict | None = None) -> SimResult:
    """Simulate every design point of ``frame`` (a :func:`~splitimpera.latency.engine.point_frame`:
    one profile row per point, with what it sends), each independently, in ``frame``'s order.

    Refused (:func:`check_size`) beyond ``analysis.max_simulated_requests``. ``progress``:
    called once with the :class:`SimSize` before the run; what it returns (e.g. a ``tqdm``
    bar) gets ``update(n)`` after each design point's ``n`` requests, and ``close()`` at the end.
    ``decisions``: early-exit point → per-sample exit decisions, replayed (see :func:`simulate_point`).
    """
    if not isinstance(frame.index, pd.MultiIndex):
        raise ValueError("simulate() takes a design-point frame (latency.engine.point_frame)")
    points = list(frame.index)
    size = simulation_size(scenario, len(points))
    check_size(scenario, size)
    if size.total:
        log.info("simulating %s", size.text())
    bar = progress(size) if progress is not None and size.total else None
    parts = []
    try:
        for p in points:
            parts.append(simulate_point(p, frame, scenario, decisions=(decisions or {}).get(p)))
            if bar is not None:
                bar.update(size.devices * size.requests)
    finally:
        if bar is not None:
            bar.close()
    levels = list(frame.index.names)
    columns = REQUEST_COLUMNS if "exit" not in levels else [*REQUEST_COLUMNS[:2], "exit", *REQUEST_COLUMNS[2:],
                                                            "exited", "sample"]
    requests = (pd.concat(parts, ignore_index=True) if parts
                else pd.DataFrame({c: pd.Series(dtype=float) for c in columns}))
    requests = requests[columns]
    summary = summarize(requests, points, scenario.qos.max_latency_s, levels)
    return SimResult(scenario=scenario, requests=requests, summary=summary)
