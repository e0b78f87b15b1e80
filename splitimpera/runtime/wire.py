"""The wire format of the real split run: length-prefixed binary frames over TCP, no pickle.

Every frame starts with a fixed 20-byte prefix (network byte order)::

    magic     4 s   b"SPIM"
    version   B     2 (a peer speaking another version is refused, saying both)
    kind      B     1 request, 2 reply, 3 error, 4 ping, 5 pong, 6 busy, 7 stats, 8 counters
    meta_len  H     bytes of the metadata block that follows (≤ MAX_META_BYTES)
    req_id    Q     request id (the device's counter; pings use their own; NO_ID: none)
    body_len  I     bytes of the body after the metadata (≤ the reader's max_body_bytes)

then ``meta_len`` bytes of metadata and ``body_len`` bytes of body. Metadata by kind:

* **request**: ``split`` (str), ``bottleneck`` (str), ``coder`` (str), ``dtype`` (str, the
  symbol type: ``f32``, ``f16`` or ``u<bits>``), ``shape`` (u8 count, then u32 each),
  ``want`` (B: 0 nothing back but the timestamps, :data:`WANT_PREDICTION` the top-1 class,
  :data:`WANT_OUTPUT` also the tail's output), ``token`` (str, empty without one). Body: the
  payload, exactly the bytes :meth:`~splitimpera.accuracy.bottlenecks.Bottleneck.encode` writes.
* **reply**: ``t_recv_ns``, ``t_start_ns``, ``t_end_ns``, ``t_reply_ns`` (q, the server's
  monotonic clock: frame fully read, batch started, batch finished, reply queued),
  ``decode_s`` (d), ``batch`` (H), ``prediction`` (q, −1 when not asked). Body: empty, or
  with :data:`WANT_OUTPUT` the tail's output for this request as float32 little-endian.
* **error**: ``reason`` (str, ``<tag>: <words>``). ``req_id`` is the refused request's id,
  or :data:`NO_ID` when the frame had none (bad magic, a truncated prefix). It is the last
  frame on the connection: requests sent before the refused one are answered first, then
  the server closes.
* **busy**: ``reason`` (str: ``busy``, the queue is full; ``expired``, the request waited
  past its deadline; ``draining``, the server is stopping). The request ``req_id`` was not
  run; the connection stays open.
* **ping**: ``t_send_ns`` (q, the device's clock), ``token`` (str). **pong**: ``t_server_ns`` (q).
* **stats**: ``token`` (str). **counters**: u16 count, then a str name and a q value each:
  the server's counters (:attr:`~splitimpera.runtime.server.SplitServer.stats`) now.

A string is a u16 length then UTF-8 bytes (≤ :data:`MAX_NAME_BYTES`). Anything that does not
parse (bad magic or version, unknown kind, a length over its limit, a truncated block, bytes
left over) raises :class:`FrameError`. The body buffer grows as its bytes arrive: a header
that claims a large body costs nothing until the body is sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Protocol

MAGIC = b"SPIM"
VERSION = 2
REQUEST, REPLY, ERROR, PING, PONG, BUSY, STATS, COUNTERS = 1, 2, 3, 4, 5, 6, 7, 8
WANT_NOTHING, WANT_PREDICTION, WANT_OUTPUT = 0, 1, 2
KINDS = {REQUEST: "request", REPLY: "reply", ERROR: "error", PING: "ping", PONG: "pong", BUSY: "busy",
         STATS: "stats", COUNTERS: "counters"}
NO_ID = 2**64 - 1
PREFIX = struct.Struct("!4sBBHQI")
MAX_META_BYTES = 4096
MAX_NAME_BYTES = 256
MAX_DIMS = 8
MAX_COUNTERS = 128
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 64 * 1024  # the most one read asks for: what a header alone can make the reader hold
_REPLY = struct.Struct("!qqqqdHq")


class FrameError(ValueError):
    """A frame that does not parse; ``reason`` is a short tag for counters, ``req_id`` the
    request's id when the prefix named one (a request frame), else None; ``version`` the
    peer's protocol version when that was the problem."""

    def __init__(self, message: str, reason: str = "malformed", version: int | None = None):
        super().__init__(message)
        self.reason, self.version = reason, version
        self.req_id: int | None = None


