"""The latency stage for many scenarios at once, on arrays of shape points × design points.

A sweep evaluates one set of design points (one :func:`~splitimpera.latency.engine.point_frame`)
under many scenarios. Here a scenario's own numbers (request rate, devices, batching) are
columns of shape ``(N, 1)``; what depends on a profile — compute times on a device, transfers
over a link (:func:`~splitimpera.latency.transport.request_transfers`, per link, station count
and payloads) — is computed once per distinct profile (keyed by its canonical JSON) and
gathered. The formulas are :func:`~splitimpera.latency.analytic.analytic_latency`'s,
:func:`~splitimpera.latency.engine.utilisation`'s and :func:`~splitimpera.latency.engine.unbounded`'s
applied elementwise, in the same order, so a point's row equals what those give for its
scenario alone (tests check it). The SimPy engine runs per point
(:func:`~splitimpera.latency.engine.latency_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .analytic import split_names
from .compute import compute_energy_j
from .engine import RESOURCES, SIM_ONLY_COLUMNS, latency_table
from .link import contention_share, wire_bytes
from .transport import frame_loss_ratio, link_transfers, request_transfers
from ..model.splits import OUTPUT, PREDICTION_BYTES

# The latency stage's columns, as arrays (N, D); "overload" is a bool array (N, D, 4) here.
LATENCY_ARRAYS = [
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "frame_loss_ratio", "device_utilisation", "uplink_utilisation", "server_utilisation",
    "downlink_utilisation", "energy_j",
]
# Every combination of overloaded resources as the ``overload`` column writes it, by bit mask.
OVERLOAD_TEXT = np.array([", ".join(r for k, r in enumerate(RESOURCES) if m >> k & 1) for m in range(16)], dtype=object)


def overload_text(mask: np.ndarray) -> np.ndarray:
    """The ``overload`` column (``"device, uplink"``; ``""`` if none) of a bool array ``(…, 4)``."""
    return OVERLOAD_TEXT[(mask * (1 << np.arange(len(RESOURCES)))).sum(axis=-1)]


class ProfileKeys:
    """The canonical JSON of each profile object, computed once per object: the scenarios of a
    sweep share their device, server and network objects wherever the point does not change them."""

    def __init__(self):
        self.seen: dict[int, tuple[object, str]] = {}

    def __call__(self, profile) -> str:
        hit = self.seen.get(id(profile))
        if hit is None:  # the object is kept, so its id is not reused while this lives
            hit = self.seen[id(profile)] = (profile, profile.model_dump_json())
        return hit[1]


def by_key(keys: list, fn) -> np.ndarray:
    """``fn(i)`` (an array of length D) for the first row ``i`` of each distinct key, gathered
    to shape ``(N, D)``."""
    first: dict = {}
    where = np.array([first.setdefault(k, i) for i, k in enumerate(keys)], dtype=np.int64)
    rows = {i: np.asarray(fn(i), dtype=float) for i in first.values()}
    uniq = list(rows)
    pos = np.searchsorted(uniq, where)  # first-row indices are increasing
    return np.stack([rows[i] for i in uniq])[pos]


def latency_arrays(scenarios: list, frame: pd.DataFrame, compute_s, profile: pd.DataFrame, progress=None,
                   decisions=None, keys: ProfileKeys | None = None) -> tuple[list, dict[str, np.ndarray]]:
    """The latency stage's columns for every scenario (rows) and design point of ``frame``
    (columns). ``compute_s(frame, side, device)``: seconds per design point; ``profile``,
    ``progress`` and ``decisions`` as :func:`~splitimpera.latency.engine.latency_table` takes them.

    Returns ``(sims, arrays)``: each row's SimResult (None on the analytic engine) and the
    columns of :data:`LATENCY_ARRAYS` plus ``overload``, a bool array ``(N, D, 4)`` in
    :data:`~splitimpera.latency.engine.RESOURCES` order.
    """
    keys = keys or ProfileKeys()
    n, d = len(scenarios), len(frame)
    out = {c: np.empty((n, d)) for c in LATENCY_ARRAYS}
    out["bytes_sent"] = np.empty((n, d), dtype=np.int64)
    out["overload"] = np.zeros((n, d, len(RESOURCES)), dtype=bool)
    sims: list = [None] * n
    simpy = [i for i, sc in enumerate(scenarios) if sc.analysis.engine == "simpy"]
    for i in simpy:  # one simulation per point: its requests are its own
        sims[i], lat = latency_table(scenarios[i], profile, frame=frame, compute_s=compute_s, progress=progress,
                                     decisions=decisions)
        for c in LATENCY_ARRAYS:
            out[c][i] = lat[c].to_numpy()
        out["overload"][i] = np.array([[r in v for r in RESOURCES] for v in lat["overload"]], dtype=bool).reshape(d, -1)
    rest = [i for i in range(n) if i not in set(simpy)]
    if rest:
        part = analytic_arrays([scenarios[i] for i in rest], frame, compute_s, keys)
        for c, v in part.items():
            out[c][rest] = v
    return sims, out


def analytic_arrays(scenarios: list, frame: pd.DataFrame, compute_s, keys: ProfileKeys) -> dict[str, np.ndarray]:
    """:func:`latency_arrays` on the analytic engine: one request, no queueing; overloaded
    points unbounded."""
    n, d = len(scenarios), len(frame)
    wls = [sc.workload for sc in scenarios]
    column = lambda f, dtype=float: np.array([f(w) for w in wls], dtype=dtype)[:, None]  # noqa: E731
    rate, stations = column(lambda w: w.rate_hz), column(lambda w: w.num_devices, np.int64)
    to_device = column(lambda w: w.result_at == "device", bool)
    is_output = split_names(frame) == OUTPUT
    tx = frame["tx_bytes"].to_numpy(dtype=float)
    stay = 1.0 - frame["exit_rate"].to_numpy(dtype=float) if "exit_rate" in frame.columns else None
    dev_keys = [keys(sc.device) for sc in scenarios]
    device_s = by_key(dev_keys, lambda i: compute_s(frame, "head", scenarios[i].device))
    server_s = by_key([keys(sc.server) for sc in scenarios], lambda i: compute_s(frame, "tail", scenarios[i].server))
    device_j = by_key(dev_keys, lambda i: compute_energy_j(device_s[i], scenarios[i].device))

    # Transfers and link loads per (link, stations, where the result goes): the payloads are the same.
    up_s, up_j, down_s, down_j, lost = (np.empty((n, d)) for _ in range(5))
    up_load, down_load = np.empty((n, d)), np.empty((n, d))
    groups: dict[tuple, list[int]] = {}
    for i, sc in enumerate(scenarios):
        groups.setdefault((keys(sc.network), int(stations[i, 0]), bool(to_device[i, 0])), []).append(i)
    for (_, k, back_too), rows in groups.items():
        net = scenarios[rows[0]].network
        sent = np.where(is_output, 0.0, tx) if back_too else tx
        back = np.where(is_output, 0.0, float(PREDICTION_BYTES)) if back_too else np.zeros(d)
        up = request_transfers(net, sent, "up", k, 1.0 / rate[rows])
        down = link_transfers(net, back, "down", k, "idle")  # the request's connection, open
        up_s[rows], up_j[rows], down_s[rows], down_j[rows] = up.time_s, up.radio_j, down.time_s, down.radio_j
        # UDP: the frame is lost on the way up, or its answer on the way back.
        lost[rows] = 1.0 - (1.0 - frame_loss_ratio(net, sent)) * (1.0 - frame_loss_ratio(net, back))
        up_load[rows] = link_load(sent if stay is None else sent * stay, net, k, rate[rows], "up")
        down_load[rows] = link_load(back if stay is None else back * stay, net, k, rate[rows], "down")

    sent_all = np.where(to_device & is_output, 0.0, tx)
    bytes_sent = np.broadcast_to(sent_all.astype(np.int64), (n, d)).copy()
    server_lat = server_s
    if stay is not None:  # early exit: the mixture of exited and forwarded requests
        up_s, server_lat, down_s, lost = up_s * stay, server_s * stay, down_s * stay, lost * stay
        up_j, down_j = up_j * stay, down_j * stay
        bytes_sent = np.broadcast_to(np.round(sent_all * stay).astype(np.int64), (n, d)).copy()
    out = {
        "bytes_sent": bytes_sent, "device_compute_s": device_s, "uplink_s": up_s, "server_compute_s": server_lat,
        "downlink_s": down_s, "latency_s": device_s + up_s + server_lat + down_s, "energy_j": device_j + up_j + down_j,
        "frame_loss_ratio": np.broadcast_to(lost, (n, d)).copy(),
        "device_wait_s": np.zeros((n, d)), "server_wait_s": np.zeros((n, d)),
        **{c: np.full((n, d), np.nan) for c in SIM_ONLY_COLUMNS},
    }
    # Loads (engine.utilisation): only the requests that do not exit load the server.
    tail_s = np.where(is_output, 0.0, server_s)
    if stay is not None:
        tail_s = tail_s * stay
    b = column(lambda w: w.max_batch, np.int64)
    batch_s = tail_s * (1.0 + column(lambda w: w.batch_cost_fraction) * (b - 1))
    workers = column(lambda w: w.server_workers, np.int64)
    load = {"device_utilisation": rate * device_s, "uplink_utilisation": up_load,
            "server_utilisation": stations * rate * batch_s / (b * workers), "downlink_utilisation": down_load}
    out.update(load)
    over = np.stack([load[f"{r}_utilisation"] >= 1.0 for r in RESOURCES], axis=-1)
    out["overload"] = over
    hit = over.any(axis=-1)
    if hit.any():  # engine.unbounded: no steady state
        for k, col in enumerate(RESOURCES.values()):
            out[col] = np.where(over[..., k], np.inf, out[col])
        for col in ("latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s"):
            out[col] = np.where(hit, np.inf, out[col])
        busiest = np.fmax.reduce(np.stack([load[f"{r}_utilisation"] for r in RESOURCES], axis=-1), axis=-1)
        out["throughput_rps"] = np.where(hit, stations * rate / busiest, out["throughput_rps"])
        limited = np.array([1.0 if sc.qos.max_latency_s is not None else np.nan for sc in scenarios])[:, None]
        out["deadline_miss_ratio"] = np.where(hit, limited, out["deadline_miss_ratio"])
    return out


def link_load(payload_bytes: np.ndarray, net, stations: int, rate_hz: np.ndarray, direction: str) -> np.ndarray:
    """:func:`~splitimpera.latency.engine.uplink_utilisation` with the request rate a column
    ``(N, 1)``: devices × rate × bits on the air per request over the link's capacity."""
    b = np.asarray(payload_bytes, dtype=float)
    resend = 1.0 / (1.0 - net.loss) if net.transport == "tcp" else 1.0
    bits = np.where(b > 0, wire_bytes(b, net) * 8.0 * resend, 0.0)
    link = net.uplink_bps if direction == "up" else net.downlink_bps
    capacity = link * contention_share(net, stations) * stations
    return stations * rate_hz * bits / capacity
