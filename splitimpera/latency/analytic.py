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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compute import compute_energy_j, compute_time_s
from .overhead import overhead_s, with_floor
from .transport import frame_loss_ratio, link_transfers, request_transfers
from ..model.splits import OUTPUT, PREDICTION_BYTES

def split_names(frame: pd.DataFrame) -> np.ndarray:
    """The split of every row: the ``split`` level of a design-point index, else the index."""
    idx = frame.index
    return np.asarray(idx.get_level_values("split") if "split" in (idx.names or []) else idx)


def analytic_latency(profile: pd.DataFrame, scenario, compute_s=compute_time_s) -> pd.DataFrame:
    """Latency breakdown per row of ``profile`` (seconds and joules), index kept.

    ``profile`` is a per-split profile (the plain fp32 tensor is sent) or a per-design-point
    frame (:func:`~splitimpera.latency.engine.point_frame`); ``tx_bytes`` is what is sent.
    ``compute_s(profile, side, device)``: seconds per row, :func:`compute_time_s` unless the
    caller keeps them per device.
    """
    dev, srv, net, wl = scenario.device, scenario.server, scenario.network, scenario.workload
    stations = wl.num_devices
    is_output = split_names(profile) == OUTPUT
    sent = profile["tx_bytes"].to_numpy(dtype=float)
    if wl.result_at == "device":
        sent = np.where(is_output, 0.0, sent)
    up = request_transfers(net, sent, "up", stations, 1.0 / wl.rate_hz)

    stay = 1.0 - profile["exit_rate"].to_numpy(dtype=float) if "exit_rate" in profile.columns else 1.0
    # The device frames and sends only what leaves it (an exited request sends nothing).
    device_s = np.asarray(compute_s(profile, "head", dev), dtype=float) + stay * overhead_s(dev, sent)
    server_s = np.asarray(compute_s(profile, "tail", srv), dtype=float) + np.where(is_output, 0.0,
                                                                                   overhead_s(srv, sent))
    if wl.result_at == "device":
        back = np.where(is_output, 0.0, float(PREDICTION_BYTES))
        down = link_transfers(net, back, "down", stations, "idle")  # the request's connection, open
    else:
        back = np.zeros(len(profile))
        down = link_transfers(net, back, "down", stations, "idle")
    up_s, down_s = with_floor(up.time_s, sent, net), with_floor(down.time_s, back, net)
    up_j, down_j = up.radio_j, down.radio_j
    # UDP: the frame is lost on the way up, or its answer on the way back.
    lost = 1.0 - (1.0 - frame_loss_ratio(net, sent)) * (1.0 - frame_loss_ratio(net, back))
    sent_out = sent.astype(np.int64)
    if "exit_rate" in profile.columns:  # early exit: the mixture of exited and forwarded requests
        up_s, server_s, down_s, lost = up_s * stay, server_s * stay, down_s * stay, lost * stay
        up_j, down_j = up_j * stay, down_j * stay
        sent_out = np.round(sent * stay).astype(np.int64)
    return pd.DataFrame({
        "bytes_sent": sent_out,
        "device_compute_s": device_s,
        "uplink_s": up_s,
        "server_compute_s": server_s,
        "downlink_s": down_s,
        "latency_s": device_s + up_s + server_s + down_s,
        "energy_j": compute_energy_j(device_s, dev) + up_j + down_j,
        "frame_loss_ratio": lost,
    }, index=profile.index)
