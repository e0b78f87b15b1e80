"""``splitimpera serve``: the tail side of the real split run.

One listening socket (loopback by default; any other address needs a shared token), one
reader thread per connection, one shared FIFO and ``workload.server_workers`` worker threads
that take dynamic batches as the simulation's server does: a free worker takes up to
``max_batch`` queued requests *of the same split and bottleneck* (the head of the queue
decides), after waiting, when the queue is short, until the oldest has waited
``batch_timeout_ms``. A worker decodes each payload with the bottleneck's own decoder (the
code that measured the bytes), runs the exact tail (:func:`~splitimpera.model.splits.split_model`)
on the batch, and answers each request with its server-side timestamps and, when asked,
the prediction.

A frame that does not parse, is over a limit, names an unknown split, bottleneck or coder,
carries a wrong token or a payload that does not decode closes *that* connection with a
logged reason and a counter (:attr:`SplitServer.stats`); every other connection goes on.
Nothing is ever unpickled.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..accuracy.bottlenecks import CODERS, Bottleneck, get_bottleneck, resolve_bottlenecks
from ..config.scenario import Scenario
from ..errors import UserError
from ..model.loading import load_traced
from ..model.splits import OUTPUT, TracedModel, head_tail
from . import wire

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
IDLE_TIMEOUT_S = 300.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); a host name other than
    ``localhost`` is not trusted to be one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def symbol_type(bn: Bottleneck, split: str, shape: tuple[int, ...]) -> str:
    """The ``dtype`` a request frame names: ``i64`` (the prediction at ``output``), ``f32``,
    ``f16`` or ``u<bits>`` (the bottleneck's symbols)."""
    if split == OUTPUT:
        return "i64"
    bits = bn.wire_format(tuple(shape))[0]
    return {32: "f32", 16: "f16"}.get(bits, f"u{bits}")


def wire_bottlenecks(scenario: Scenario) -> dict[str, Bottleneck]:
    """The scenario's bottlenecks that the real run can put on the wire, by name.

    Learning bottlenecks (autoencoder, channel selection) are fitted per split in the
    accuracy stage and not kept; the real run would have to refit them identically on both
    sides, which it does not do yet: it refuses them in one line.
    """
    out = {}
    for name in resolve_bottlenecks(scenario.bottleneck.name):
        b = get_bottleneck(name)
        if b.needs_fit:
            raise UserError(f"{name} learns at each split; the real split run supports bottlenecks that learn "
                            "nothing (none, fp16, int<bits>[_channel][_pct])", source=scenario.source,
                            field="bottleneck.name")
        out[name] = b
    return out


def check_splits(tm: TracedModel, splits, field: str = "--splits") -> None:
    """UserError naming ``field`` unless every split in ``splits`` is one of the model's."""
    names = [sp.name for sp in tm.candidates]
    unknown = [s for s in splits if s not in names]
    if unknown:
        raise UserError(f"unknown split(s) {', '.join(unknown)}; the model's splits are {', '.join(names)}",
                        field=field)


def split_parts(tm: TracedModel, splits: list[str]) -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """``{split: (head, tail)}`` (exact, shared weights) for the named splits; UserError on an unknown one."""
    check_splits(tm, splits)
    return {s: head_tail(tm, tm.split(s)) for s in splits}


@dataclass
class _Pending:
    conn: "_Connection"
    req_id: int
    split: str
    bottleneck: str
    coder: str
    body: bytes
    want: int
    t_recv_ns: int


@dataclass(eq=False)  # hashed by identity: the server keeps a set of them
class _Connection:
    sock: socket.socket
    peer: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def send(self, data: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def close(self) -> None:
        with self.lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class SplitServer:
    """The tail side: ``start()`` binds and serves in background threads, ``stop()`` ends it.

    ``stats`` counts ``requests``, ``replies``, ``connections`` and every reason a
    connection was closed (``bad_magic``, ``oversized``, ``unknown_split``, ``bad_token``,
    ``bad_payload``, ``truncated`` …).
    """

    def __init__(self, scenario: Scenario, splits: list[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, token: str | None = None, threads: int | None = None,
                 max_body_bytes: int | None = None, traced: TracedModel | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns):
        if not is_loopback(host) and not token:
            raise UserError(f"binding to {host} exposes the server beyond this machine: give --token (a shared "
                            "secret every frame must carry)", field="--bind")
        self.scenario, self.host, self.port, self.token = scenario, host, port, token or ""
        self.clock_ns = clock_ns  # the clock replies are stamped with (tests skew it)
        self.tm = traced if traced is not None else load_traced(scenario)
        names = [sp.name for sp in self.tm.candidates]
        self.splits = list(names if splits is None else splits)
        parts = split_parts(self.tm, self.splits)
        self.tails = {s: t.eval() for s, (_, t) in parts.items()}
        self.shapes = {s: tuple(self.tm.split(s).shape) for s in self.splits}
        self.bottlenecks = wire_bottlenecks(scenario)
        wl = scenario.workload
        self.max_batch, self.workers = wl.max_batch, wl.server_workers
        self.batch_timeout_ns = int(wl.batch_timeout_ms * 1e6)
        self.threads = threads
        if max_body_bytes is None:  # the largest fp32 tensor this server can be sent, plus room for side info
            largest = max((4 * math.prod(s) for s in self.shapes.values() if s), default=0)
            max_body_bytes = max(1 << 16, 2 * largest + 4096)
        self.max_body_bytes = int(max_body_bytes)
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()  # `+=` on a Counter is not atomic across threads
        self._queue: deque[_Pending] = deque()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._conns: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.address: tuple[str, int] | None = None

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    # ---- lifecycle

    def start(self) -> tuple[str, int]:
        """Bind, start the accept loop and the workers; returns the bound ``(host, port)``."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._listener = socket.create_server((self.host, self.port), family=fam, backlog=64)
        except OSError as e:
            raise UserError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}", field="--bind") from None
        self.address = self._listener.getsockname()[:2]
        self._warm()
        for i in range(self.workers):
            self._spawn(self._work, f"worker-{i}")
        self._spawn(self._accept, "accept")
        log.info("serving %s on %s:%d", ", ".join(self.splits), *self.address)
        return self.address

    def _warm(self, runs: int = 3) -> None:
        """Run every tail a few times before the first request (first calls allocate and dispatch slowly)."""
        with torch.no_grad():
            for s, tail in self.tails.items():
                if s != OUTPUT:
                    for _ in range(runs):
                        tail(torch.zeros((1, *self.shapes[s])))

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            try:  # close() alone leaves a thread blocked in accept(); shutdown() wakes it at once
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass
        with self._cv:
            self._cv.notify_all()
        for c in list(self._conns):
            c.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, fn, name, *args) -> threading.Thread:
        t = threading.Thread(target=fn, args=args, name=f"splitimpera-serve-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    # ---- connections

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return
            if len(self._conns) >= MAX_CONNECTIONS:
                self._count("refused_too_many")
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, f"{peer[0]}:{peer[1]}")
            self._conns.add(conn)
            self._count("connections")
            t = threading.Thread(target=self._serve_conn, args=(conn,), name="splitimpera-serve-conn", daemon=True)
            t.start()

    def _reject(self, conn: _Connection, reason: str, message: str) -> None:
        """Close ``conn`` for ``reason`` (counted, logged, told to the peer when it still listens)."""
        self._count(reason)
        log.warning("closing %s: %s (%s)", conn.peer, message, reason)
        conn.send(wire.encode_frame(wire.ERROR, 0, {"reason": f"{reason}: {message}"}))
        conn.close()

    def _serve_conn(self, conn: _Connection) -> None:
        # A connection that sends nothing for this long is closed: idle or slow clients must
        # not hold the connection slots the devices need.
        conn.sock.settimeout(IDLE_TIMEOUT_S)
        try:
            while not self._stop.is_set():
                try:
                    f = wire.read_frame(conn.sock, self.max_body_bytes, self._check)
                except wire.FrameError as e:
                    return self._reject(conn, e.reason, str(e))
                except wire.ConnectionClosed as e:
                    if e.mid_frame:
                        self._count("truncated")
                        log.warning("%s closed the connection mid-frame", conn.peer)
                    return conn.close()
                except socket.timeout:
                    return self._reject(conn, "idle_timeout", f"nothing received for {IDLE_TIMEOUT_S:g} s")
                except OSError:
                    return conn.close()
                t_recv = self.clock_ns()
                if f.kind == wire.PING:
                    conn.send(wire.encode_frame(wire.PONG, f.req_id, {"t_server_ns": self.clock_ns()}))
                    continue
                self._count("requests")
                item = _Pending(conn, f.req_id, f.meta["split"], f.meta["bottleneck"], f.meta["coder"], f.body,
                                f.meta["want"], t_recv)
                if item.split == OUTPUT:  # the prediction itself: nothing to queue or run (as simulated)
                    if len(f.body) != 8:
                        return self._reject(conn, "bad_payload", f"{len(f.body)} bytes for the 8-byte prediction")
                    self._reply([item], t_recv, t_recv, [int.from_bytes(f.body, "little", signed=True)],
                                [b""], 0.0)
                    continue
                with self._cv:
                    self._queue.append(item)
                    self._cv.notify()
        finally:
            self._conns.discard(conn)

    def _token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def _token_problem(self, token: str) -> str:
        """What is wrong with a token that :meth:`_token_ok` refused, in the device's terms."""
        if not self.token:
            return ("this server takes no token (started without --token): drop --token and $SPLITIMPERA_TOKEN, "
                    "or start the server with that token")
        if not token:
            return "this server requires a token: give the same --token (or $SPLITIMPERA_TOKEN) as the server"
        return "wrong token: give the same --token (or $SPLITIMPERA_TOKEN) as the server"

    def _check(self, kind: int, m: dict) -> None:
        """Refuse a frame on its metadata, before its body is read (:func:`wire.read_frame`)."""
        if kind not in (wire.PING, wire.REQUEST):
            raise wire.FrameError(f"a {wire.KINDS[kind]} frame from a device", "unexpected_kind")
        if not self._token_ok(m["token"]):
            raise wire.FrameError(self._token_problem(m["token"]), "bad_token")
        if kind == wire.PING:
            return
        if m["split"] not in self.tails:
            raise wire.FrameError(f"split {m['split']!r} is not served here (serving {', '.join(self.splits)})",
                                  "unknown_split")
        if m["bottleneck"] not in self.bottlenecks:
            raise wire.FrameError(f"bottleneck {m['bottleneck']!r} (serving {', '.join(self.bottlenecks)})",
                                  "unknown_bottleneck")
        if m["coder"] not in CODERS:
            raise wire.FrameError(f"coder {m['coder']!r}", "unknown_coder")
        want = self.shapes[m["split"]] if m["split"] != OUTPUT else ()
        if tuple(m["shape"]) != want:
            raise wire.FrameError(f"shape {tuple(m['shape'])} at {m['split']} (expected {want})", "bad_shape")
        dtype = symbol_type(self.bottlenecks[m["bottleneck"]], m["split"], want)
        if m["dtype"] != dtype:
            raise wire.FrameError(f"symbol type {m['dtype']!r} (expected {dtype!r})", "bad_dtype")

    # ---- workers

    def _take_batch(self) -> list[_Pending] | None:
        with self._cv:
            while True:
                while not self._queue:
                    if self._stop.is_set():
                        return None
                    self._cv.wait(0.5)
                if self.max_batch > 1 and self.batch_timeout_ns > 0:
                    deadline = self._queue[0].t_recv_ns + self.batch_timeout_ns
                    while 0 < len(self._queue) < self.max_batch and not self._stop.is_set():
                        left = deadline - self.clock_ns()
                        if left <= 0:
                            break
                        self._cv.wait(left / 1e9)
                if self._queue:  # another worker may have taken everything while this one waited
                    break
            first = self._queue.popleft()
            batch, keep = [first], deque()
            while self._queue and len(batch) < self.max_batch:
                it = self._queue.popleft()
                (batch if (it.split, it.bottleneck, it.coder) == (first.split, first.bottleneck, first.coder)
                 else keep).append(it)
            self._queue.extendleft(reversed(keep))
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception as e:  # a bug or a resource error: answer with it, keep serving
                log.exception("batch of %d at %s failed", len(batch), batch[0].split)
                for it in batch:
                    self._reject(it.conn, "server_error", f"{type(e).__name__}: {e}")

    def _run_batch(self, batch: list[_Pending]) -> None:
        t_start = self.clock_ns()
        split, bn = batch[0].split, self.bottlenecks[batch[0].bottleneck]
        t0 = time.perf_counter()
        good, tensors = [], []
        for it in batch:
            try:
                tensors.append(bn.decode([it.body], it.coder, self.shapes[split]))
                good.append(it)
            except ValueError as e:
                self._reject(it.conn, "bad_payload", str(e))
        decode_s = (time.perf_counter() - t0) / max(len(batch), 1)
        if not good:
            return
        with torch.no_grad():
            y = self.tails[split](torch.cat(tensors))
        flat = y.reshape(len(good), -1)
        preds = flat.argmax(1).tolist()
        outputs = [flat[i].float().numpy().astype("<f4").tobytes() if it.want == wire.WANT_OUTPUT else b""
                   for i, it in enumerate(good)]
        self._reply(good, t_start, self.clock_ns(), preds, outputs, decode_s)

    def _reply(self, items: list[_Pending], t_start: int, t_end: int, preds: list[int], outputs: list[bytes],
               decode_s: float) -> None:
        for it, p, out in zip(items, preds, outputs):
            meta = {"t_recv_ns": it.t_recv_ns, "t_start_ns": t_start, "t_end_ns": t_end,
                    "t_reply_ns": self.clock_ns(), "decode_s": decode_s, "batch": len(items),
                    "prediction": int(p) if it.want != wire.WANT_NOTHING else -1}
            if it.conn.send(wire.encode_frame(wire.REPLY, it.req_id, meta, out)):
                self._count("replies")
