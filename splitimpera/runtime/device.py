"""``splitimpera device``: the head side of the real split run.

One device is one connection to the server and one FIFO: requests arrive on the
scenario's schedule (the simulation's own arrival times for this ``device_id``, from the
same seed), wait while the previous one is still computing, run the exact head
(:func:`~splitimpera.model.splits.split_model`), are encoded by the bottleneck's own encoder
and sent as one frame (:mod:`.wire`). A receiver thread collects the replies.

Clocks: the server stamps its side with its monotonic clock; at connect the device sends
:data:`SYNC_PINGS` pings and keeps the offset of the one with the shortest round trip
(NTP's estimate; its error is at most half that round trip, microseconds on one machine,
where both processes read the same clock anyway). Per request, in the columns of
:data:`~splitimpera.latency.simulation.REQUEST_COLUMNS` (seconds)::

    device_wait_s     schedule → the head starts (the device is busy with earlier requests)
    device_compute_s  head + encode (``head_s`` and ``encode_s`` apart as well)
    uplink_s          send starts → the server has read the whole frame
    server_wait_s     frame read → its batch starts
    server_compute_s  batch start → batch end (decode + tail; ``decode_s`` apart)
    downlink_s        batch end → reply read by the device (result_at: device only)
    latency_s         schedule → prediction at the server (result_at: server) or back on
                      the device (result_at: device)

Every request ends in one ``outcome``: ``answered``; ``busy``, ``expired`` or ``draining``
(the server's busy frame for its id: not run); ``error`` (the server refused it: its error
frame carries the id); ``lost`` (sent, and nothing came back within ``timeout_s`` after the
last one was sent, or the connection closed first); ``unsent`` (the connection closed before
it was sent). All but ``answered`` are kept with ``answered`` False and ``frame_lost`` 1:
counted, never dropped silently (:func:`outcome_counts`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..accuracy.bottlenecks import get_bottleneck
from ..config.scenario import Scenario
from ..data import load_data
from ..errors import UserError
from ..latency.simulation import REQUEST_COLUMNS, arrival_times_s, common_streams
from ..model.loading import load_traced
from ..model.splits import OUTPUT, TracedModel, head_tail
from . import wire
from .server import check_splits, symbol_type, wire_bottlenecks

log = logging.getLogger(__name__)

SYNC_PINGS = 16
# The server's reasons for refusing what this device sends (its settings disagree with the
# server's), and the option to look at: a user error, not requests lost on the way.
REFUSALS = {"unknown_split": "--split", "unknown_bottleneck": "--bottleneck", "unknown_coder": "--server",
            "bad_shape": "--server", "bad_dtype": "--server", "bad_token": "--token"}
CONNECT_TIMEOUT_S = 10.0
EXTRA_COLUMNS = ["head_s", "encode_s", "decode_s", "batch", "frame_bytes", "answered", "prediction", "outcome"]
OUTCOMES = ("answered", "busy", "expired", "draining", "error", "lost", "unsent")
MEASURED_COLUMNS = REQUEST_COLUMNS + EXTRA_COLUMNS


@dataclass(frozen=True)
class DeviceRun:
    """Outcome of :func:`run_device`: ``requests`` (one row per request, :data:`MEASURED_COLUMNS`),
    ``clock_offset_s`` (server minus device clock) and its ``sync_rtt_s``."""

    requests: pd.DataFrame
    clock_offset_s: float
    sync_rtt_s: float


def parse_address(text: str, field: str = "--server") -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; port 0 (any free port) only for ``--bind``."""
    host, sep, port = text.rpartition(":")
    lowest = 0 if field == "--bind" else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise UserError(f"expected HOST:PORT, got {text!r}", field=field)
    return host.strip("[]"), int(port)


def input_samples(scenario: Scenario, tm: TracedModel, n: int) -> torch.Tensor:
    """``n`` inputs (n, *input_shape): the scenario's data in order (cycled), or seeded noise without data."""
    ds = load_data(scenario, tm.input_shape, tm.output_width)
    if ds is None:
        g = torch.Generator().manual_seed(scenario.seed)
        return torch.randn((min(n, 64), *tm.input_shape), generator=g)
    k = min(n, len(ds))
    return torch.stack([ds[i][0] for i in range(k)])


