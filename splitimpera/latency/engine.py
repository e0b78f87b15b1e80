"""The latency stage: per design point, the latency breakdown by the scenario's engine.

Both engines read one frame per design point (:func:`point_frame`): the model's profile row
at the point's split, with ``tx_bytes`` and the bottleneck's extra work taken from the
design points' table (:class:`~splitimpera.accuracy.design_points.DesignPoints`) and nothing else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..accuracy.design_points import EXTRA_COLUMNS, POINT_LEVELS
from ..config.scenario import Scenario
from .analytic import BREAKDOWN_COLUMNS, breakdown_arrays, exit_stay, split_names
from .compute import compute_time_s
from .overhead import (departure_cv2, dispatch_s, has_spread, mean_wait_s, percentiles_s, service_cv, superposed_cv2,
                       wait_moments)
from .profile_keys import ProfileKeys
from .simulation import SimResult, simulate, split_table
from ..model.splits import OUTPUT

TABLE_COLUMNS = [
    "index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params", "head_mem_bytes",
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "device_utilisation", "uplink_utilisation", "server_utilisation",
    "downlink_utilisation", "overload", "energy_j", "accuracy", "accuracy_band", "accuracy_source",
]
# Columns only the simulation measures; the analytic engine (one request, no queueing) leaves them NaN.
SIM_ONLY_COLUMNS = ["latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps", "deadline_miss_ratio"]
# The analytic engine's latency columns, without the loads.
ANALYTIC_COLUMNS = [*BREAKDOWN_COLUMNS, "device_wait_s", "server_wait_s", *SIM_ONLY_COLUMNS]
# The latency stage's columns, as arrays (N, D); "overload" is a bool array (N, D, 4) there.
LATENCY_ARRAYS = [
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "device_utilisation", "uplink_utilisation", "server_utilisation",
    "downlink_utilisation", "energy_j",
]


def identity_points(profile: pd.DataFrame) -> pd.DataFrame:
    """The design points of the plain fp32 tensor (bottleneck ``none``): what the profile sends."""
    idx = pd.MultiIndex.from_arrays([list(profile.index), ["none"] * len(profile)], names=POINT_LEVELS)
    out = pd.DataFrame({"bytes_sent": profile["tx_bytes"].to_numpy(dtype=float)}, index=idx)
    for col in EXTRA_COLUMNS:
        out[col] = 0.0
    return out


def point_frame(profile: pd.DataFrame, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per design point: ``profile``'s row at the point's split, with ``tx_bytes``
    (whole bytes on the wire, rounded up from the mean ``bytes_sent``) and the extra-work
    columns of ``points`` (default: :func:`identity_points`). Index: ``points``' index."""
    points = identity_points(profile) if points is None else points
    splits = points.index.get_level_values("split")
    frame = profile.loc[list(splits)].copy()
    frame.attrs = profile.attrs  # the per-node roofline inputs travel with the rows
    frame.index = points.index
    frame["tx_bytes"] = np.ceil(points["bytes_sent"].to_numpy(dtype=float)).astype(np.int64)
    for col in EXTRA_COLUMNS:
        frame[col] = points[col].fillna(0.0).to_numpy(dtype=float) if col in points.columns else 0.0
    if "exit_rate" in points.columns:  # early exit: the fraction answered on the device
        frame["exit_rate"] = points["exit_rate"].fillna(0.0).to_numpy(dtype=float)
    return frame


# Resources a request passes through, in order, with the latency column that grows without
# bound when one is overloaded (its queue, or the link's wait for the medium).
RESOURCES = {"device": "device_wait_s", "uplink": "uplink_s", "server": "server_wait_s", "downlink": "downlink_s"}
# Every combination of overloaded resources as the ``overload`` column writes it, by bit mask.
OVERLOAD_TEXT = np.array([", ".join(r for k, r in enumerate(RESOURCES) if m >> k & 1) for m in range(16)], dtype=object)


def overload_text(mask: np.ndarray) -> np.ndarray:
    """The ``overload`` column (``"device, uplink"``; ``""`` if none) of a bool array ``(…, 4)``."""
    return OVERLOAD_TEXT[(mask * (1 << np.arange(len(RESOURCES)))).sum(axis=-1)]


def overload_mask(load: dict[str, np.ndarray]) -> np.ndarray:
    """Bool array ``(…, 4)``, :data:`RESOURCES` order: which resources are at ``≥ 1``."""
    return np.stack([load[f"{r}_utilisation"] >= 1.0 for r in RESOURCES], axis=-1)


