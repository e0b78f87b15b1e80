"""The latency stage: per design point, the latency breakdown by the scenario's engine.

Both engines read one frame per design point (:func:`point_frame`): the model's profile row
at the point's split, with ``tx_bytes`` and the bottleneck's extra work taken from the
design points' table (:class:`~splitimpera.accuracy.stage.DesignPoints`) and nothing else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..accuracy.stage import EXTRA_COLUMNS, POINT_LEVELS
from ..config.scenario import Scenario
from .analytic import analytic_latency
from .compute import compute_time_s
from .link import contention_share, wire_bytes
from .simulation import SimResult, simulate, split_table

TABLE_COLUMNS = [
    "index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params", "head_mem_bytes",
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "uplink_utilisation", "energy_j", "accuracy", "accuracy_source",
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
    return frame


def uplink_utilisation(bytes_sent, scenario: Scenario) -> np.ndarray:
    """Offered uplink load of all devices over the link's capacity (1 = saturated).

    Load = devices × request rate × bits on the air per request (headers included, and over
    TCP the mean retransmissions, ``1/(1 − loss)`` per packet; UDP retransmits nothing);
    capacity = the link's aggregate rate with that many stations
    (``contention_share × stations × uplink rate``).
    """
    net, wl = scenario.network, scenario.workload
    b = np.asarray(bytes_sent, dtype=float)
    resend = 1.0 / (1.0 - net.loss) if net.transport == "tcp" else 1.0
    bits = np.where(b > 0, wire_bytes(b, net) * 8.0 * resend, 0.0)
    capacity = net.uplink_bps * contention_share(net, wl.num_devices) * wl.num_devices
    return wl.num_devices * wl.rate_hz * bits / capacity


def latency_table(scenario: Scenario, profile: pd.DataFrame, points: pd.DataFrame | None = None,
                  frame: pd.DataFrame | None = None, compute_s=compute_time_s,
                  ) -> tuple[SimResult | None, pd.DataFrame]:
    """Latency columns of :data:`TABLE_COLUMNS` for every design point of ``points`` (default:
    every split with the plain fp32 tensor) by the scenario's engine. ``frame``: their
    :func:`point_frame`, when the caller has it already; ``compute_s``: the analytic engine's
    compute times (see :func:`~splitimpera.latency.analytic.analytic_latency`).

    Returns ``(SimResult or None, table indexed like points)``.
    """
    frame = point_frame(profile, points) if frame is None else frame
    if scenario.analysis.engine == "simpy":
        sim = simulate(scenario, frame)
        return sim, split_table(sim)
    lat = analytic_latency(frame, scenario, compute_s)
    n = len(lat)
    # One request alone: nothing queues, and there is no spread to take percentiles of.
    extra = {"device_wait_s": np.zeros(n), "server_wait_s": np.zeros(n), **{c: np.full(n, np.nan) for c in SIM_ONLY_COLUMNS}}
    return None, pd.concat([lat, pd.DataFrame(extra, index=lat.index)], axis=1)