def outcome_counts(requests: pd.DataFrame) -> dict[str, int]:
    """``{"sent": n, <outcome>: n …}`` of a device table: sent = everything but ``unsent``
    = answered + busy + expired + draining + error + lost."""
    counts = {k: int((requests["outcome"] == k).sum()) for k in OUTCOMES}
    return {"sent": int(len(requests)) - counts["unsent"], **counts}


def reconcile(server: dict, requests: pd.DataFrame) -> list[str]:
    """What does not add up between a server's counters and the table of every device that
    talked to it (``outcome`` column); empty when sent = answered + each named error + each
    named drop on both sides, outcome by outcome."""
    from .server import unaccounted

    dev = outcome_counts(requests)
    pairs = {"requests vs sent": (server.get("requests", 0), dev["sent"]),
             "replies vs answered": (server.get("replies", 0), dev["answered"]),
             "busy": (sum(server.get(k, 0) for k in ("busy", "expired", "draining")),
                      dev["busy"] + dev["expired"] + dev["draining"]),
             "refused": (server.get("request_errors", 0), dev["error"]),
             "dropped vs lost": (server.get("dropped", 0), dev["lost"])}
    out = [f"{name}: server {a}, devices {b}" for name, (a, b) in pairs.items() if a != b]
    if unaccounted(server):
        out.insert(0, f"{unaccounted(server)} request(s) without an outcome at the server")
    return out


def _read_from_server(sock: socket.socket, where: str, max_body_bytes: int = 0) -> wire.Frame:
    """One frame from the server; a server of another protocol version is a user error in one line."""
    try:
        return wire.read_frame(sock, max_body_bytes)
    except wire.FrameError as e:
        if e.reason != "bad_version":
            raise
        raise UserError(f"the server at {where} speaks protocol version {e.version} and this device version "
                        f"{wire.VERSION}: run the same splitimpera release on both sides", field="--server") from None


def server_counters(server: tuple[str, int], token: str | None = None, timeout_s: float = 10.0) -> dict[str, int]:
    """The server's counters now (a stats frame), e.g. to watch a running ``serve``."""
    with socket.create_connection(server, timeout=timeout_s) as sock:
        sock.sendall(wire.encode_frame(wire.STATS, 0, {"token": token or ""}))
        f = _read_from_server(sock, f"{server[0]}:{server[1]}")
    if f.kind != wire.COUNTERS:
        raise UserError(f"the server refused: {f.meta.get('reason', wire.KINDS[f.kind])}", field="--server")
    return f.meta["counters"]