def utilisation(frame: pd.DataFrame, scenario: Scenario, compute_s=compute_time_s) -> pd.DataFrame:
    """Offered load over capacity of every resource, per design point of ``frame`` (a
    :func:`point_frame`), from the closed form
    (:func:`~splitimpera.latency.analytic.breakdown_arrays` says how); ``≥ 1``: the queue
    there grows without bound. Columns ``device_utilisation`` … ``downlink_utilisation`` and
    ``overload``: the resources at ``≥ 1``, in the request's order, comma-separated ("" if none).
    """
    _, load = breakdown_arrays([scenario], frame, compute_s)
    out = pd.DataFrame({c: v[0] for c, v in load.items()}, index=frame.index)
    out["overload"] = overload_text(overload_mask(load))[0]
    return out


def add_waits(out: dict[str, np.ndarray], scenarios: list, frame: pd.DataFrame) -> None:
    """The wait columns and :data:`SIM_ONLY_COLUMNS` into ``out`` (a breakdown's arrays
    ``(N, D)``), the waits added to ``latency_s``.

    Constant service times (no profile states a spread): nothing queues, the server wait is
    its dispatch delay, the percentiles are NaN. With a spread (``overhead.service_cv``): the
    device's and the server's mean waits and the latency percentiles of
    :mod:`~splitimpera.latency.overhead` (Allen–Cunneen; throughput and deadline misses stay NaN).
    """
    n, d = len(scenarios), len(frame)
    to_server = split_names(frame) != OUTPUT
    stay = exit_stay(frame)
    stay = np.ones(d) if stay is None else stay
    dispatch = np.where(to_server, np.array([dispatch_s(sc.server) for sc in scenarios])[:, None], 0.0) * stay
    out.update({"device_wait_s": np.zeros((n, d)), "server_wait_s": dispatch.copy(),
                **{c: np.full((n, d), np.nan) for c in SIM_ONLY_COLUMNS}})
    for i in (i for i, sc in enumerate(scenarios) if has_spread(sc)):
        wl, dev, srv = scenarios[i].workload, scenarios[i].device, scenarios[i].server
        cs_d2, cs_s2 = (service_cv(dev) or 0.0) ** 2, (service_cv(srv) or 0.0) ** 2
        ca_d2 = 0.0 if wl.arrival == "periodic" else 1.0
        s_d = out["device_compute_s"][i]
        # The server's service of a forwarded request (the column is the mixture's mean).
        s_s = np.where(stay > 0, out["server_compute_s"][i] / np.maximum(stay, 1e-300), 0.0)
        w_d, pw_d = mean_wait_s(wl.rate_hz, s_d, ca_d2, cs_d2)
        lam_s = wl.num_devices * wl.rate_hz * stay
        rho_s = lam_s * s_s / wl.server_workers
        cd2 = departure_cv2(wl.rate_hz * s_d, ca_d2, cs_d2)
        # Periodic devices of one period repeat one pattern of phases: merged, they are no
        # closer to Poisson (the asymptotic method); independent streams are (QNA's hybrid).
        ca_s2 = cd2 if wl.arrival == "periodic" else superposed_cv2(cd2, wl.num_devices, rho_s)
        w_s, pw_s = mean_wait_s(lam_s, s_s, ca_s2, cs_s2, wl.server_workers)
        w_s = np.where(to_server, w_s, 0.0)
        out["device_wait_s"][i], out["server_wait_s"][i] = w_d, stay * w_s + dispatch[i]
        m_wd, v_wd = wait_moments(w_d, pw_d)
        m_ws, v_ws = wait_moments(w_s, pw_s)
        mean = m_wd + s_d + stay * (m_ws + s_s)
        var = v_wd + cs_d2 * s_d ** 2 + stay * (v_ws + cs_s2 * s_s ** 2)
        total = out["latency_s"][i] + w_d + stay * w_s + dispatch[i]
        for q, p in zip((50, 95, 99), percentiles_s(total - mean, mean, var)):
            out[f"latency_p{q}_s"][i] = p
    out["latency_s"] = out["latency_s"] + out["device_wait_s"] + out["server_wait_s"]


def add_unbounded(out: dict[str, np.ndarray], load: dict[str, np.ndarray], over: np.ndarray, scenarios: list) -> None:
    """Overloaded points (``over``: :func:`overload_mask`) in ``out`` have no steady state:
    the wait at each overloaded resource, the latency and its percentiles infinite, every
    request missing a deadline, and the throughput the capacity of the busiest resource."""
    hit = over.any(axis=-1)
    if not hit.any():
        return
    for k, col in enumerate(RESOURCES.values()):
        out[col] = np.where(over[..., k], np.inf, out[col])
    for col in ("latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s"):
        out[col] = np.where(hit, np.inf, out[col])
    busiest = np.fmax.reduce(np.stack([load[f"{r}_utilisation"] for r in RESOURCES], axis=-1), axis=-1)
    rate = np.array([sc.workload.num_devices * sc.workload.rate_hz for sc in scenarios])[:, None]
    out["throughput_rps"] = np.where(hit, rate / busiest, out["throughput_rps"])
    limited = np.array([1.0 if sc.qos.max_latency_s is not None else np.nan for sc in scenarios])[:, None]
    out["deadline_miss_ratio"] = np.where(hit, limited, out["deadline_miss_ratio"])


