"""The wire format of the real split run: length-prefixed binary frames over TCP, no pickle.

Every frame starts with a fixed 20-byte prefix (network byte order)::

    magic     4 s   b"SPIM"
    version   B     1
    kind      B     1 request, 2 reply, 3 error, 4 ping, 5 pong
    meta_len  H     bytes of the metadata block that follows (≤ MAX_META_BYTES)
    req_id    Q     request id (the device's counter; pings use their own)
    body_len  I     bytes of the body after the metadata (≤ the reader's max_body_bytes)

then ``meta_len`` bytes of metadata and ``body_len`` bytes of body. Metadata by kind:

* **request**: ``split`` (str), ``bottleneck`` (str), ``coder`` (str), ``dtype`` (str, the
  symbol type: ``f32``, ``f16`` or ``u<bits>``), ``shape`` (u8 count, then u32 each),
  ``want`` (B: 0 nothing back but the timestamps, :data:`WANT_PREDICTION` the top-1 class,
  :data:`WANT_OUTPUT` also the tail's output), ``token`` (str, empty without one). Body: the
  payload, exactly the bytes :meth:`~splitimpera.accuracy.bottlenecks.Bottleneck.encode` writes.
* **reply**: ``t_recv_ns``, ``t_start_ns``, ``t_end_ns``, ``t_reply_ns`` (q, the server's
  monotonic clock: frame fully read, batch started, batch finished, reply written),
  ``decode_s`` (d), ``batch`` (H), ``prediction`` (q, −1 when not asked). Body: empty, or
  with :data:`WANT_OUTPUT` the tail's output for this request as float32 little-endian.
* **error**: ``reason`` (str). The server closes the connection after it.
* **ping**: ``t_send_ns`` (q, the device's clock), ``token`` (str). **pong**: ``t_server_ns`` (q).

A string is a u16 length then UTF-8 bytes (≤ :data:`MAX_NAME_BYTES`). Anything that does not
parse (bad magic or version, unknown kind, a length over its limit, a truncated block, bytes
left over) raises :class:`FrameError`; the reader never allocates more than the limits allow.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Callable

MAGIC = b"SPIM"
VERSION = 1
REQUEST, REPLY, ERROR, PING, PONG = 1, 2, 3, 4, 5
WANT_NOTHING, WANT_PREDICTION, WANT_OUTPUT = 0, 1, 2
KINDS = {REQUEST: "request", REPLY: "reply", ERROR: "error", PING: "ping", PONG: "pong"}
PREFIX = struct.Struct("!4sBBHQI")
MAX_META_BYTES = 4096
MAX_NAME_BYTES = 256
MAX_DIMS = 8
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_REPLY = struct.Struct("!qqqqdHq")


class FrameError(ValueError):
    """A frame that does not parse; ``reason`` is a short tag for counters."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


class ConnectionClosed(Exception):
    """The peer closed the connection; ``mid_frame`` when it did so inside a frame."""

    def __init__(self, mid_frame: bool):
        super().__init__("connection closed" + (" mid-frame" if mid_frame else ""))
        self.mid_frame = mid_frame


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
    if kind == ERROR:
        return _string(meta["reason"][:MAX_NAME_BYTES])
    if kind == PING:
        return struct.pack("!q", meta["t_send_ns"]) + _string(meta.get("token", ""))
    if kind == PONG:
        return struct.pack("!q", meta["t_server_ns"])
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
    elif kind == ERROR:
        meta = {"reason": r.string()}
    elif kind == PING:
        (t,) = r.unpack("q")
        meta = {"t_send_ns": t, "token": r.string()}
    elif kind == PONG:
        (t,) = r.unpack("q")
        meta = {"t_server_ns": t}
    else:
        raise FrameError(f"unknown frame kind {kind}", "unknown_kind")
    r.done()
    return meta


# ---- frames


def encode_frame(kind: int, req_id: int, meta: dict, body: bytes = b"") -> bytes:
    """One frame as bytes (see the module doc)."""
    m = _pack_meta(kind, meta)
    return PREFIX.pack(MAGIC, VERSION, kind, len(m), req_id, len(body)) + m + body


def _recv_exact(sock: socket.socket, n: int, started: bool) -> bytearray:
    """Exactly ``n`` bytes (n is already bounded by the caller's limits), read in place."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionClosed(mid_frame=started or got > 0)
        got += k
    return buf


def read_frame(sock: socket.socket, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               before_body: Callable[[int, dict], None] | None = None) -> Frame:
    """Read one frame from ``sock``. Raises :class:`FrameError` on anything malformed or over
    a limit (checked before the bytes are read), :class:`ConnectionClosed` at EOF.

    ``before_body(kind, meta)`` runs once the metadata is parsed and before the body is
    read: it may raise :class:`FrameError` (a wrong token, an unknown split) so that a
    frame that will be refused costs no more than its header."""
    magic, version, kind, meta_len, req_id, body_len = PREFIX.unpack(_recv_exact(sock, PREFIX.size, False))
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}", "bad_magic")
    if version != VERSION:
        raise FrameError(f"protocol version {version} (this side speaks {VERSION})", "bad_version")
    if kind not in KINDS:
        raise FrameError(f"unknown frame kind {kind}", "unknown_kind")
    if meta_len > MAX_META_BYTES:
        raise FrameError(f"metadata of {meta_len} bytes (limit {MAX_META_BYTES})", "oversized")
    if body_len > max_body_bytes:
        raise FrameError(f"body of {body_len} bytes (limit {max_body_bytes})", "oversized")
    meta = _parse_meta(kind, bytes(_recv_exact(sock, meta_len, True)))
    if before_body is not None:
        before_body(kind, meta)
    body = _recv_exact(sock, body_len, True) if body_len else b""
    return Frame(kind=kind, req_id=req_id, meta=meta, body=body)