def _sync_clock(sock: socket.socket, token: str, where: str) -> tuple[int, int]:
    """(offset ns = server − device, round trip ns) of the fastest of :data:`SYNC_PINGS` pings."""
    best = None
    for i in range(SYNC_PINGS):
        t0 = time.monotonic_ns()
        sock.sendall(wire.encode_frame(wire.PING, i, {"t_send_ns": t0, "token": token}))
        f = _read_from_server(sock, where)
        t3 = time.monotonic_ns()
        if f.kind == wire.ERROR:
            raise UserError(f"the server refused the connection: {f.meta['reason']}", field="--token")
        if f.kind != wire.PONG:
            raise wire.FrameError(f"expected a pong, got a {wire.KINDS[f.kind]}")
        rtt = t3 - t0
        if best is None or rtt < best[1]:
            best = (f.meta["t_server_ns"] - (t0 + t3) // 2, rtt)
    return best


def run_device(scenario: Scenario, server: tuple[str, int], split: str, *, bottleneck: str | None = None,
               device_id: int = 0, token: str | None = None, threads: int | None = None,
               num_requests: int | None = None, timeout_s: float = 30.0, traced: TracedModel | None = None,
               start_delay_s: float = 0.2, start_at_ns: int | None = None, warmup: int = 5,
               same_clock: bool = False) -> DeviceRun:
    """Run ``num_requests`` (default ``workload.num_requests``) requests of ``split`` against
    ``server`` on the scenario's schedule for ``device_id``; see the module doc.

    Time zero of the schedule is ``start_at_ns`` on the monotonic clock (several devices on
    one machine share it, as the simulated devices share theirs), else ``start_delay_s``
    after connecting. ``same_clock``: server and device read one monotonic clock (one
    machine): the offset is 0, not estimated."""
    if threads is not None:
        torch.set_num_threads(threads)
    tm = traced if traced is not None else load_traced(scenario)
    check_splits(tm, [split], field="--split")
    bns = wire_bottlenecks(scenario)
    bn_name = bottleneck or next(iter(bns))
    if bn_name not in bns:
        raise UserError(f"{bn_name!r} is not one of the scenario's bottlenecks ({', '.join(bns)})",
                        field="--bottleneck")
    bn = get_bottleneck(bn_name)
    coder = scenario.bottleneck.coder
    wl = scenario.workload
    n = num_requests or wl.num_requests
    head, _ = head_tail(tm, tm.split(split))
    head.eval()
    shape = tuple(tm.split(split).shape)
    local_only = split == OUTPUT and wl.result_at == "device"  # nothing to send
    want = wire.WANT_PREDICTION if wl.result_at == "device" else wire.WANT_NOTHING
    xs = input_samples(scenario, tm, n)
    if not 0 <= device_id < wl.num_devices:
        raise UserError(f"must be in 0..{wl.num_devices - 1} (workload.num_devices is {wl.num_devices}; "
                        f"got {device_id})", field="--device-id")
    arrivals = arrival_times_s(wl.model_copy(update={"num_requests": n}),
                               common_streams(scenario.seed)["arrivals"])[device_id]
    # The shape and symbol type on the wire do not change between requests: one header.
    meta = {"split": split, "bottleneck": bn_name, "coder": coder, "dtype": symbol_type(bn, split, shape),
            "shape": shape if split != OUTPUT else (), "want": want, "token": token or ""}

    with torch.no_grad():  # first calls allocate and dispatch slowly: a deployed device is warm
        for _ in range(warmup):
            z = head(xs[:1])
            if split != OUTPUT:
                bn.encode(z, coder)
    sock = None
    offset_ns, sync_rtt_ns = 0, 0
    if not local_only:
        where = f"{server[0]}:{server[1]}"
        try:
            sock = socket.create_connection(server, timeout=CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            offset_ns, sync_rtt_ns = _sync_clock(sock, token or "", where)  # under the connect timeout
        except (wire.FrameError, wire.ConnectionClosed, socket.timeout) as e:
            if sock is not None:
                sock.close()
            raise UserError(f"no splitimpera server answers at {where} ({e})", field="--server") from None
        except OSError as e:
            if sock is not None:
                sock.close()
            raise UserError(f"cannot connect to {where}: {e.strerror or e}", field="--server") from None
        sock.settimeout(None)
        if same_clock:  # one machine, one monotonic clock: the estimate could only add its error
            offset_ns = 0

    replies: dict[int, tuple[int, dict]] = {}
    answers: dict[int, str] = {}  # req_id → busy / expired / draining / error: the server's word for it
    done = threading.Event()
    errors: list[str] = []
    refused: list[str] = []  # the server's reason, when it refused these requests outright

    def receive():
        # Until every request has its answer, or the server closes (after its error frames).
        try:
            while len(replies) + len(answers) < n:
                f = wire.read_frame(sock, 0)
                t = time.monotonic_ns()
                if f.kind == wire.ERROR:
                    errors.append(f.meta["reason"])
                    if f.req_id < n:
                        answers[f.req_id] = "error"
                    if f.meta["reason"].partition(":")[0] in REFUSALS:
                        refused.append(f.meta["reason"])
                elif f.kind == wire.BUSY and f.req_id < n:
                    reason = f.meta["reason"]
                    answers[f.req_id] = reason if reason in OUTCOMES else "busy"
                elif f.kind == wire.REPLY:
                    replies[f.req_id] = (t, f.meta)
        except wire.ConnectionClosed:
            pass
        except (wire.FrameError, OSError) as e:
            if not done.is_set():
                errors.append(str(e))
        finally:
            done.set()

    receiver = None
    if sock is not None:
        receiver = threading.Thread(target=receive, name="splitimpera-device-recv", daemon=True)
        receiver.start()

    rows = []
    t0_ns = start_at_ns if start_at_ns is not None else time.monotonic_ns() + int(start_delay_s * 1e9)
    try:
        with torch.no_grad():
            for i in range(n):
                if errors:
                    break
                target = t0_ns + int(arrivals[i] * 1e9)
                # Sleep to within 1 ms of the arrival, then yield until it: sleep overshoots.
                while (left := target - time.monotonic_ns()) > 0:
                    time.sleep(min(left - 1_000_000, 50_000_000) / 1e9 if left > 2_000_000 else 0)
                start = time.monotonic_ns()
                x = xs[i % len(xs)].unsqueeze(0)
                z = head(x)
                t_head = time.monotonic_ns()
                if split == OUTPUT:
                    pred = int(z.reshape(1, -1).argmax(1))
                    body = pred.to_bytes(8, "little", signed=True)
                else:
                    pred = -1
                    body = bn.encode(z, coder)[0]
                frame = None if local_only else wire.encode_frame(wire.REQUEST, i, meta, body)
                t_send = time.monotonic_ns()
                if frame is not None:
                    try:
                        sock.sendall(frame)
                    except OSError as e:  # the server closed on us: the rest are counted as lost
                        errors.append(f"send failed: {e}")
                        break
                rows.append({"i": i, "target": target, "start": start, "t_head": t_head, "t_send": t_send,
                             "bytes": len(body) if frame is not None else 0,
                             "frame_bytes": len(frame) if frame is not None else 0, "pred": pred})
        if receiver is not None:
            deadline = time.monotonic() + timeout_s
            while not done.is_set() and time.monotonic() < deadline:
                done.wait(0.05)
    finally:
        done.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
    if refused:
        raise UserError(f"the server at {server[0]}:{server[1]} refused the requests: {refused[0]}",
                        field=REFUSALS[refused[0].partition(":")[0]])
    if errors:
        log.warning("device %d: %s", device_id, errors[0])

    result_at_device = wl.result_at == "device"
    sent = {r["i"]: r for r in rows}
    out = []
    for i in range(n):
        r = sent.get(i)
        if r is None:  # never sent: the server closed the connection first
            out.append({"split": split, "bottleneck": bn_name, "device_id": device_id,
                        "t_arrival_s": float(arrivals[i]), "answered": False, "frame_lost": 1.0, "prediction": -1,
                        "bytes_sent": 0, "frame_bytes": 0, "batch": 0, "outcome": "unsent"})
            continue
        rec = {"split": split, "bottleneck": bn_name, "device_id": device_id, "t_arrival_s": float(arrivals[r["i"]]),
               "device_wait_s": (r["start"] - r["target"]) / 1e9, "head_s": (r["t_head"] - r["start"]) / 1e9,
               "encode_s": (r["t_send"] - r["t_head"]) / 1e9, "device_compute_s": (r["t_send"] - r["start"]) / 1e9,
               "energy_j": np.nan, "bytes_sent": r["bytes"], "frame_bytes": r["frame_bytes"]}
        if local_only:
            rec.update(uplink_s=0.0, server_wait_s=0.0, server_compute_s=0.0, decode_s=0.0, downlink_s=0.0,
                       latency_s=(r["t_send"] - r["target"]) / 1e9, batch=0, answered=True, frame_lost=0.0,
                       prediction=r["pred"], outcome="answered")
        elif r["i"] in replies:
            t_back, m = replies[r["i"]]
            recv_dev = m["t_recv_ns"] - offset_ns
            end_dev = m["t_end_ns"] - offset_ns
            rec.update(uplink_s=(recv_dev - r["t_send"]) / 1e9, server_wait_s=(m["t_start_ns"] - m["t_recv_ns"]) / 1e9,
                       server_compute_s=(m["t_end_ns"] - m["t_start_ns"]) / 1e9, decode_s=m["decode_s"],
                       downlink_s=(t_back - end_dev) / 1e9 if result_at_device else 0.0,
                       latency_s=((t_back if result_at_device else end_dev) - r["target"]) / 1e9,
                       batch=m["batch"], answered=True, frame_lost=0.0,
                       prediction=m["prediction"] if m["prediction"] >= 0 else r["pred"], outcome="answered")
        else:
            rec.update(uplink_s=np.nan, server_wait_s=np.nan, server_compute_s=np.nan, decode_s=np.nan,
                       downlink_s=np.nan, latency_s=np.nan, batch=0, answered=False, frame_lost=1.0, prediction=-1,
                       outcome=answers.get(r["i"], "lost"))
        out.append(rec)
    df = pd.DataFrame(out, columns=MEASURED_COLUMNS)
    return DeviceRun(requests=df, clock_offset_s=offset_ns / 1e9, sync_rtt_s=sync_rtt_ns / 1e9)