class ConnectionClosed(Exception):
    """The peer closed the connection; ``mid_frame`` when it did so inside a frame."""

    def __init__(self, mid_frame: bool):
        super().__init__("connection closed" + (" mid-frame" if mid_frame else ""))
        self.mid_frame = mid_frame
        self.req_id: int | None = None


class FrameTimeout(Exception):
    """A reader's deadline passed (``reason``: ``idle_timeout``, ``frame_timeout``,
    ``handshake_timeout``); ``mid_frame`` when inside a frame."""

    def __init__(self, message: str, reason: str, mid_frame: bool):
        super().__init__(message)
        self.reason, self.mid_frame = reason, mid_frame
        self.req_id: int | None = None


class Readable(Protocol):
    """What :func:`read_frame` reads from: a socket, or a reader that keeps deadlines."""

    def recv_into(self, buffer, nbytes: int = 0) -> int: ...


@dataclass(frozen=True)
class Frame:
    kind: int
    req_id: int
    meta: dict
    body: bytes | bytearray = b""


# ---- metadata blocks


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.i = buf, 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.buf):
            raise FrameError("metadata truncated")
        out = self.buf[self.i:self.i + n]
        self.i += n
        return out

    def unpack(self, fmt: str):
        s = struct.Struct("!" + fmt)
        return s.unpack(self.take(s.size))

    def string(self) -> str:
        (n,) = self.unpack("H")
        if n > MAX_NAME_BYTES:
            raise FrameError(f"name of {n} bytes (limit {MAX_NAME_BYTES})", "oversized")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("name is not UTF-8") from None

    def done(self) -> None:
        if self.i != len(self.buf):
            raise FrameError(f"{len(self.buf) - self.i} bytes left over in the metadata")


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > MAX_NAME_BYTES:
        raise ValueError(f"name of {len(b)} bytes (limit {MAX_NAME_BYTES})")
    return struct.pack("!H", len(b)) + b


def _pack_meta(kind: int, meta: dict) -> bytes:
    if kind == REQUEST:
        shape = tuple(int(d) for d in meta["shape"])
        if len(shape) > MAX_DIMS:
            raise ValueError(f"{len(shape)} dimensions (limit {MAX_DIMS})")
        return b"".join([
            _string(meta["split"]), _string(meta["bottleneck"]), _string(meta["coder"]), _string(meta["dtype"]),
            struct.pack("!B", len(shape)), struct.pack(f"!{len(shape)}I", *shape),
            struct.pack("!B", int(meta.get("want", WANT_NOTHING))), _string(meta.get("token", "")),
        ])
    if kind == REPLY:
        return _REPLY.pack(meta["t_recv_ns"], meta["t_start_ns"], meta["t_end_ns"], meta["t_reply_ns"],
                           meta["decode_s"], meta["batch"], meta["prediction"])
    if kind in (ERROR, BUSY):
        return _string(meta["reason"][:MAX_NAME_BYTES])
    if kind == PING:
        return struct.pack("!q", meta["t_send_ns"]) + _string(meta.get("token", ""))
    if kind == PONG:
        return struct.pack("!q", meta["t_server_ns"])
    if kind == STATS:
        return _string(meta.get("token", ""))
    if kind == COUNTERS:
        items = list(meta["counters"].items())[:MAX_COUNTERS]
        return struct.pack("!H", len(items)) + b"".join(_string(k) + struct.pack("!q", int(v)) for k, v in items)
    raise ValueError(f"unknown frame kind {kind}")


