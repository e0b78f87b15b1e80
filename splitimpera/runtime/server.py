"""``splitimpera serve``: the tail side of the real split run.

One listening socket (loopback by default; any other address needs a shared token), per
connection a reader and a writer thread (:mod:`.conn`), one bounded FIFO and
``workload.server_workers`` worker threads
that take dynamic batches as the simulation's server does: a free worker takes up to
``max_batch`` queued requests *of the same split and bottleneck* (the head of the queue
decides), after waiting, when the queue is short, until the oldest has waited
``batch_timeout_ms``. A worker decodes each payload with the bottleneck's own decoder (the
code that measured the bytes), runs the exact tail (:func:`~splitimpera.model.splits.split_model`)
on the batch, and answers each request with its server-side timestamps and, when asked,
the prediction.

Every request gets one outcome, tied to its id and counted in :attr:`SplitServer.stats`:
a reply (``replies``); ``busy`` (the queue holds ``Limits.max_queue`` requests already) or
``expired`` (it waited past ``Limits.queue_timeout_s``), both answered with a busy frame and
the connection kept; a refusal (``request_errors``, and the reason: ``bad_token``,
``unknown_split``, ``bad_payload`` …), answered with an error frame carrying its id after the
connection's earlier requests are answered, then the connection closes; or ``dropped`` (the
client closed or stalled before it could be answered). So, at any time once the server is
idle, ``requests = replies + busy + expired + draining + request_errors + dropped``
(:func:`unaccounted` says by how much not). Frames without an id (bad magic, a truncated
prefix) and deadlines (``handshake_timeout``, ``idle_timeout``, ``frame_timeout``) close the
connection with their own counter; every other connection goes on. Nothing is ever unpickled.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch

from ..accuracy.bottlenecks import CODERS, Bottleneck, get_bottleneck, resolve_bottlenecks
from ..config.scenario import Scenario
from ..errors import UserError
from ..model.loading import load_traced
from ..model.splits import OUTPUT, TracedModel, head_tail
from . import wire
from .auth import Backoff, check_server_token, same_token, token_problem
from .batching import BatchQueue
from .conn import Connection, Limits

log = logging.getLogger(__name__)

# The counters every request ends in exactly one of (see the module doc).
OUTCOMES = ("replies", "busy", "expired", "draining", "request_errors", "dropped")


def unaccounted(stats: dict) -> int:
    """Requests the counters do not account for: ``requests`` less the sum of :data:`OUTCOMES`
    (0 once every request has its outcome)."""
    return int(stats.get("requests", 0)) - sum(int(stats.get(k, 0)) for k in OUTCOMES)


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
    conn: Connection
    req_id: int
    split: str
    bottleneck: str
    coder: str
    body: bytes
    want: int
    t_recv_ns: int
    t_queued: float  # monotonic seconds, for the queue deadline


class SplitServer:
    """The tail side: ``start()`` binds and serves in background threads, ``stop()`` drains and ends it.

    ``stats`` counts ``requests`` and their outcomes (:data:`OUTCOMES`), ``connections``, and
    every reason a frame or connection was refused or closed (``bad_magic``, ``oversized``,
    ``unknown_split``, ``bad_token``, ``bad_payload``, ``truncated``, ``frame_timeout``,
    ``handshake_timeout``, ``evicted_unauthenticated``, ``outbox_full`` …). ``limits``: what
    one client may hold (:class:`~splitimpera.runtime.conn.Limits`).
    """

    def __init__(self, scenario: Scenario, splits: list[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, token: str | None = None, threads: int | None = None,
                 max_body_bytes: int | None = None, traced: TracedModel | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns, limits: Limits | None = None):
        if not is_loopback(host) and not token:
            raise UserError(f"binding to {host} exposes the server beyond this machine: give a token "
                            "(--token-file or $SPLITIMPERA_TOKEN), a shared secret every frame must carry",
                            field="--bind")
        check_server_token(token)
        self.scenario, self.host, self.port, self.token = scenario, host, port, token or ""
        self.limits = limits or Limits()
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
        self._backoff = Backoff(*self.limits.token_backoff_s)
        self._queue = BatchQueue(self.limits.max_queue, self.max_batch, self.batch_timeout_ns,
                                 self.limits.queue_timeout_s, clock_ns)
        self._stop = threading.Event()
        self._conns: dict[Connection, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.address: tuple[str, int] | None = None

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def counters(self) -> dict[str, int]:
        """A copy of :attr:`stats` (consistent: taken under the lock)."""
        with self._stats_lock:
            return dict(self.stats)

    # ---- lifecycle

    def start(self) -> tuple[str, int]:
        """Bind, start the accept loop and the workers; returns the bound ``(host, port)``."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._listener = socket.create_server((self.host, self.port), family=fam, backlog=128)
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

    def drain(self, timeout_s: float | None = None) -> bool:
        """Stop taking connections and requests (new ones are answered ``draining``), answer
        what is queued; True when everything queued was answered within ``timeout_s``."""
        self._close_listener()
        return self._queue.drain(self.limits.drain_timeout_s if timeout_s is None else timeout_s)

    def stop(self) -> None:
        """Drain (at most ``limits.drain_timeout_s``), then close every connection and end the threads."""
        if self._listener is not None and not self._stop.is_set():
            self.drain()
        self._stop.set()
        self._close_listener()
        for it in self._queue.stop():  # not answered within the drain: counted, never silent
            self._count("dropped")
            it.conn.settle()
        with self._conns_lock:
            conns = dict(self._conns)
        for c in conns:
            c.abort("stopped")
        for t in [*self._threads, *conns.values()]:
            t.join(timeout=5)

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:  # close() alone leaves a thread blocked in accept(); shutdown() wakes it at once
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass

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
            if self._queue.draining:
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, f"{peer[0]}:{peer[1]}", self.limits)
            with self._conns_lock:
                waiting = [c for c in self._conns if not c.authenticated and c.aborted is None]
                if len(waiting) >= self.limits.max_unauthenticated:
                    # The oldest connection that has not shown the token makes room: idle
                    # connections cannot lock a device out, and a device shows its token at once.
                    oldest = min(waiting, key=lambda c: c.accepted)
                    oldest.abort("evicted_unauthenticated")
                    self._count("evicted_unauthenticated")
                t = threading.Thread(target=self._serve_conn, args=(conn,), name="splitimpera-serve-conn",
                                     daemon=True)
                self._conns[conn] = t
            self._count("connections")
            t.start()

    def _authenticate(self, conn: Connection) -> None:
        if conn.authenticated:
            return
        with self._conns_lock:
            n = sum(1 for c in self._conns if c.authenticated)
            if n >= self.limits.max_connections:
                raise wire.FrameError(f"{n} connections already (limit {self.limits.max_connections})",
                                      "too_many_connections")
            conn.authenticated = True

    def _serve_conn(self, conn: Connection) -> None:
        try:
            while not self._stop.is_set() and not conn.failures:
                conn.begin_frame()
                try:
                    f = wire.read_frame(conn, self.max_body_bytes, lambda k, rid, m: self._check(conn, k, rid, m))
                except wire.FrameError as e:
                    self._count(e.reason)
                    if e.req_id is not None:
                        self._request_failed(conn, e.req_id, e.reason, str(e), counted=conn.frame_counted)
                    else:
                        conn.failures.append((wire.NO_ID, e.reason, str(e)))
                    break
                except (wire.FrameTimeout, wire.ConnectionClosed) as e:
                    if e.req_id is not None:
                        if not conn.frame_counted:
                            self._count("requests")
                        self._count("dropped")
                    if isinstance(e, wire.FrameTimeout):
                        self._count(e.reason)
                        conn.failures.append((wire.NO_ID if e.req_id is None else e.req_id, e.reason, str(e)))
                    elif e.mid_frame and not conn.failures and conn.aborted is None:
                        self._count("truncated")
                        log.warning("%s closed the connection mid-frame", conn.peer)
                    break
                self._handle(conn, f)
        finally:
            self._end_conn(conn)

    def _end_conn(self, conn: Connection) -> None:
        """Answer the requests before a failure, then the failures (with their ids), then close."""
        try:
            if conn.failures and conn.aborted is None:
                conn.wait_settled(self.limits.queue_timeout_s + self.limits.drain_timeout_s)
                for rid, reason, message in sorted(conn.failures, key=lambda f: f[0]):
                    log.warning("closing %s: %s (%s)", conn.peer, message, reason)
                    if reason == "bad_token":  # guessing costs time: each wrong token waits longer
                        self._stop.wait(self._backoff.failed())
                    conn.post(wire.encode_frame(wire.ERROR, rid, {"reason": f"{reason}: {message}"}))
            if conn.aborted in ("outbox_full", "write_timeout"):
                self._count(conn.aborted)
            conn.finish(self.limits.write_timeout_s)
        finally:
            with self._conns_lock:
                self._conns.pop(conn, None)

    def _request_failed(self, conn: Connection, req_id: int, reason: str, message: str, counted: bool = True) -> None:
        """Request ``req_id`` is refused: counted now, answered last on its connection."""
        if not counted:
            self._count("requests")
        self._count("request_errors")
        conn.failures.append((req_id, reason, message))

    def _check(self, conn: Connection, kind: int, req_id: int, m: dict) -> None:
        """Refuse a frame on its metadata, before its body is read (:func:`wire.read_frame`)."""
        if kind == wire.REQUEST:
            self._count("requests")
            conn.frame_counted = True
        if kind not in (wire.PING, wire.REQUEST, wire.STATS):
            raise wire.FrameError(f"a {wire.KINDS[kind]} frame from a device", "unexpected_kind")
        if not same_token(m["token"], self.token):
            raise wire.FrameError(token_problem(m["token"], self.token), "bad_token")
        if not conn.authenticated:
            self._authenticate(conn)
            if self.token:
                self._backoff.succeeded()
        if kind != wire.REQUEST:
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

    def _handle(self, conn: Connection, f: wire.Frame) -> None:
        t_recv = self.clock_ns()
        if f.kind == wire.PING:
            conn.post(wire.encode_frame(wire.PONG, f.req_id, {"t_server_ns": self.clock_ns()}))
            return
        if f.kind == wire.STATS:
            conn.post(wire.encode_frame(wire.COUNTERS, f.req_id, {"counters": self.counters()}))
            return
        item = _Pending(conn, f.req_id, f.meta["split"], f.meta["bottleneck"], f.meta["coder"], bytes(f.body),
                        f.meta["want"], t_recv, time.monotonic())
        if item.split == OUTPUT:  # the prediction itself: nothing to queue or run (as simulated)
            if len(f.body) != 8:
                self._count("bad_payload")
                return self._request_failed(conn, f.req_id, "bad_payload", f"{len(f.body)} bytes for the 8-byte "
                                                                           "prediction")
            conn.add_pending()
            self._reply([item], t_recv, t_recv, [int.from_bytes(f.body, "little", signed=True)], [b""], 0.0)
            return
        if conn.pending >= self.limits.max_pending:  # this client's share of the queue is taken
            self._count("busy")
            conn.post(wire.encode_frame(wire.BUSY, f.req_id, {"reason": "busy"}))
            return
        conn.add_pending()  # before put: a worker may answer it at once
        busy = self._queue.put(item)
        if busy is not None:
            self._count(busy)
            conn.post(wire.encode_frame(wire.BUSY, f.req_id, {"reason": busy}))
            conn.settle()

    # ---- workers

    def _work(self) -> None:
        while True:
            taken = self._queue.take()
            if taken is None:
                return
            batch, expired = taken
            for it in expired:
                self._count("expired")
                it.conn.post(wire.encode_frame(wire.BUSY, it.req_id, {"reason": "expired"}))
                it.conn.settle()
            self._queue.done(len(expired))
            live = [it for it in batch if it.conn.aborted is None]
            for it in batch:
                if it.conn.aborted is not None:  # its client is gone: nothing to answer
                    self._count("dropped")
                    it.conn.settle()
            try:
                if live:
                    self._run_batch(live)
            except Exception as e:  # a bug or a resource error: answer with it, keep serving
                log.exception("batch of %d at %s failed", len(live), live[0].split)
                for it in live:
                    self._count("server_error")
                    self._fail_queued(it, "server_error", f"{type(e).__name__}: {e}")
            finally:
                self._queue.done(len(batch))

    def _fail_queued(self, it: _Pending, reason: str, message: str) -> None:
        self._request_failed(it.conn, it.req_id, reason, message)
        it.conn.settle()
        it.conn.stop_reading()

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
                self._count("bad_payload")
                self._fail_queued(it, "bad_payload", str(e))
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

    def _written(self, ok: bool) -> None:
        self._count("replies" if ok else "dropped")

    def _reply(self, items: list[_Pending], t_start: int, t_end: int, preds: list[int], outputs: list[bytes],
               decode_s: float) -> None:
        for it, p, out in zip(items, preds, outputs):
            meta = {"t_recv_ns": it.t_recv_ns, "t_start_ns": t_start, "t_end_ns": t_end,
                    "t_reply_ns": self.clock_ns(), "decode_s": decode_s, "batch": len(items),
                    "prediction": int(p) if it.want != wire.WANT_NOTHING else -1}
            it.conn.post(wire.encode_frame(wire.REPLY, it.req_id, meta, out), self._written)
            it.conn.settle()
