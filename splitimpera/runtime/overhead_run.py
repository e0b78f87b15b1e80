"""The per-request overhead of this machine's real split run, measured on the code path
``serve`` and ``device`` run (frame building, zstd, loopback hand-offs, threads), for
``measure`` and the profiles it simulates with.

Per design point, before the run that is compared, a calibration run of its own requests at
the workload's rate against the same ``serve`` process: the device side's per-request time
(head + encode + frame building, in the run) and the server's CPU per request (every
thread of the ``serve`` process, :func:`~splitimpera.runtime.processes.cpu_s`), each beside
the compute timed alone; the service times and the waits of requests that found the server
idle. :func:`~splitimpera.calibrate.overhead.fit_overhead` fits both sides over the points;
the link's message floor is the smallest point's median uplink time.
"""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np
import pandas as pd

from ..calibrate.overhead import fit_overhead
from .processes import cpu_s, run_point


def calibration_run(server, path, split: str, bname: str, devices: int, cores, threads, tmp, n_req: int,
                    rate_hz: float) -> dict:
    """One point's calibration: its answered requests, every request (``all``, for the
    server's counters) and the server's CPU seconds per request over it."""
    c0 = cpu_s(server.p.pid)
    df = run_point(path, server.address, split, bname, devices, cores, threads, [], tmp,
                   timeout_s=120 + 3 * n_req / rate_hz)
    c1 = cpu_s(server.p.pid)
    ok = df[df["answered"]]
    return {"split": split, "bottleneck": bname, "requests": ok, "all": df, "server_cpu_s": (c1 - c0) / max(len(df), 1)}


def idle_waits(q: pd.DataFrame) -> np.ndarray:
    """Server waits of the requests that reached the server after the one before had ended
    there (nothing queued ahead of them: the wait is the dispatch alone)."""
    recv = (q["t_arrival_s"] + q["device_wait_s"] + q["device_compute_s"] + q["uplink_s"]).to_numpy()
    end = recv + (q["server_wait_s"] + q["server_compute_s"]).to_numpy()
    order = np.argsort(recv)
    recv, end, wait = recv[order], end[order], q["server_wait_s"].to_numpy()[order]
    idle = np.concatenate([[True], recv[1:] >= np.maximum.accumulate(end)[:-1]])
    return wait[idle]


def fit_calibration(runs: list[dict], timings: pd.DataFrame, warmup: int) -> dict:
    """``{"device": overhead, "server": overhead, "message_floor_ms": x}`` from the points'
    calibration runs and their compute timed alone (``timings``: ``head_s``, ``tail_s``)."""
    where = f"measured by `measure` on {platform.node()} ({platform.machine()}), {dt.date.today().isoformat()}"
    dev = {"bytes": [], "cpu": [], "compute": [], "service": []}
    srv = {"bytes": [], "cpu": [], "compute": [], "service": [], "waits": []}
    floors = []
    for r in runs:
        q = r["requests"].groupby("device_id", group_keys=False).apply(lambda g: g.iloc[warmup:])
        if not len(q):
            continue
        t = timings.loc[(r["split"], r["bottleneck"])]
        nbytes = float(q["frame_bytes"].mean())
        dev["bytes"].append(nbytes)
        dev["cpu"].append(float(q["device_compute_s"].median()))
        dev["compute"].append(float(t["head_s"]))
        dev["service"].append(q["device_compute_s"].to_numpy())
        floors.append((nbytes, float(q["uplink_s"].median())))
        if t["tail_s"] > 0:
            srv["bytes"].append(nbytes)
            srv["cpu"].append(r["server_cpu_s"])
            srv["compute"].append(float(t["tail_s"]))
            srv["service"].append(q["server_compute_s"].to_numpy())
            srv["waits"].append(idle_waits(q))
    out = {"device": fit_overhead(dev["bytes"], dev["cpu"], dev["compute"], dev["service"], source=where)}
    if srv["bytes"]:
        waits = np.concatenate(srv["waits"])
        out["server"] = fit_overhead(srv["bytes"], srv["cpu"], srv["compute"], srv["service"], waits, source=where)
    out["message_floor_ms"] = round(min(floors)[1] * 1e3, 4) if floors else 0.0
    return out


def overrides(fit: dict) -> dict:
    """Scenario overrides that give the device and server profiles the fitted overhead and
    the link its message floor."""
    out = {"network.message_floor_ms": fit["message_floor_ms"]}
    for side in ("device", "server"):
        for k, v in (fit.get(side) or {}).items():
            out[f"{side}.overhead.{k}"] = v
    return out