def _parse_meta(kind: int, buf: bytes) -> dict:
    r = _Reader(buf)
    if kind == REQUEST:
        meta = {"split": r.string(), "bottleneck": r.string(), "coder": r.string(), "dtype": r.string()}
        (nd,) = r.unpack("B")
        if nd > MAX_DIMS:
            raise FrameError(f"{nd} dimensions (limit {MAX_DIMS})", "oversized")
        meta["shape"] = r.unpack(f"{nd}I")
        (want,) = r.unpack("B")
        if want > WANT_OUTPUT:
            raise FrameError(f"unknown reply request {want}")
        meta["want"] = want
        meta["token"] = r.string()
    elif kind == REPLY:
        keys = ("t_recv_ns", "t_start_ns", "t_end_ns", "t_reply_ns", "decode_s", "batch", "prediction")
        meta = dict(zip(keys, _REPLY.unpack(r.take(_REPLY.size))))
    elif kind in (ERROR, BUSY):
        meta = {"reason": r.string()}
    elif kind == PING:
        (t,) = r.unpack("q")
        meta = {"t_send_ns": t, "token": r.string()}
    elif kind == PONG:
        (t,) = r.unpack("q")
        meta = {"t_server_ns": t}
    elif kind == STATS:
        meta = {"token": r.string()}
    elif kind == COUNTERS:
        (n,) = r.unpack("H")
        if n > MAX_COUNTERS:
            raise FrameError(f"{n} counters (limit {MAX_COUNTERS})", "oversized")
        meta = {"counters": {r.string(): r.unpack("q")[0] for _ in range(n)}}
    else:
        raise FrameError(f"unknown frame kind {kind}", "unknown_kind")
    r.done()
    return meta


# ---- frames


def encode_frame(kind: int, req_id: int, meta: dict, body: bytes = b"") -> bytes:
    """One frame as bytes (see the module doc)."""
    m = _pack_meta(kind, meta)
    return PREFIX.pack(MAGIC, VERSION, kind, len(m), req_id, len(body)) + m + body


def _recv_exact(sock: Readable, n: int, started: bool) -> bytearray:
    """Exactly ``n`` bytes (n is already bounded by the caller's limits). The buffer grows as
    bytes arrive, one chunk of at most :data:`CHUNK_BYTES` at a time: a stated length
    allocates nothing by itself."""
    buf = bytearray()
    chunk = bytearray(min(n, CHUNK_BYTES))
    view = memoryview(chunk)
    while len(buf) < n:
        k = sock.recv_into(view, min(n - len(buf), len(chunk)))
        if k == 0:
            raise ConnectionClosed(mid_frame=started or len(buf) > 0)
        buf += view[:k]
    return buf


def read_frame(sock: Readable, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               before_body: Callable[[int, int, dict], None] | None = None) -> Frame:
    """Read one frame from ``sock``. Raises :class:`FrameError` on anything malformed or over
    a limit (checked before the bytes are read), :class:`ConnectionClosed` at EOF; either
    carries ``req_id`` once a request's prefix was read.

    ``before_body(kind, req_id, meta)`` runs once the metadata is parsed and before the body
    is read: it may raise :class:`FrameError` (a wrong token, an unknown split) so that a
    frame that will be refused costs no more than its header."""
    magic, version, kind, meta_len, req_id, body_len = PREFIX.unpack(_recv_exact(sock, PREFIX.size, False))
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}", "bad_magic")
    if version != VERSION:
        raise FrameError(f"protocol version {version} (this side speaks {VERSION})", "bad_version", version)
    if kind not in KINDS:
        raise FrameError(f"unknown frame kind {kind}", "unknown_kind")
    try:
        if meta_len > MAX_META_BYTES:
            raise FrameError(f"metadata of {meta_len} bytes (limit {MAX_META_BYTES})", "oversized")
        if body_len > max_body_bytes:
            raise FrameError(f"body of {body_len} bytes (limit {max_body_bytes})", "oversized")
        meta = _parse_meta(kind, bytes(_recv_exact(sock, meta_len, True)))
        if before_body is not None:
            before_body(kind, req_id, meta)
        body = _recv_exact(sock, body_len, True) if body_len else b""
    except (FrameError, ConnectionClosed, FrameTimeout) as e:
        e.req_id = req_id if kind == REQUEST else None
        raise
    return Frame(kind=kind, req_id=req_id, meta=meta, body=body)
