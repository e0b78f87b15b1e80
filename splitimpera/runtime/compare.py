"""``splitimpera measure``: run the split for real on this machine and set it beside the simulation.

What it does, in order:

1. **Times each side** of every chosen design point on the cores the run will use (the
   device core for head + encode, the server core for decode + tail; torch threads as
   given, medians of ``repeats`` runs after warm-up; and the tail at ``max_batch`` when the
   scenario batches, which gives ``batch_cost_fraction``). These times are the simulator's
   **measured mode** (:func:`~splitimpera.latency.compute.measured_column`).
2. **Describes the link** the run will use: inside a private network namespace
   (``--netns``, root) the loopback interface is shaped with ``tc tbf`` to the uplink rate
   (MTU 1500, a two-frame bucket drained at most at 1.01 × the rate: after an idle gap
   about one frame still passes unshaped, which the simulated link does not have); without it the link is this machine's loopback, whose
   goodput is measured. Kernel ``netem`` is not available here, so there is no propagation
   delay: the simulated link has RTT 0 (on loopback, the measured round trip), no jitter
   and no loss.
3. **Runs it**: one ``serve`` process pinned to the server core, and for each design point
   ``workload.num_devices`` ``device`` processes pinned to the device core(s), over real TCP.
   Before each point's compared requests, :data:`CALIBRATION_REQUESTS` of its own measure
   the per-request overhead of this code path (:mod:`.overhead_run`), fitted over the points.
4. **Simulates the same thing** (SimPy engine, the same seed, hence the same arrival times
   as the devices used) in measured mode, again with the fitted overhead, service-time
   spread, dispatch and message floor (mode ``overhead``), and, with ``profile``, in **predicted mode** (the
   roofline of that device profile on both sides, e.g. one written by ``calibrate`` for this
   machine).
5. **Compares**: per design point and mode, mean and p95 end-to-end latency and the mean of
   every component, simulated vs measured, with the relative error
   ``(simulated − measured) / measured``.

``server_load`` sets, per design point, the request rate that loads the server to that
utilisation (ρ = devices × rate × measured tail time / workers), capped so that neither the
device core nor the link passes 0.9; the rate used and the resulting ρ are in the table.

With several devices, every device process is pinned to the one device core: the simulated
devices each have their own processor, these share one, so their compute and waits are
the testbed's, not the scenario's (use it for load and reliability, one device for fidelity).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config.scenario import Scenario, load_scenario
from ..errors import UserError
from ..latency.compute import measured_column
from ..latency.engine import point_frame, utilisation
from ..latency.simulation import simulate, warmup_requests
from ..latency.transport import transfer_latency_s
from ..model.cost import profile_model
from ..model.loading import load_traced
from ..model.splits import OUTPUT, head_tail
from ..plain import human
from .device import MEASURED_COLUMNS, input_samples, reconcile
from .overhead_run import calibration_run, fit_calibration, overrides as overhead_overrides
from .processes import ServerProcess, run_point
from .server import check_splits, wire_bottlenecks

log = logging.getLogger(__name__)

MAX_GAP_S = 0.2
CALIBRATION_REQUESTS = 40  # per point, before the compared run: the overhead's own requests
COMPONENTS = ["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s", "downlink_s"]
NETNS_ENV = "SPLITIMPERA_IN_NETNS"
# tbf lets a full bucket through at line rate after an idle gap. The bucket must hold a frame
# (1514 B); a second, peak-rate bucket of one frame at 1.01 × the rate keeps the burst itself
# at the rate, so what is left is one frame after idle (measured: 1.4–2 ms at 5 Mbit/s, against
# 4–4.5 ms with the 2-frame bucket alone).
TBF_BURST_BYTES = 3028
TBF_MTU_BYTES = 1514


@dataclass(frozen=True)
class Fidelity:
    """Outcome of :func:`measure`.

    ``measured``: one row per real request (warm-up dropped), :data:`~.device.MEASURED_COLUMNS`.
    ``simulated``: one row per simulated request, with a ``mode`` column (``measured`` or
    ``predicted``). ``table``: one row per (split, bottleneck, mode): ``rate_hz``,
    ``server_rho``, ``requests``, ``lost``, then ``sim_<m>``, ``meas_<m>`` and ``err_<m>``
    (relative error, simulated vs measured) for ``latency_mean_s``, ``latency_p95_s`` and the
    mean of each component; ``meas_encode_s``/``meas_decode_s``: the bottleneck's share of
    the device's and the server's compute. ``timings``: the measured sides per point. ``setup``: the link,
    cores, threads and server counters.
    """

    scenario: Scenario
    measured: pd.DataFrame
    simulated: pd.DataFrame
    table: pd.DataFrame
    timings: pd.DataFrame
    setup: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Per mode: median and max |relative error| over points of the mean and p95 latency
        and, per component, the median |error| (components that are ~0 on both sides skipped)."""
        out = {}
        for mode, t in self.table.groupby("mode", sort=False):
            row = {"points": len(t)}
            for m in ("latency_mean_s", "latency_p95_s"):
                e = t[f"err_{m}"].abs().dropna()
                row[m] = {"median_abs_err": float(e.median()) if len(e) else math.nan,
                          "max_abs_err": float(e.max()) if len(e) else math.nan}
            comp = {}
            for c in COMPONENTS:
                big = t[(t[f"meas_{c}"] > 50e-6) | (t[f"sim_{c}"] > 50e-6)]
                e = big[f"err_{c}"].abs().dropna()
                if len(e):
                    comp[c] = float(e.median())
            row["components_median_abs_err"] = comp
            out[mode] = row
        return out


