"""Analytic latency model: one request, no queueing, vectorised over splits.

Per design point (split and bottleneck; seconds, SI)::

    device_compute_s = head compute time on the device profile
    uplink_s         = mean transfer time of bytes_sent over the link's transport, RTT/2 included
    server_compute_s = tail compute time on the server profile
    (each side plus its profile's per-request overhead, and a transfer at least the link's
    message floor, when the profiles state them: :mod:`splitimpera.latency.overhead`)
    downlink_s       = the same for the prediction's trip back (only with result_at: device)
    latency_s        = sum of the above
    energy_j         = device active power × device_compute_s
                       + radio: alpha × Mbit on the air + beta × seconds the transfer is under way
    frame_loss_ratio = UDP: P(a frame loses a datagram); 0 over TCP

Transfers (:mod:`splitimpera.latency.transport`): TCP round by round (slow start, loss
recovery, timeouts; the connection ``new`` per request, or persistent: ``idle`` when
requests are further apart than the RTO, so its window restarts, else ``warm``), or UDP.

``result_at: server`` (default, as in Split-Et-Impera and I-SPLIT) ends a request when the
tail's prediction exists on the server; the ``output`` split then sends the prediction up.
``result_at: device`` adds the prediction's trip back; ``output`` then sends nothing.
With several devices, each gets the link's contention share of the rate (no queueing: the
discrete-event simulation models that). A network with a rate trace (``trace_csv``) is seen
at the trace's time-weighted mean rate, which its profile's ``uplink_mbps``/``downlink_mbps``
hold (:mod:`splitimpera.config.rate_trace`); only the simulation follows the rate over time.

Early exit (a frame with ``exit_rate`` p, the fraction of evaluation samples whose exit head
is confident enough): the device always runs the head and the exit head
(``device_compute_s``); a fraction p of the requests ends there, the rest continues as in
split computing. The columns are the mixture's means: the uplink, server and downlink
times, the bytes sent, the radio energy and the frame loss are (1 − p) × their split
computing values, so ``latency_s = device_compute_s + (1 − p) × (uplink + server + downlink)``.

The formulas run on arrays of shape scenarios × design points (:func:`breakdown_arrays`):
a scenario's own numbers are columns ``(N, 1)``, what depends on a profile alone is computed
once per distinct profile (:mod:`splitimpera.latency.profile_keys`). :func:`analytic_latency`
is that for one scenario, as a frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compute import compute_energy_j, compute_time_s
from .link import contention_share, wire_bytes
from .overhead import overhead_s, with_floor
from .profile_keys import ProfileKeys, by_key
from .transport import frame_loss_ratio, link_transfers, request_transfers
from ..model.splits import OUTPUT, PREDICTION_BYTES

# The one-request breakdown's columns (what :func:`analytic_latency` returns).
BREAKDOWN_COLUMNS = ["bytes_sent", "device_compute_s", "uplink_s", "server_compute_s", "downlink_s", "latency_s",
                     "energy_j", "frame_loss_ratio"]


def split_names(frame: pd.DataFrame) -> np.ndarray:
    """The split of every row: the ``split`` level of a design-point index, else the index."""
    idx = frame.index
    return np.asarray(idx.get_level_values("split") if "split" in (idx.names or []) else idx)


def exit_stay(frame: pd.DataFrame) -> np.ndarray | None:
    """The fraction of requests that leave the device (1 − ``exit_rate``) per row; None
    without early exit."""
    return 1.0 - frame["exit_rate"].to_numpy(dtype=float) if "exit_rate" in frame.columns else None


def link_load(payload_bytes: np.ndarray, net, stations: int, rate_hz, direction: str = "up") -> np.ndarray:
    """Offered load of all devices on the link over its capacity (1 = saturated).

    Load = ``stations`` × request rate (Hz; a number or a column ``(N, 1)``) × bits on the
    air per request (headers included, and over TCP the mean retransmissions,
    ``1/(1 − loss)`` per packet; UDP retransmits nothing); capacity = the link's aggregate
    rate with that many stations (``contention_share × stations × link rate``).
    ``direction="down"``: the downlink. A rate trace is seen at its time-weighted mean rate.
    """
    b = np.asarray(payload_bytes, dtype=float)
    resend = 1.0 / (1.0 - net.loss) if net.transport == "tcp" else 1.0
    bits = np.where(b > 0, wire_bytes(b, net) * 8.0 * resend, 0.0)
    link = net.uplink_bps if direction == "up" else net.downlink_bps
    capacity = link * contention_share(net, stations) * stations
    return stations * rate_hz * bits / capacity


def breakdown_arrays(scenarios: list, frame: pd.DataFrame, compute_s=compute_time_s,
                     keys: ProfileKeys | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One request's breakdown (:data:`BREAKDOWN_COLUMNS`) and the offered load of every
    resource, for every scenario (rows) and row of ``frame`` (columns), arrays ``(N, D)``.

    Loads (``device_utilisation`` … ``downlink_utilisation``): the device = rate × its
    service (head time and per-request overhead); a link: :func:`link_load`; the server =
    N × rate × t(B) / (B × workers): full batches of ``B = max_batch`` at saturation,
    ``t(B) = t1 · (1 + c · (B − 1))`` (batch-1 tail time ``t1``, ``c = batch_cost_fraction``),
    plus every request's server overhead, which batching does not share (the dispatch wait is
    latency, not work). Early exit: only the fraction 1 − p of the requests loads the links
    and the server.
    """
    keys = keys or ProfileKeys()
    n, d = len(scenarios), len(frame)
    wls = [sc.workload for sc in scenarios]
    column = lambda f, dtype=float: np.array([f(w) for w in wls], dtype=dtype)[:, None]  # noqa: E731
    rate, stations = column(lambda w: w.rate_hz), column(lambda w: w.num_devices, np.int64)
    to_device = column(lambda w: w.result_at == "device", bool)
    is_output = split_names(frame) == OUTPUT
    tx = frame["tx_bytes"].to_numpy(dtype=float)
    stay = exit_stay(frame)
    share = 1.0 if stay is None else stay
    sent = np.broadcast_to(np.where(to_device & is_output, 0.0, tx), (n, d))
    dev_keys = [keys(sc.device) for sc in scenarios]
    # The device frames and sends only what leaves it (an exited request sends nothing).
    dev_sent = [(k, bool(t)) for k, t in zip(dev_keys, to_device[:, 0])]
    srv_sent = [(keys(sc.server), bool(t)) for sc, t in zip(scenarios, to_device[:, 0])]
    device_s = (by_key(dev_keys, lambda i: compute_s(frame, "head", scenarios[i].device))
                + share * by_key(dev_sent, lambda i: overhead_s(scenarios[i].device, sent[i])))
    server_s = by_key([k for k, _ in srv_sent], lambda i: compute_s(frame, "tail", scenarios[i].server))
    server_extra = by_key(srv_sent, lambda i: np.where(is_output, 0.0, overhead_s(scenarios[i].server, sent[i])))
    device_j = by_key(dev_sent, lambda i: compute_energy_j(device_s[i], scenarios[i].device))

    # Transfers and link loads per (link, stations, where the result goes): the payloads are the same.
    up_s, up_j, down_s, down_j, lost, up_load, down_load = (np.empty((n, d)) for _ in range(7))
    groups: dict[tuple, list[int]] = {}
    for i, sc in enumerate(scenarios):
        groups.setdefault((keys(sc.network), int(stations[i, 0]), bool(to_device[i, 0])), []).append(i)
    for (_, k, back_too), rows in groups.items():
        net, out = scenarios[rows[0]].network, sent[rows[0]]
        back = np.where(is_output, 0.0, float(PREDICTION_BYTES)) if back_too else np.zeros(d)
        up = request_transfers(net, out, "up", k, 1.0 / rate[rows])
        down = link_transfers(net, back, "down", k, "idle")  # the request's connection, open
        up_s[rows], down_s[rows] = with_floor(up.time_s, out, net), with_floor(down.time_s, back, net)
        up_j[rows], down_j[rows] = up.radio_j, down.radio_j
        # UDP: the frame is lost on the way up, or its answer on the way back.
        lost[rows] = 1.0 - (1.0 - frame_loss_ratio(net, out)) * (1.0 - frame_loss_ratio(net, back))
        up_load[rows] = link_load(out * share, net, k, rate[rows], "up")
        down_load[rows] = link_load(back * share, net, k, rate[rows], "down")

    bytes_sent = sent.astype(np.int64)
    server_lat = server_s + server_extra
    if stay is not None:  # early exit: the mixture of exited and forwarded requests
        up_s, server_lat, down_s, lost = up_s * stay, server_lat * stay, down_s * stay, lost * stay
        up_j, down_j = up_j * stay, down_j * stay
        bytes_sent = np.round(sent * stay).astype(np.int64)
    out = {
        "bytes_sent": bytes_sent, "device_compute_s": device_s, "uplink_s": up_s, "server_compute_s": server_lat,
        "downlink_s": down_s, "latency_s": device_s + up_s + server_lat + down_s, "energy_j": device_j + up_j + down_j,
        "frame_loss_ratio": np.broadcast_to(lost, (n, d)).copy(),
    }
    # Only the requests that do not exit load the server; its overhead is per request.
    tail_s = np.where(is_output, 0.0, server_s) * share
    b = column(lambda w: w.max_batch, np.int64)
    batch_s = tail_s * (1.0 + column(lambda w: w.batch_cost_fraction) * (b - 1)) + b * (server_extra * share)
    workers = column(lambda w: w.server_workers, np.int64)
    load = {"device_utilisation": rate * device_s, "uplink_utilisation": up_load,
            "server_utilisation": stations * rate * batch_s / (b * workers), "downlink_utilisation": down_load}
    return out, load


def analytic_latency(profile: pd.DataFrame, scenario, compute_s=compute_time_s) -> pd.DataFrame:
    """Latency breakdown per row of ``profile`` (seconds and joules), index kept.

    ``profile`` is a per-split profile (the plain fp32 tensor is sent) or a per-design-point
    frame (:func:`~splitimpera.latency.engine.point_frame`); ``tx_bytes`` is what is sent.
    ``compute_s(profile, side, device)``: seconds per row, :func:`compute_time_s` unless the
    caller keeps them per device.
    """
    out, _ = breakdown_arrays([scenario], profile, compute_s)
    return pd.DataFrame({c: out[c][0] for c in BREAKDOWN_COLUMNS}, index=profile.index)