def analytic_arrays(scenarios: list, frame: pd.DataFrame, compute_s=compute_time_s,
                    keys: ProfileKeys | None = None) -> dict[str, np.ndarray]:
    """The analytic engine's columns (:data:`LATENCY_ARRAYS`, arrays ``(N, D)``, and
    ``overload``, a bool array ``(N, D, 4)`` in :data:`RESOURCES` order) for every scenario
    (rows) and row of ``frame``: one request's breakdown, the loads, the waits, and
    overloaded points unbounded."""
    out, load = breakdown_arrays(scenarios, frame, compute_s, keys)
    add_waits(out, scenarios, frame)
    out.update(load)
    out["overload"] = overload_mask(load)
    add_unbounded(out, load, out["overload"], scenarios)
    return out


def latency_table(scenario: Scenario, profile: pd.DataFrame, points: pd.DataFrame | None = None,
                  frame: pd.DataFrame | None = None, compute_s=compute_time_s, progress=None,
                  decisions=None) -> tuple[SimResult | None, pd.DataFrame]:
    """Latency columns of :data:`TABLE_COLUMNS` for every design point of ``points`` (default:
    every split with the plain fp32 tensor) by the scenario's engine. ``frame``: their
    :func:`point_frame`, when the caller has it already; ``compute_s``: compute times of the
    whole frame (see :func:`~splitimpera.latency.analytic.analytic_latency`); ``progress``:
    see :func:`~splitimpera.latency.simulation.simulate`; ``decisions``: the early-exit points'
    per-sample exit decisions, which the simulation replays (the analytic engine uses the
    frame's ``exit_rate``: the mixture's mean).

    Returns ``(SimResult or None, table indexed like points)``.
    """
    frame = point_frame(profile, points) if frame is None else frame
    arr = analytic_arrays([scenario], frame, compute_s)
    over = arr["overload"][0].any(axis=-1)
    load = pd.DataFrame({f"{r}_utilisation": arr[f"{r}_utilisation"][0] for r in RESOURCES}, index=frame.index)
    load["overload"] = overload_text(arr["overload"][0])
    simpy = scenario.analysis.engine == "simpy"
    # An overloaded point has no steady state: a finite run's mean would only say how long
    # the run was. It is not simulated; both engines report it the same way (:func:`add_unbounded`).
    sim = simulate(scenario, frame[~over], progress, decisions=decisions) if simpy else None
    if simpy and not over.any():
        return sim, split_table(sim).join(load)
    lat = pd.DataFrame({c: arr[c][0] for c in ANALYTIC_COLUMNS}, index=frame.index)
    if simpy and (~over).any():
        lat = pd.concat([split_table(sim), lat[over]]).reindex(frame.index)
    return sim, lat.join(load)


def latency_arrays(scenarios: list, frame: pd.DataFrame, compute_s, profile: pd.DataFrame, progress=None,
                   decisions=None, keys: ProfileKeys | None = None) -> tuple[list, dict[str, np.ndarray]]:
    """The latency stage's columns for every scenario (rows) and design point of ``frame``
    (columns). ``compute_s(frame, side, device)``: seconds per design point; ``profile``,
    ``progress`` and ``decisions`` as :func:`latency_table` takes them.

    Returns ``(sims, arrays)``: each row's SimResult (None on the analytic engine) and the
    columns of :data:`LATENCY_ARRAYS` plus ``overload``, a bool array ``(N, D, 4)`` in
    :data:`RESOURCES` order. The SimPy engine runs per scenario (its requests are its own).
    """
    keys = keys or ProfileKeys()
    n, d = len(scenarios), len(frame)
    out = {c: np.empty((n, d)) for c in LATENCY_ARRAYS}
    out["bytes_sent"] = np.empty((n, d), dtype=np.int64)
    out["overload"] = np.zeros((n, d, len(RESOURCES)), dtype=bool)
    sims: list = [None] * n
    simpy = [i for i, sc in enumerate(scenarios) if sc.analysis.engine == "simpy"]
    for i in simpy:
        sims[i], lat = latency_table(scenarios[i], profile, frame=frame, compute_s=compute_s, progress=progress,
                                     decisions=decisions)
        for c in LATENCY_ARRAYS:
            out[c][i] = lat[c].to_numpy()
        out["overload"][i] = np.array([[r in v for r in RESOURCES] for v in lat["overload"]], dtype=bool).reshape(d, -1)
    rest = [i for i in range(n) if i not in set(simpy)]
    if rest:
        part = analytic_arrays([scenarios[i] for i in rest], frame, compute_s, keys)
        for c in [*LATENCY_ARRAYS, "overload"]:
            out[c][rest] = part[c]
    return sims, out