# ---- step 1: time both sides


class _Pinned:
    """Run the body on one core (this thread), with ``threads`` torch threads."""

    def __init__(self, core: int | None, threads: int | None):
        self.core, self.threads = core, threads

    def __enter__(self):
        self.old_aff = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.old_threads = torch.get_num_threads()
        if self.core is not None and self.old_aff is not None:
            os.sched_setaffinity(0, {self.core})
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if self.core is not None and self.old_aff is not None:
            os.sched_setaffinity(0, self.old_aff)
        torch.set_num_threads(self.old_threads)


def _median_s(fn, repeats: int, warmup: int = 3, gap_s: float = 0.0) -> float:
    """Median seconds of ``fn()``, each run ``gap_s`` after the previous one ended (a request
    arriving every 100 ms finds colder caches than one in a tight loop)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        if gap_s > 0:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def time_sides(scenario: Scenario, tm, points: list[tuple[str, str]], *, device_core: int | None,
               server_core: int | None, threads: int | None, repeats: int = 30,
               gap_s: dict | float = 0.0) -> pd.DataFrame:
    """Median seconds per design point: ``head_s`` (head + encode, on the device core),
    ``tail_s`` (decode + tail at batch 1, on the server core), ``tail_batch_s`` (at
    ``max_batch``), ``payload_bytes`` (mean over the samples used). ``gap_s``: idle seconds
    before each timed run (per point when a dict), the workload's cadence."""
    bns = wire_bottlenecks(scenario)
    coder = scenario.bottleneck.coder
    b_max = scenario.workload.max_batch
    xs = input_samples(scenario, tm, 8)
    rows = []
    with torch.no_grad():
        for split, bname in points:
            gap = gap_s.get((split, bname), 0.0) if isinstance(gap_s, dict) else gap_s
            bn = bns[bname]
            head, tail = head_tail(tm, tm.split(split))
            head.eval()
            tail.eval()
            shape = tuple(tm.split(split).shape)
            x1 = xs[:1]
            if split == OUTPUT:
                def dev():
                    return int(head(x1).reshape(1, -1).argmax(1))
                payload = [8]
            else:
                def dev():
                    return bn.encode(head(x1), coder)
                payload = [len(b) for b in bn.encode(head(xs), coder)]
            with _Pinned(device_core, threads):
                head_s = _median_s(dev, repeats, gap_s=gap)
            tail_s = tail_batch_s = 0.0
            if split != OUTPUT:
                blobs = bn.encode(head(xs), coder)
                reps = (blobs * (-(-b_max // len(blobs))))[:b_max]

                def srv(bl):
                    return tail(bn.decode(bl, coder, shape))
                with _Pinned(server_core, threads):
                    tail_s = _median_s(lambda: srv(blobs[:1]), repeats, gap_s=gap)
                    tail_batch_s = (_median_s(lambda: srv(reps), max(5, repeats // 3), gap_s=gap) if b_max > 1
                                    else tail_s)
            rows.append({"split": split, "bottleneck": bname, "head_s": head_s, "tail_s": tail_s,
                         "tail_batch_s": tail_batch_s, "payload_bytes": float(np.mean(payload))})
    return pd.DataFrame(rows).set_index(["split", "bottleneck"])


# ---- step 2: the link


def loopback_goodput_bps(core_send: int | None, core_recv: int | None, nbytes: int = 32 << 20) -> float:
    """Bits per second one TCP connection over 127.0.0.1 carries (sender and receiver threads
    pinned like the device and the server)."""
    srv = socket.create_server(("127.0.0.1", 0))
    got = {"n": 0, "t": 0.0}

    def recv():
        with _Pinned(core_recv, None):
            c, _ = srv.accept()
            buf = bytearray(1 << 20)
            while got["n"] < nbytes:
                k = c.recv_into(buf)
                if not k:
                    break
                got["n"] += k
            got["t"] = time.perf_counter()
            c.close()

    t = threading.Thread(target=recv, daemon=True)
    t.start()
    with _Pinned(core_send, None):
        s = socket.create_connection(srv.getsockname())
        chunk = b"\0" * (1 << 20)
        t0 = time.perf_counter()
        for _ in range(nbytes // len(chunk)):
            s.sendall(chunk)
        t.join(30)
        s.close()
    srv.close()
    return nbytes * 8 / max(got["t"] - t0, 1e-9)


def shape_loopback(rate_mbps: float) -> None:
    """Inside a private network namespace: loopback up at MTU 1500, shaped by tbf to ``rate_mbps``."""
    cmds = [["ip", "link", "set", "lo", "mtu", "1500"], ["ip", "link", "set", "lo", "up"],
            ["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", f"{rate_mbps * 1e6:.0f}bit",
             "burst", str(TBF_BURST_BYTES), "peakrate", f"{rate_mbps * 1.01e6:.0f}bit", "mtu", str(TBF_MTU_BYTES),
             "limit", str(64 << 20)]]
    for c in cmds:
        p = subprocess.run(c, capture_output=True, text=True)
        if p.returncode != 0:
            raise UserError(f"{' '.join(c)} failed: {p.stderr.strip() or p.returncode}", field="--netns")


def reexec_in_netns(argv: list[str]) -> int:
    """Run this command again inside a new network namespace (``unshare -n``, needs root)."""
    if os.geteuid() != 0:
        raise UserError("a private network namespace needs root (unshare -n); run without --netns to measure "
                        "over the unshaped loopback", field="--netns")
    env = dict(os.environ, **{NETNS_ENV: "1"})
    cmd = ["unshare", "-n", "--", sys.executable, "-m", "splitimpera.cli", *argv]
    return subprocess.run(cmd, env=env).returncode


# ---- step 3: the real run


# ---- steps 4 and 5


def _drop_warmup(df: pd.DataFrame, n_req: int, wl) -> pd.DataFrame:
    k = warmup_requests(wl.model_copy(update={"num_requests": n_req}))
    rank = df.groupby(["split", "bottleneck", "device_id"], sort=False).cumcount()
    return df[rank >= k]


def _stats(df: pd.DataFrame, prefix: str) -> dict:
    ok = df[df["frame_lost"] < 1.0]
    lat = ok["latency_s"].to_numpy()
    out = {f"{prefix}latency_mean_s": float(lat.mean()) if len(lat) else math.nan,
           f"{prefix}latency_p95_s": float(np.percentile(lat, 95)) if len(lat) else math.nan}
    for c in COMPONENTS:
        out[f"{prefix}{c}"] = float(ok[c].mean()) if len(ok) else math.nan
    for c in ("encode_s", "decode_s"):  # parts of device_compute_s / server_compute_s the real run times apart
        if c in ok.columns:
            out[f"{prefix}{c}"] = float(ok[c].mean()) if len(ok) else math.nan
    return out


def _rate_for_load(rho: float, t: pd.Series, scenario: Scenario, tx_s: float, devices_per_core: int = 1) -> float:
    """Per-device request rate that loads the server to ``rho`` (see the module doc), capped at
    utilisation 0.9 of the device core (``devices_per_core`` device processes share it) and of
    the link; the scenario's rate when there is no server work."""
    wl = scenario.workload
    if t["tail_s"] < 1e-4:
        return wl.rate_hz
    rate = rho * wl.server_workers / (wl.num_devices * t["tail_s"])
    caps = [0.9 / (devices_per_core * t["head_s"]) if t["head_s"] > 0 else math.inf,
            0.9 / (wl.num_devices * tx_s) if tx_s > 0 else math.inf]
    return float(min([rate, *caps]))


def measure(scenario_path: str | Path, points: list[tuple[str, str]] | None = None, *,
            overrides: dict | None = None, netns_rate_mbps: float | None = None, server_load: float | None = None,
            num_requests: int | None = None, profile: str | None = None, cores: tuple[int, int] | None = None,
            threads: int | None = 1, repeats: int = 30, cadence: bool = True, calibrate: bool = False,
            progress=None) -> Fidelity:
    """Run the real split run of the scenario at ``points`` (default: every split under the
    first bottleneck) and simulate it alongside; see the module doc.

    ``netns_rate_mbps``: the uplink rate tbf shapes loopback to (call from inside a private
    network namespace, see :func:`reexec_in_netns`); None measures the unshaped loopback.
    ``cores``: (device core, server core), default (0, 1) on a machine with two or more.
    ``cadence``: time the sides with the workload's idle gaps between runs (else back to back).
    ``calibrate``: run :func:`splitimpera.calibrate.calibrate` on the device core first and use
    the profile it fits as ``profile`` (predicted mode), so the roofline is this machine's.
    """
    overrides = dict(overrides or {})
    if num_requests is not None:
        overrides["workload.num_requests"] = num_requests
    sc = load_scenario(scenario_path, overrides)
    say = progress or (lambda msg: log.info("%s", msg))
    tm = load_traced(sc)
    bns = list(wire_bottlenecks(sc))
    if points is None:
        points = [(s.name, bns[0]) for s in tm.candidates]
    check_splits(tm, [s for s, _ in points])
    for s, b in points:
        if b not in bns:
            raise UserError(f"{b!r} is not one of the scenario's bottlenecks ({', '.join(bns)})",
                            field="--bottleneck")
    if profile is not None and not calibrate:
        from ..config.profile_registry import get_device

        try:
            get_device(profile)
        except UserError as e:
            raise UserError(e.message, source="measure", field="--profile") from None
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores is None:
        cores = (avail[0], avail[1]) if len(avail) >= 2 else (None, None)
    elif cores[0] == cores[1] or any(c not in avail for c in cores):
        raise UserError(f"two different cores of this process's {avail} (got {cores[0]},{cores[1]})",
                        source="measure", field="--cores")
    dev_core, srv_core = cores
    if netns_rate_mbps is not None:
        shape_loopback(netns_rate_mbps)

    calibration = None
    if calibrate:
        from ..calibrate import calibrate as run_calibrate
        from ..config.profile_registry import register_device

        say(f"calibrating a profile of this machine on core {dev_core}, {threads} thread(s)")
        with _Pinned(dev_core, threads):
            calibration = run_calibrate(name="measure_this_machine", kind="device", threads=threads)
        register_device(calibration.profile, overwrite=True)
        profile = calibration.profile.name
    say(f"timing head and tail of {len(points)} design point(s) on cores {dev_core} (device) and "
        f"{srv_core} (server), {threads} thread(s)")
    hot = time_sides(sc, tm, points, device_core=dev_core, server_core=srv_core, threads=threads, repeats=repeats)

    # The link the real run uses, as the simulator describes it.
    net_over = {"network.rtt_ms": 0.0, "network.jitter_ms": 0.0, "network.loss": 0.0, "network.trace_csv": None,
                "network.transport": "tcp", "network.tcp.connection": "persistent"}
    if netns_rate_mbps is not None:
        link = {"kind": "tbf in a private network namespace", "uplink_mbps": netns_rate_mbps, "mtu_bytes": 1500,
                "rtt_ms": 0.0, "burst_bytes": TBF_BURST_BYTES}
        net_over.update({"network.uplink_mbps": netns_rate_mbps, "network.downlink_mbps": netns_rate_mbps,
                         "network.mtu_bytes": 1500})
    else:
        bps = loopback_goodput_bps(dev_core, srv_core)
        link = {"kind": "loopback, unshaped", "uplink_mbps": bps / 1e6, "mtu_bytes": 65536, "rtt_ms": 0.0}
        net_over.update({"network.uplink_mbps": bps / 1e6, "network.downlink_mbps": bps / 1e6,
                         "network.mtu_bytes": 65536})
    say(f"link: {link['kind']}, {human(link['uplink_mbps'] * 1e6, 'bit/s')}, no propagation delay")

    wl = sc.workload
    base = load_scenario(scenario_path, {**overrides, **net_over})
    n_req = base.workload.num_requests

    def rates_for(timed: pd.DataFrame) -> dict:
        out = {}
        for (split, bname) in points:
            t = timed.loc[(split, bname)]
            out[(split, bname)] = wl.rate_hz
            if server_load is not None:
                tx_s = (transfer_latency_s(base.network, t["payload_bytes"], connection="warm")
                        if split != OUTPUT else 0.0)
                # Every device process is pinned to the one device core.
                out[(split, bname)] = _rate_for_load(server_load, t, sc, tx_s,
                                                     devices_per_core=wl.num_devices if dev_core is not None else 1)
        return out

    rates = rates_for(hot)
    if cadence:
        # Time again at the workload's cadence: idle between requests as the real run is.
        gaps = {p: min(max(1.0 / rates[p] - hot.loc[p, "head_s"], 0.0), MAX_GAP_S) for p in points}
        say("timing again at the workload's cadence (idle gaps up to "
            f"{max(gaps.values(), default=0) * 1e3:.0f} ms between runs)")
        timings = time_sides(sc, tm, points, device_core=dev_core, server_core=srv_core, threads=threads,
                             repeats=repeats, gap_s=gaps)
        if server_load is not None:  # the load asked for, on the times the simulation will use
            rates = rates_for(timings)
    else:
        timings = hot.copy()
    timings = timings.join(hot[["head_s", "tail_s"]].rename(columns=lambda c: c.replace("_s", "_hot_s")))
    measured_parts, sim_parts, rows, cal_runs, done = [], [], [], [], []
    n_cal = min(n_req, CALIBRATION_REQUESTS)
    prof = profile_model(tm)
    with tempfile.TemporaryDirectory(prefix="splitimpera-measure-") as tmpd:
        tmp = Path(tmpd)
        stats: dict = {}
        for (split, bname) in points:
            t = timings.loc[(split, bname)]
            rate = rates[(split, bname)]
            point_over = {**overrides, **net_over, "workload.rate_hz": rate}
            if wl.max_batch > 1 and t["tail_s"] > 0:
                c = (t["tail_batch_s"] / t["tail_s"] - 1.0) / (wl.max_batch - 1)
                point_over["workload.batch_cost_fraction"] = float(min(max(c, 0.0), 1.0))
            point_sc = load_scenario(scenario_path, point_over)
            path = tmp / f"scenario-{len(rows)}.yaml"
            path.write_text(point_sc.to_yaml())
            cal_path = tmp / f"calibration-{len(rows)}.yaml"
            cal_path.write_text(load_scenario(scenario_path, {**point_over, "workload.num_requests": n_cal}).to_yaml())
            say(f"{split} · {bname}: {n_req} requests per device at {rate:.4g} Hz, {wl.num_devices} device(s), "
                f"after {n_cal} to measure the overhead")
            server = ServerProcess(path, [split], srv_core, threads, [])
            try:
                cal_runs.append(calibration_run(server, cal_path, split, bname, wl.num_devices,
                                                None if dev_core is None else {dev_core}, threads, tmp, n_cal, rate))
                df = run_point(path, server.address, split, bname, wl.num_devices,
                                None if dev_core is None else {dev_core}, threads, [], tmp,
                                timeout_s=120 + 3 * n_req / rate)
            finally:
                counters = server.stop()
            problems = reconcile(counters, pd.concat([cal_runs[-1]["all"], df], ignore_index=True))
            if problems:  # a request neither answered nor counted: the measurement cannot be trusted
                raise RuntimeError(f"{split} · {bname}: requests unaccounted for: " + "; ".join(problems))
            for k, v in counters.items():
                stats[k] = stats.get(k, 0) + v
            df = _drop_warmup(df, n_req, point_sc.workload)
            measured_parts.append(df)
            done.append((split, bname, t, rate, point_over, point_sc, df))
        fit = fit_calibration(cal_runs, timings, warmup_requests(wl.model_copy(update={"num_requests": n_cal})))
        say(f"overhead: device {fit['device']}, server {fit.get('server')}, message floor "
            f"{fit['message_floor_ms']} ms")
        for split, bname, t, rate, point_over, point_sc, df in done:
            # The simulation of the same point, same seed: the devices' arrival times.
            pts = pd.DataFrame({"bytes_sent": [t["payload_bytes"]]},
                               index=pd.MultiIndex.from_tuples([(split, bname)], names=["split", "bottleneck"]))
            modes = {"measured": (point_sc, True),
                     "overhead": (load_scenario(scenario_path, {**point_over, **overhead_overrides(fit)}), True)}
            if profile is not None:
                modes["predicted"] = (load_scenario(scenario_path, {**point_over, "device": profile,
                                                                    "server": profile}), False)
            rho = wl.num_devices * rate * t["tail_s"] / wl.server_workers
            for mode, (msc, use_measured) in modes.items():
                frame = point_frame(prof, pts)
                if use_measured:
                    frame[measured_column("head")] = t["head_s"]
                    frame[measured_column("tail")] = t["tail_s"]
                sim = simulate(msc, frame).requests.assign(mode=mode)
                sim_parts.append(sim)
                row = {"split": split, "bottleneck": bname, "mode": mode, "rate_hz": rate, "server_rho": rho,
                       # what the simulator's overload check reads: with overhead in the overhead mode
                       "sim_server_rho": float(utilisation(frame, msc)["server_utilisation"].iloc[0]),
                       "requests": int(len(df)), "lost": int((df["frame_lost"] >= 1.0).sum()),
                       **_stats(sim, "sim_"), **_stats(df, "meas_")}
                for m in ["latency_mean_s", "latency_p95_s", *COMPONENTS]:
                    meas = row[f"meas_{m}"]
                    row[f"err_{m}"] = (row[f"sim_{m}"] - meas) / meas if meas and meas > 0 else math.nan
                rows.append(row)
    measured = pd.concat(measured_parts, ignore_index=True) if measured_parts else pd.DataFrame(columns=MEASURED_COLUMNS)
    simulated = pd.concat(sim_parts, ignore_index=True) if sim_parts else pd.DataFrame()
    table = pd.DataFrame(rows)
    setup = {"link": link, "cores": {"device": dev_core, "server": srv_core}, "threads": threads,
             "server_counters": stats, "server_load": server_load, "profile": profile, "overhead": fit,
             "calibration": None if calibration is None else {
                 "profile": calibration.data, "holdout": calibration.summary},
             "torch": torch.__version__, "requests_per_device": n_req, "devices": wl.num_devices,
             "warmup_per_device": warmup_requests(wl.model_copy(update={"num_requests": n_req})),
             "note": "no propagation delay (kernel netem is unavailable): the simulated link has RTT 0"}
    return Fidelity(scenario=sc, measured=measured, simulated=simulated, table=table, timings=timings, setup=setup)


# ---- output


def save(fid: Fidelity, out_dir: str | Path) -> Path:
    """``<out_dir>/<scenario name>/``: ``measured.parquet``, ``simulated.parquet``,
    ``fidelity.csv``, ``fidelity.json`` (setup, timings, summary) and ``scenario.yaml``; atomically."""
    from ..results.outputs import write_outputs

    doc = {"setup": fid.setup, "summary": fid.summary(),
           "timings": fid.timings.reset_index().to_dict(orient="records")}
    writers = {
        "measured.parquet": lambda p: fid.measured.to_parquet(p, index=False),
        "simulated.parquet": lambda p: fid.simulated.to_parquet(p, index=False),
        "fidelity.csv": lambda p: fid.table.to_csv(p, index=False),
        "fidelity.json": lambda p: p.write_text(json.dumps(doc, indent=2, default=float)),
    }
    return write_outputs(out_dir, fid.scenario, writers)


def render(fid: Fidelity) -> str:
    """Terminal table: per point and mode, simulated vs measured mean and p95 and the components."""
    from ..plain import ms, signed_pct as pct

    link = fid.setup["link"]
    lines = [f"real split run vs simulation · {fid.scenario.name} · link: {link['kind']} "
             f"{human(link['uplink_mbps'] * 1e6, 'bit/s')}, RTT 0 · cores device {fid.setup['cores']['device']} / server "
             f"{fid.setup['cores']['server']}, {fid.setup['threads']} thread(s)",
             "", f"{'split':<14} {'bottleneck':<10} {'mode':<9} {'rate Hz':>8} {'ρ srv':>6} {'n':>5} {'lost':>4}  "
             f"{'mean ms sim/meas':>17} {'err':>7}  {'p95 ms sim/meas':>17} {'err':>7}"]
    for _, r in fid.table.iterrows():
        lines.append(f"{r['split']:<14} {r['bottleneck']:<10} {r['mode']:<9} {r['rate_hz']:>8.3g} {r['server_rho']:>6.2f} "
                     f"{r['requests']:>5} {r['lost']:>4}  "
                     f"{ms(r['sim_latency_mean_s']) + ' / ' + ms(r['meas_latency_mean_s']):>17} "
                     f"{pct(r['err_latency_mean_s']):>7}  "
                     f"{ms(r['sim_latency_p95_s']) + ' / ' + ms(r['meas_latency_p95_s']):>17} "
                     f"{pct(r['err_latency_p95_s']):>7}")
    setup = fid.setup
    if "warmup_per_device" in setup:
        k, per, devs = setup["warmup_per_device"], setup["requests_per_device"], setup["devices"]
        lines.append(f"n: requests compared per point: {per} per device × {devs} device{'s' if devs > 1 else ''}, "
                     + (f"less each device's first {k}, dropped as warm-up on both sides (workload.warmup_fraction)"
                        if k else "none dropped as warm-up") + "; lost: of those, never answered")
    lines += ["", "components, mean ms simulated / measured:"]
    short = {"device_wait_s": "dev wait", "device_compute_s": "device", "uplink_s": "uplink",
             "server_wait_s": "srv wait", "server_compute_s": "server", "downlink_s": "downlink"}
    lines.append(f"{'split':<14} {'bottleneck':<10} {'mode':<9} " + " ".join(f"{short[c]:>17}" for c in COMPONENTS))
    for _, r in fid.table.iterrows():
        lines.append(f"{r['split']:<14} {r['bottleneck']:<10} {r['mode']:<9} " + " ".join(
            f"{ms(r['sim_' + c]) + ' / ' + ms(r['meas_' + c]):>17}" for c in COMPONENTS))
    lines.append("")
    for mode, s in fid.summary().items():
        lines.append(f"{mode} mode, {s['points']} point(s): |error| of the mean latency median "
                     f"{s['latency_mean_s']['median_abs_err'] * 100:.1f} % (max "
                     f"{s['latency_mean_s']['max_abs_err'] * 100:.1f} %), of p95 median "
                     f"{s['latency_p95_s']['median_abs_err'] * 100:.1f} % (max "
                     f"{s['latency_p95_s']['max_abs_err'] * 100:.1f} %)")
    c = fid.setup.get("server_counters", {})
    lines.append(f"server: {c.get('requests', 0)} requests, {c.get('replies', 0)} replies, warm-up included"
                 + "".join(f", {k} {v}" for k, v in c.items() if k not in ("requests", "replies", "connections")))
    return "\n".join(lines)
