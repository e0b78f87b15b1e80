"""Unequal per-station shares of a contended Wi-Fi medium, drawn with ns-3's spread.

ns-3's saturated stations do not get equal goodput: over a 2 s window, Jain's fairness
index of the per-station goodputs, ``J = (Σx)² / (n·Σx²) = 1 / (1 + CV²)`` (1 = equal,
``CV`` the coefficient of variation of the shares), falls from ~1 at 2 stations to 0.80 at
8, 0.75 at 16 and 0.66 at 32 (:data:`JAIN_NS3`). With ``network.unequal_shares`` the
simulation gives each station a weight: a station with weight ``w`` among the stations
sending gets ``w / mean(w)`` times the contention share (the mean over the stations
sending), so the aggregate stays what the curve says, and a station sending alone gets the
whole rate whatever its weight: the draw matters only where transfers overlap.

Weights are Gamma-distributed with mean 1 and the CV that gives the target ``J`` for the
number of stations (its square scaled by ``n / (n − 1)``, as a sample's CV² falls short of
the distribution's by that factor), drawn once per simulation from the scenario seed.

Part of ns-3's spread is short-term: over 1 s windows the index is lower than over 4 s
(wifi4 at HT MCS 10, 20 stations: 0.69 against 0.80), so a fixed per-station weight drawn
from the 2 s figure overstates the unfairness a long simulation would see and understates
what a sub-second burst sees.
"""

from __future__ import annotations

import numpy as np

# ns-3 3.44 (splitimpera/latency/ns3/wifi.py): 802.11n 2.4 GHz 20 MHz HT MCS 15, saturated
# UDP uplink, Jain index of the per-station goodput over 2 s after 0.5 s warm-up, mean of 2 runs
# (benchmarks/bench_wifi_contention.py --jain). (stations, J).
JAIN_NS3: tuple[tuple[int, float], ...] = ((1, 1.0), (2, 0.999), (4, 0.964), (8, 0.798), (16, 0.745), (32, 0.656))


def jain_index(x) -> float:
    """Jain's fairness index of the values ``x``: 1 when equal, 1/n when one takes all."""
    x = np.asarray(x, dtype=float)
    sq = float((x * x).sum())
    return float(x.sum() ** 2 / (len(x) * sq)) if sq > 0 else 1.0


def target_jain(stations: int) -> float:
    """ns-3's Jain index at ``stations`` (interpolated in log2 of the station count; the last
    point's CV² grows on linearly in the station count beyond it)."""
    n, j = zip(*JAIN_NS3)
    if stations <= n[-1]:
        return float(np.interp(np.log2(max(stations, 1)), np.log2(n), j))
    cv2 = (1 / j[-1] - 1) * (stations - 1) / (n[-1] - 1)
    return 1.0 / (1.0 + cv2)


def draw_weights(stations: int, rng: np.random.Generator, jain: float | None = None) -> np.ndarray:
    """Per-station weights, Gamma with mean 1, whose Jain index is ``jain`` (default
    :func:`target_jain` of ``stations``): one draw's index scatters by ~0.04-0.07 around it,
    and the mean over draws is ~0.01 above it (the index is convex in the CV²)."""
    if stations <= 1:
        return np.ones(max(stations, 0))
    j = target_jain(stations) if jain is None else float(jain)
    if not 0 < j <= 1:
        raise ValueError(f"a Jain index is in (0, 1], got {j}")
    cv2 = (1.0 / j - 1.0) * stations / (stations - 1)
    if cv2 <= 0:
        return np.ones(stations)
    return rng.gamma(1.0 / cv2, cv2, size=stations)
