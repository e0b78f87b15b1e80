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
from .analytic import analytic_latency, split_names
from .compute import compute_time_s
from .link import contention_share, wire_bytes
from .overhead import (departure_cv2, dispatch_s, has_spread, mean_wait_s, overhead_s, percentiles_s, service_cv,
                       superposed_cv2, wait_moments)
from .simulation import SimResult, simulate, split_table
from ..model.splits import OUTPUT, PREDICTION_BYTES

TABLE_COLUMNS = [
    "index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params", "head_mem_bytes",
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "device_utilisation", "uplink_utilisation", "server_utilisation",
    "downlink_utilisation", "overload", "energy_j", "accuracy", "accuracy_band", "accuracy_source",
]
# Columns only the simulation measures; the analytic engine (one request, no queueing) leaves them NaN.
SIM_ONLY_COLUMNS = ["latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps", "deadline_miss_ratio"]


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


def uplink_utilisation(bytes_sent, scenario: Scenario, direction: str = "up") -> np.ndarray:
    """Offered uplink load of all devices over the link's capacity (1 = saturated).

    Load = devices × request rate × bits on the air per request (headers included, and over
    TCP the mean retransmissions, ``1/(1 − loss)`` per packet; UDP retransmits nothing);
    capacity = the link's aggregate rate with that many stations
    (``contention_share × stations × uplink rate``). ``direction="down"``: the same for the
    downlink. A rate trace is seen at its time-weighted mean rate.
    """
    net, wl = scenario.network, scenario.workload
    b = np.asarray(bytes_sent, dtype=float)
    resend = 1.0 / (1.0 - net.loss) if net.transport == "tcp" else 1.0
    bits = np.where(b > 0, wire_bytes(b, net) * 8.0 * resend, 0.0)
    rate = net.uplink_bps if direction == "up" else net.downlink_bps
    capacity = rate * contention_share(net, wl.num_devices) * wl.num_devices
    return wl.num_devices * wl.rate_hz * bits / capacity


# Resources a request passes through, in order, with the latency column that grows without
# bound when one is overloaded (its queue, or the link's wait for the medium).
RESOURCES = {"device": "device_wait_s", "uplink": "uplink_s", "server": "server_wait_s", "downlink": "downlink_s"}


def utilisation(frame: pd.DataFrame, scenario: Scenario, compute_s=compute_time_s) -> pd.DataFrame:
    """Offered load over capacity of every resource, per design point of ``frame`` (a
    :func:`point_frame`), from the closed form; ``≥ 1``: the queue there grows without bound.

    Columns (index: ``frame``'s):

    * ``device_utilisation`` = rate × (head time + the device's per-request overhead) (each
      device has its own FIFO);
    * ``uplink_utilisation`` / ``downlink_utilisation``: :func:`uplink_utilisation` (bits on
      the medium; a transfer's stalls, waiting for ACKs, leave the medium to the others);
    * ``server_utilisation`` = N × rate × t(B) / (B × workers): full batches of
      ``B = max_batch`` at saturation, ``t(B) = t1 · (1 + c · (B − 1))`` (batch-1 tail time
      ``t1``, ``c = batch_cost_fraction``), the most the dynamic batcher serves; B = 1 without
      batching; every request adds the server's per-request overhead, which batching does not
      share (:mod:`~splitimpera.latency.overhead`; the dispatch wait is latency, not work);
    * ``overload``: the resources at ``≥ 1``, in the request's order, comma-separated ("" if none).

    Early exit (a frame with ``exit_rate`` p): only the fraction 1 − p of the requests loads
    the links and the server.
    """
    dev, srv, wl = scenario.device, scenario.server, scenario.workload
    is_output = split_names(frame) == OUTPUT
    sent = frame["tx_bytes"].to_numpy(dtype=float)
    to_device = wl.result_at == "device"
    if to_device:
        sent = np.where(is_output, 0.0, sent)
    back = np.where(is_output | (not to_device), 0.0, float(PREDICTION_BYTES))
    stay = 1.0 - frame["exit_rate"].to_numpy(dtype=float) if "exit_rate" in frame.columns else 1.0
    head_s = np.asarray(compute_s(frame, "head", dev), dtype=float) + stay * overhead_s(dev, sent)
    tail_s = np.where(is_output, 0.0, np.asarray(compute_s(frame, "tail", srv), dtype=float))
    extra_s = np.where(is_output, 0.0, overhead_s(srv, sent)) * stay
    sent, back, tail_s = sent * stay, back * stay, tail_s * stay
    b = wl.max_batch
    batch_s = tail_s * (1.0 + wl.batch_cost_fraction * (b - 1)) + b * extra_s
    out = pd.DataFrame({
        "device_utilisation": wl.rate_hz * head_s,
        "uplink_utilisation": uplink_utilisation(sent, scenario),
        "server_utilisation": wl.num_devices * wl.rate_hz * batch_s / (b * wl.server_workers),
        "downlink_utilisation": uplink_utilisation(back, scenario, "down"),
    }, index=frame.index)
    over = out[[f"{r}_utilisation" for r in RESOURCES]].to_numpy() >= 1.0
    out["overload"] = [", ".join(r for r, o in zip(RESOURCES, row) if o) for row in over]
    return out


