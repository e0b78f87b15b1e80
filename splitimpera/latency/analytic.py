"""Analytic latency model: one request, no queueing, vectorised over splits.

Per design point (split and bottleneck; seconds, SI)::

    device_compute_s = head compute time on the device profile
    uplink_s         = transfer_time(bytes_sent, up) + rtt/2
    server_compute_s = tail compute time on the server profile
    downlink_s       = transfer_time(prediction, down) + rtt/2   (only with result_at: device)
    latency_s        = sum of the above
    energy_j         = device active power × device_compute_s + radio power × transfer times

``result_at: server`` (default, as in Split-Et-Impera and I-SPLIT) ends a request when the
tail's prediction exists on the server; the ``output`` split then sends the prediction up.
``result_at: device`` adds the prediction's trip back; ``output`` then sends nothing.
With several devices, each gets the link's contention share of the rate (no queueing: the
discrete-event simulation models that). A network with a rate trace (``trace_csv``) is seen
at the trace's time-weighted mean rate, which its profile's ``uplink_mbps``/``downlink_mbps``
hold (:mod:`splitimpera.config.rate_trace`); only the simulation follows the rate over time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .compute import compute_energy_j, compute_time_s
from .link import radio_power_w, transfer_time_s
from ..model.splits import OUTPUT, PREDICTION_BYTES

def split_names(frame: pd.DataFrame) -> np.ndarray:
    """The split of every row: the ``split`` level of a design-point index, else the index."""
    idx = frame.index
    return np.asarray(idx.get_level_values("split") if "split" in (idx.names or []) else idx)


def analytic_latency(profile: pd.DataFrame, scenario) -> pd.DataFrame:
    """Latency breakdown per row of ``profile`` (seconds and joules), index kept.

    ``profile`` is a per-split profile (the plain fp32 tensor is sent) or a per-design-point
    frame (:func:`~splitimpera.latency.engine.point_frame`); ``tx_bytes`` is what is sent.
    """
    dev, srv, net, wl = scenario.device, scenario.server, scenario.network, scenario.workload
    stations = wl.num_devices
    is_output = split_names(profile) == OUTPUT
    sent = profile["tx_bytes"].to_numpy(dtype=float)
    if wl.result_at == "device":
        sent = np.where(is_output, 0.0, sent)
    half_rtt = net.rtt_s / 2.0

    device_s = compute_time_s(profile, "head", dev).to_numpy()
    up_tx = np.where(sent > 0, transfer_time_s(sent, net, "up", stations), 0.0)
    uplink_s = np.where(sent > 0, up_tx + half_rtt, 0.0)
    server_s = compute_time_s(profile, "tail", srv).to_numpy()
    if wl.result_at == "device":
        down_tx = np.where(is_output, 0.0, transfer_time_s(np.full(len(profile), PREDICTION_BYTES), net,
                                                           "down", stations))
        downlink_s = np.where(is_output, 0.0, down_tx + half_rtt)
    else:
        down_tx = np.zeros(len(profile))
        downlink_s = np.zeros(len(profile))
    energy = (compute_energy_j(device_s, dev) + up_tx * radio_power_w(net, "up", stations)
              + down_tx * radio_power_w(net, "down", stations))
    return pd.DataFrame({
        "bytes_sent": sent.astype(np.int64),
        "device_compute_s": device_s,
        "uplink_s": uplink_s,
        "server_compute_s": server_s,
        "downlink_s": downlink_s,
        "latency_s": device_s + uplink_s + server_s + downlink_s,
        "energy_j": energy,
    }, index=profile.index)
