"""Per-request overhead of a side from timings of the real split run: the fit.

The real run (:mod:`splitimpera.runtime.overhead_run`) gives, per design point, each side's
CPU seconds per request and the compute it would take alone, and per request its service
times and server waits. :func:`fit_overhead` turns them into a profile's ``overhead``
section (:class:`~splitimpera.config.hardware.Overhead`):

* ``request_us``, ``per_byte_us``: the line ``cpu − compute = a + b × payload bytes`` over the
  points, by least absolute deviations (a slow point does not drag the line), both ≥ 0;
* ``service_cv``: the log-normal fitted to the requests' service times, each point scaled
  by its own median (``σ`` the standard deviation of ``log t``, ``cv = sqrt(exp(σ²) − 1)``);
* ``dispatch_us`` (server): the median wait of a request that found the server idle.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .fit import nnlad


def fit_line_us(payload_bytes: Sequence[float], extra_s: Sequence[float]) -> tuple[float, float]:
    """``(request_us, per_byte_us)`` of ``extra_s ≈ (a + b × bytes) × 1e-6``, a, b ≥ 0 (LAD);
    one point, or one payload size, gives the fixed part only."""
    b = np.asarray(payload_bytes, dtype=float)
    y = np.asarray(extra_s, dtype=float) * 1e6
    if len(np.unique(b)) < 2:
        return max(float(np.median(y)), 0.0), 0.0
    a, k = nnlad(np.column_stack([np.ones_like(b), b]), y)
    return float(a), float(k)


def lognormal_cv(times_s: Sequence[np.ndarray]) -> float:
    """Coefficient of variation of the log-normal fitted to service times: each group (one
    design point's requests) divided by its median, pooled, ``σ`` of the logs."""
    logs = [np.log(np.asarray(t, dtype=float)[np.asarray(t) > 0]) for t in times_s]
    pooled = np.concatenate([x - np.median(x) for x in logs if len(x) > 1] or [np.zeros(1)])
    s2 = float(np.var(pooled, ddof=1)) if len(pooled) > 1 else 0.0
    return math.sqrt(math.expm1(s2))


def fit_overhead(payload_bytes: Sequence[float], cpu_s: Sequence[float], compute_s: Sequence[float],
                 service_s: Sequence[np.ndarray], waits_s: np.ndarray | None = None, *, source: str = "") -> dict:
    """An ``overhead`` mapping for a device profile (see the module doc). Per point:
    ``payload_bytes``, ``cpu_s`` (seconds of the side's work per request in the run),
    ``compute_s`` (the same side's compute timed alone); ``service_s``: per point, the
    requests' service times; ``waits_s``: the server's waits of requests that found it idle
    (None: the device side, no dispatch)."""
    extra = np.asarray(cpu_s, dtype=float) - np.asarray(compute_s, dtype=float)
    a, b = fit_line_us(payload_bytes, extra)
    out = {"request_us": round(a, 2), "per_byte_us": float(f"{b:.4g}"), "service_cv": round(lognormal_cv(service_s), 4)}
    if waits_s is not None and len(waits_s):
        out["dispatch_us"] = round(float(np.median(waits_s)) * 1e6, 2)
    out["source"] = source
    return out
