"""Hostile clients for ``bench_runtime.py --reliability``: one per way a client can try to stall or fool ``serve``.

Each runs in a thread of the benchmark process against ``address`` until ``stop`` is set and
returns what it did. They are the probes that found the faults the server now bounds: idle
connections that never show a token, a byte trickled every 0.2 s, a client that sends and
never reads, headers claiming the largest body, a bad request between good ones, wrong
tokens, garbage and frames cut mid-way.
"""

from __future__ import annotations

import socket
import threading
import time

from splitimpera.runtime import wire

GOOD_META = {"split": "input", "bottleneck": "none", "coder": "raw", "dtype": "f32", "shape": (1, 32, 32), "want": 1,
             "token": ""}
GOOD_BODY = b"\0" * (4 * 32 * 32)


def _frame(rid: int, body: bytes = GOOD_BODY, **meta) -> bytes:
    return wire.encode_frame(wire.REQUEST, rid, {**GOOD_META, **meta}, body)


def _connect(address, timeout_s: float = 5.0) -> socket.socket | None:
    try:
        return socket.create_connection(address, timeout=timeout_s)
    except OSError:
        return None


def idle_slots(address, stop: threading.Event, n: int = 300) -> str:
    socks = [s for s in (_connect(address) for _ in range(n)) if s]
    stop.wait()
    for s in socks:
        s.close()
    return f"{len(socks)} idle connections"


def slowloris(address, stop: threading.Event, n: int = 260) -> str:
    socks = [s for s in (_connect(address) for _ in range(n)) if s]
    data, i, cut = _frame(0), 0, 0
    while not stop.wait(0.2) and socks:
        alive = []
        for s in socks:
            try:
                s.sendall(data[i % len(data):i % len(data) + 1])
                alive.append(s)
            except OSError:
                cut += 1
                s.close()
        socks, i = alive, i + 1
    for s in socks:
        s.close()
    return f"{n} trickling connections, {cut} cut by the server"


def non_reader(address, stop: threading.Event) -> str:
    sent = 0
    while not stop.is_set():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(2.0)
        try:
            s.connect(address)
            while not stop.is_set():
                s.sendall(_frame(sent) * 16)
                sent += 16
        except OSError:
            pass
        finally:
            s.close()
    return f"{sent} requests sent, no reply read"


def big_headers(address, stop: threading.Event, n: int = 150) -> str:
    head = _frame(1, body=b"")
    claim = wire.PREFIX.pack(wire.MAGIC, wire.VERSION, wire.REQUEST, len(head) - wire.PREFIX.size, 1,
                             (1 << 32) - 1) + head[wire.PREFIX.size:]
    big = wire.PREFIX.pack(wire.MAGIC, wire.VERSION, wire.REQUEST, len(head) - wire.PREFIX.size, 1,
                           2 * len(GOOD_BODY) + 4096) + head[wire.PREFIX.size:] + b"\0" * 10
    socks = []
    for k in range(n):
        s = _connect(address)
        if s:
            s.sendall(claim if k % 10 == 0 else big)
            socks.append(s)
    stop.wait()
    for s in socks:
        s.close()
    return f"{n} headers claiming the largest body"


def bad_between_good(address, stop: threading.Event) -> str:
    tries = ok = 0
    while not stop.is_set():
        s = _connect(address)
        if s is None:
            continue
        try:
            s.sendall(_frame(0) + _frame(1, body=b"\0" * 10) + _frame(2))
            frames = []
            while True:
                frames.append(wire.read_frame(s, 1 << 20))
        except (wire.ConnectionClosed, wire.FrameError, OSError):
            pass
        finally:
            s.close()
        tries += 1
        ok += [(f.kind, f.req_id) for f in frames[:1]] == [(wire.REPLY, 0)] and frames[-1:] and \
            (frames[-1].kind, frames[-1].req_id) == (wire.ERROR, 1)
    return f"{tries} connections with a bad request after a good one, {ok} answered good-then-error"


def wrong_tokens_and_garbage(address, stop: threading.Event) -> str:
    n = 0
    while not stop.is_set():
        for data in (_frame(0, token="guess-" + str(n)), b"GET / HTTP/1.1\r\n\r\n", _frame(0)[:50]):
            s = _connect(address)
            if s is None:
                continue
            try:
                s.sendall(data)
                if data[:4] == wire.MAGIC and len(data) > 50:
                    wire.read_frame(s, 1 << 20)
            except (wire.ConnectionClosed, wire.FrameError, OSError):
                pass
            finally:
                s.close()
            n += 1
        time.sleep(0.01)
    return f"{n} connections with a wrong token, garbage or a cut frame"


ATTACKS = [idle_slots, slowloris, non_reader, big_headers, bad_between_good, wrong_tokens_and_garbage]
