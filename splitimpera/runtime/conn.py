"""One client connection of ``serve``: a reader that keeps deadlines and a writer with a bounded outbox.

The reader (the connection's own thread) reads frames through :meth:`Connection.recv_into`,
which waits with ``poll`` against three deadlines: ``idle_timeout_s`` between frames,
``frame_timeout_s`` for a whole frame from its first byte (not per ``recv``: a client that
trickles one byte at a time is closed all the same), and, until the connection has shown
the token, ``handshake_timeout_s`` from accept.

Replies go through :meth:`Connection.post` into a bounded outbox that the connection's
writer thread sends: workers never block on a client's socket. A full outbox, or a send
that makes no progress for ``write_timeout_s``, closes the connection; the frames still in
the outbox are reported as not written to their callbacks.

Only the reader thread closes the socket (after the writer has finished): other threads
shut it down, which wakes the reader, so no thread is ever left polling a closed descriptor.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from . import wire

Done = Callable[[bool], None]  # told whether the frame reached the socket


@dataclass(frozen=True)
class Limits:
    """What one client may hold of a server (counts, seconds)."""

    max_connections: int = 256  # authenticated connections
    max_unauthenticated: int = 32  # connections that have not shown the token; the oldest is dropped for a new one
    handshake_timeout_s: float = 5.0  # to show the token (a first valid frame) after connecting
    idle_timeout_s: float = 300.0  # between frames
    frame_timeout_s: float = 30.0  # for a whole frame, from its first byte
    max_queue: int = 256  # requests waiting for a worker, all connections together; more are answered busy
    max_pending: int = 64  # requests of one connection queued or running; more are answered busy (one
    # client that floods cannot take the whole queue from the others)
    queue_timeout_s: float = 30.0  # a request still queued after this is answered expired, not run
    outbox_frames: int = 1024  # frames waiting to be written to one connection; more close it
    write_timeout_s: float = 10.0  # a send that makes no progress for this long closes the connection
    token_backoff_s: tuple[float, float] = (0.05, 2.0)  # wait before answering a wrong token: first, doubling to
    drain_timeout_s: float = 10.0  # on stop: the longest wait for queued requests and unwritten replies


class Connection:
    """An accepted socket (made non-blocking) and its writer thread; see the module doc."""

    def __init__(self, sock: socket.socket, peer: str, limits: Limits, needs_token: bool = True):
        self.sock, self.peer, self.limits = sock, peer, limits
        sock.setblocking(False)
        self.accepted = time.monotonic()
        self.authenticated = False
        self.handshake_deadline = self.accepted + limits.handshake_timeout_s
        self.needs_token = needs_token
        self.pending = 0  # requests of this connection queued or running
        self.failures: list[tuple[int, str, str]] = []  # (req_id, reason, message): answered last, then closed
        self.frame_counted = False  # the frame being read was counted as a request already
        self._idle_deadline = 0.0
        self._frame_deadline: float | None = None
        self._rpoll = select.poll()
        self._rpoll.register(sock, select.POLLIN)
        self._wpoll = select.poll()
        self._wpoll.register(sock, select.POLLOUT)
        self._cv = threading.Condition()
        self._outbox: deque[tuple[bytes, Done | None]] = deque()
        self._finishing = False
        self.aborted: str | None = None  # why the connection was cut (outbox_full, write_timeout, stopped …)
        self._writer = threading.Thread(target=self._write_loop, name="splitimpera-serve-writer", daemon=True)
        self._writer.start()

    # ---- reading (the connection's own thread only)

    def begin_frame(self) -> None:
        """The next bytes start a new frame: the idle deadline runs from now."""
        self._idle_deadline = time.monotonic() + self.limits.idle_timeout_s
        self._frame_deadline = None
        self.frame_counted = False

    def _deadline(self) -> tuple[float, str]:
        if self._frame_deadline is None:
            at, why = self._idle_deadline, "idle_timeout"
        else:
            at, why = self._frame_deadline, "frame_timeout"
        if not self.authenticated and self.handshake_deadline < at:
            at, why = self.handshake_deadline, "handshake_timeout"
        return at, why

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        """Like ``socket.recv_into``; raises :class:`wire.FrameTimeout` past a deadline and
        returns 0 (end of stream) once the connection was shut down."""
        while True:
            at, why = self._deadline()
            left = at - time.monotonic()
            if left <= 0:
                limit = {"idle_timeout": self.limits.idle_timeout_s, "frame_timeout": self.limits.frame_timeout_s,
                         "handshake_timeout": self.limits.handshake_timeout_s}[why]
                raise wire.FrameTimeout(f"{why.replace('_', ' ')} ({limit:g} s)", why, self._frame_deadline is not None)
            if not self._rpoll.poll(max(1, int(left * 1000) + 1)):
                continue
            try:
                k = self.sock.recv_into(buffer, nbytes)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return 0
            if k and self._frame_deadline is None:
                self._frame_deadline = time.monotonic() + self.limits.frame_timeout_s
            return k

    # ---- pending requests

    def add_pending(self) -> None:
        with self._cv:
            self.pending += 1

    def settle(self) -> None:
        """One of this connection's queued requests has its outcome."""
        with self._cv:
            self.pending -= 1
            self._cv.notify_all()

    def wait_settled(self, timeout_s: float) -> bool:
        """Wait until no request of this connection is queued or running (or it was cut)."""
        end = time.monotonic() + timeout_s
        with self._cv:
            while self.pending > 0 and self.aborted is None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def stop_reading(self) -> None:
        """Wake the reader and make it stop (a queued request of this connection was refused):
        it answers the connection's failures after its earlier requests; the writer goes on."""
        self._shutdown(socket.SHUT_RD)

    # ---- writing

    def post(self, frame: bytes, done: Done | None = None) -> bool:
        """Queue ``frame`` for the writer, never blocking. False (and ``done(False)``) when the
        connection is cut or its outbox is full, which cuts it."""
        with self._cv:
            if self.aborted is None and not self._finishing and len(self._outbox) < self.limits.outbox_frames:
                self._outbox.append((frame, done))
                self._cv.notify_all()
                return True
            full = self.aborted is None and not self._finishing
        if full:
            self.abort("outbox_full")
        if done is not None:
            done(False)
        return False

    def _send_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if not self._wpoll.poll(int(self.limits.write_timeout_s * 1000)):
                self.abort("write_timeout")
                return False
            if self.aborted is not None:
                return False
            try:
                k = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self.abort("peer_gone")
                return False
            view = view[k:]
        return True

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._outbox and not self._finishing and self.aborted is None:
                    self._cv.wait()
                if self.aborted is not None or not self._outbox:
                    left, self._outbox = list(self._outbox), deque()
                    break
                frame, done = self._outbox.popleft()
            ok = self._send_all(frame)
            if done is not None:
                done(ok)
        for _, done in left:  # cut: what was not written is reported as such
            if done is not None:
                done(False)

    # ---- ending

    def _shutdown(self, how: int) -> None:
        try:
            self.sock.shutdown(how)
        except OSError:
            pass

    def abort(self, why: str) -> None:
        """Cut the connection from any thread: both directions shut, the outbox dropped."""
        with self._cv:
            if self.aborted is None:
                self.aborted = why
            self._cv.notify_all()
        self._shutdown(socket.SHUT_RDWR)

    def finish(self, timeout_s: float) -> None:
        """From the reader thread, last: let the writer send what is queued (within
        ``timeout_s``), then close the socket."""
        with self._cv:
            self._finishing = True
            self._cv.notify_all()
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            self.abort("write_timeout")
            self._writer.join()
        self._shutdown(socket.SHUT_RDWR)
        self.sock.close()
