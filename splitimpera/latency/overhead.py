"""Per-request software overhead, server dispatch, the link's message floor, service-time
spread, and the queueing approximation the analytic engine uses with that spread.

A device profile's ``overhead`` (:class:`~splitimpera.config.hardware.Overhead`) adds, per
request on that side, ``request_us + per_byte_us × payload bytes`` of work beside the model's
compute: both engines add it to the side's service time (``device_compute_s`` /
``server_compute_s``), and the utilisation that flags overload counts it. ``dispatch_us``
(the server's) delays a request between its arrival at the server and its entry into the
queue (``server_wait_s``). ``network.message_floor_ms``: a transfer takes at least that long.
None of these is modelled when the profiles do not state it.

**Service-time spread.** With ``overhead.service_cv`` set, the simulation draws each
request's service time on that side as ``mean × exp(σZ − σ²/2)``, ``σ² = ln(1 + cv²)``
(a log-normal of that mean and coefficient of variation; ``Z`` standard normal from the
scenario seed's ``service`` stream). The analytic engine then adds queueing waits by the
**Allen–Cunneen** approximation for G/G/c (Kingman's formula for one worker)::

    E[W] = C(c, a) / (c μ − λ) · (ca² + cs²) / 2

with ``C`` Erlang's C (for c = 1: ``ρ``), arrival variability ``ca²`` 0 for periodic and 1
for Poisson arrivals at the device; at the server the devices' departure streams
(``cd² = ρ² cs² + (1 − ρ²) ca²``) merged: periodic devices keep ``cd²`` (Whitt's
asymptotic method: one period's pattern of phases repeats), Poisson ones by QNA's hybrid rule. Percentiles: each
wait is taken as 0 with probability ``1 − C`` and otherwise exponential of mean ``E[W]/C``,
each service log-normal; the latency's random part (waits and services) is matched by a
gamma of the same mean and variance, the rest (transfers) added as constants.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..config.hardware import DeviceProfile, NetworkProfile


def overhead_s(device: DeviceProfile, payload_bytes) -> np.ndarray:
    """Seconds of per-request software work on ``device`` for each payload (bytes framed and
    sent, or read and parsed); 0 without an ``overhead`` section or where nothing is sent."""
    b = np.asarray(payload_bytes, dtype=float)
    o = device.overhead
    if o is None:
        return np.zeros_like(b)
    return np.where(b > 0, (o.request_us + o.per_byte_us * b) * 1e-6, 0.0)


def dispatch_s(server: DeviceProfile) -> float:
    """The server's wait for a worker to take a request, seconds (0 when not stated)."""
    return 0.0 if server.overhead is None else server.overhead.dispatch_us * 1e-6


def floor_s(net: NetworkProfile) -> float:
    """The least seconds a message takes over ``net`` (0: no floor)."""
    return net.message_floor_ms * 1e-3


def with_floor(transfer_s, payload_bytes, net: NetworkProfile) -> np.ndarray:
    """``transfer_s`` raised to the link's message floor where something is sent."""
    t = np.asarray(transfer_s, dtype=float)
    f = floor_s(net)
    return t if f <= 0 else np.where(np.asarray(payload_bytes, dtype=float) > 0, np.maximum(t, f), t)


def service_cv(device: DeviceProfile) -> float | None:
    """The coefficient of variation of ``device``'s service time, or None (constant)."""
    return None if device.overhead is None else device.overhead.service_cv


def lognormal_factors(cv: float | None, z: np.ndarray) -> np.ndarray:
    """Multipliers of mean 1 and coefficient of variation ``cv`` from standard normals ``z``
    (all 1 for ``cv`` None or 0)."""
    if not cv:
        return np.ones_like(z, dtype=float)
    s2 = math.log1p(cv * cv)
    return np.exp(math.sqrt(s2) * z - s2 / 2.0)


def erlang_c(c: int, a) -> np.ndarray:
    """Probability that an arrival waits in M/M/c with offered load ``a`` = λ/μ (erlangs)."""
    a = np.asarray(a, dtype=float)
    rho = a / c
    term, total = np.ones_like(a), np.ones_like(a)
    for k in range(1, c):
        term = term * a / k
        total = total + term
    last = term * a / c / np.maximum(1.0 - rho, 1e-300)
    return np.where(rho < 1.0, last / (total + last), 1.0)


def mean_wait_s(rate_hz, service_s, ca2, cs2, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Allen–Cunneen mean wait in a G/G/c queue (Kingman's for ``workers`` = 1), seconds, and
    the probability of waiting ``C``; ``inf`` at or past saturation."""
    lam, s = np.broadcast_arrays(np.asarray(rate_hz, dtype=float), np.asarray(service_s, dtype=float))
    a = lam * s
    pw = erlang_c(workers, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = pw * s / (workers * (1.0 - a / workers)) * (np.asarray(ca2) + np.asarray(cs2)) / 2.0
    return np.where(a / workers < 1.0, np.where(s > 0, w, 0.0), np.inf), pw


def departure_cv2(rho, ca2, cs2) -> np.ndarray:
    """Squared coefficient of variation of a single-server queue's departures (QNA)."""
    rho = np.minimum(np.asarray(rho, dtype=float), 1.0)
    return rho ** 2 * cs2 + (1.0 - rho ** 2) * ca2


def superposed_cv2(cv2, streams: int, rho) -> np.ndarray:
    """Squared coefficient of variation of ``streams`` equal streams merged (QNA's hybrid of
    the asymptotic method and Poisson), at a queue of utilisation ``rho``."""
    w = 1.0 / (1.0 + 4.0 * (1.0 - np.minimum(np.asarray(rho, dtype=float), 1.0)) ** 2 * (streams - 1))
    return w * np.asarray(cv2, dtype=float) + (1.0 - w)


def wait_moments(w_mean, pw) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a wait that is 0 with probability 1 − ``pw`` and otherwise
    exponential of mean ``w_mean / pw``."""
    w_mean, pw = np.broadcast_arrays(np.asarray(w_mean, dtype=float), np.asarray(pw, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.where(pw > 0, 2.0 * w_mean ** 2 / pw, 0.0)
    return w_mean, second - w_mean ** 2


def percentiles_s(constant_s, mean_s, var_s, qs=(50, 95, 99)) -> list[np.ndarray]:
    """Percentiles (seconds) of ``constant_s`` + a random part of mean ``mean_s`` and variance
    ``var_s``, the random part taken as a gamma of those moments (a constant where var is 0)."""
    c, m, v = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (constant_s, mean_s, var_s)))
    out = []
    for q in qs:
        with np.errstate(divide="ignore", invalid="ignore"):
            shape, scale = m ** 2 / v, v / m
            g = stats.gamma.ppf(q / 100.0, np.where(v > 0, shape, 1.0), scale=np.where(v > 0, scale, 1.0))
        out.append(np.where(~np.isfinite(m), np.inf, c + np.where((v > 0) & (m > 0), g, m)))
    return out


def has_spread(scenario) -> bool:
    """True when the device or the server profile states a service-time spread."""
    return service_cv(scenario.device) is not None or service_cv(scenario.server) is not None