def unbounded(lat: pd.DataFrame, load: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """``lat`` (analytic rows: one request's service times) for overloaded points: the wait
    at each overloaded resource, the latency and its percentiles infinite, every request
    missing a deadline, and the throughput the capacity of the busiest resource."""
    out = lat.copy()
    for resource, col in RESOURCES.items():
        hit = load["overload"].str.contains(resource).to_numpy()
        out.loc[hit, col] = np.inf
    for col in ("latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s"):
        out[col] = np.inf
    busiest = load[[f"{r}_utilisation" for r in RESOURCES]].max(axis=1)
    out["throughput_rps"] = scenario.workload.num_devices * scenario.workload.rate_hz / busiest
    out["deadline_miss_ratio"] = 1.0 if scenario.qos.max_latency_s is not None else np.nan
    return out


def analytic_waits(lat: pd.DataFrame, frame: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """``lat`` (:func:`~splitimpera.latency.analytic.analytic_latency`'s rows) with the wait
    columns and :data:`SIM_ONLY_COLUMNS`, the waits added to ``latency_s``.

    Constant service times (no profile states a spread): nothing queues, the server wait is
    its dispatch delay, the percentiles are NaN. With a spread (``overhead.service_cv``): the
    device's and the server's mean waits and the latency percentiles of
    :mod:`~splitimpera.latency.overhead` (Allen–Cunneen; throughput and deadline misses stay NaN).
    """
    wl, dev, srv = scenario.workload, scenario.device, scenario.server
    n = len(lat)
    to_server = split_names(frame) != OUTPUT
    stay = 1.0 - frame["exit_rate"].to_numpy(dtype=float) if "exit_rate" in frame.columns else np.ones(n)
    dispatch = np.where(to_server, dispatch_s(srv), 0.0) * stay
    extra = {"device_wait_s": np.zeros(n), "server_wait_s": dispatch, **{c: np.full(n, np.nan) for c in SIM_ONLY_COLUMNS}}
    if has_spread(scenario):
        cs_d2, cs_s2 = (service_cv(dev) or 0.0) ** 2, (service_cv(srv) or 0.0) ** 2
        ca_d2 = 0.0 if wl.arrival == "periodic" else 1.0
        s_d = lat["device_compute_s"].to_numpy(dtype=float)
        # The server's service of a forwarded request (the column is the mixture's mean).
        s_s = np.where(stay > 0, lat["server_compute_s"].to_numpy(dtype=float) / np.maximum(stay, 1e-300), 0.0)
        w_d, pw_d = mean_wait_s(wl.rate_hz, s_d, ca_d2, cs_d2)
        lam_s = wl.num_devices * wl.rate_hz * stay
        rho_s = lam_s * s_s / wl.server_workers
        cd2 = departure_cv2(wl.rate_hz * s_d, ca_d2, cs_d2)
        # Periodic devices of one period repeat one pattern of phases: merged, they are no
        # closer to Poisson (the asymptotic method); independent streams are (QNA's hybrid).
        ca_s2 = cd2 if wl.arrival == "periodic" else superposed_cv2(cd2, wl.num_devices, rho_s)
        w_s, pw_s = mean_wait_s(lam_s, s_s, ca_s2, cs_s2, wl.server_workers)
        w_s = np.where(to_server, w_s, 0.0)
        extra["device_wait_s"], extra["server_wait_s"] = w_d, stay * w_s + dispatch
        m_wd, v_wd = wait_moments(w_d, pw_d)
        m_ws, v_ws = wait_moments(w_s, pw_s)
        mean = m_wd + s_d + stay * (m_ws + s_s)
        var = v_wd + cs_d2 * s_d ** 2 + stay * (v_ws + cs_s2 * s_s ** 2)
        total = lat["latency_s"].to_numpy(dtype=float) + w_d + stay * w_s + dispatch
        p50, p95, p99 = percentiles_s(total - mean, mean, var)
        extra.update(latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99)
    out = pd.concat([lat, pd.DataFrame(extra, index=lat.index)], axis=1)
    out["latency_s"] = out["latency_s"] + out["device_wait_s"] + out["server_wait_s"]
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
    load = utilisation(frame, scenario, compute_s)
    over = (load["overload"] != "").to_numpy()
    simpy = scenario.analysis.engine == "simpy"
    # An overloaded point has no steady state: a finite run's mean would only say how long
    # the run was. It is not simulated; both engines report it the same way (:func:`unbounded`).
    sim = simulate(scenario, frame[~over], progress, decisions=decisions) if simpy else None
    if simpy and not over.any():
        return sim, split_table(sim).join(load)
    # compute_s answers for the whole frame (it may be kept per selection): a subset asks the model.
    lat = analytic_latency(frame[over], scenario) if simpy else analytic_latency(frame, scenario, compute_s)
    lat = analytic_waits(lat, frame[over] if simpy else frame, scenario)
    if simpy:
        lat = pd.concat([split_table(sim), lat]) if (~over).any() else lat
        lat = lat.reindex(frame.index)
    if over.any():
        lat.loc[over] = unbounded(lat[over], load[over], scenario)
    return sim, lat.join(load)
