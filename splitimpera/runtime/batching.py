"""The server's request queue: bounded, with a deadline per request and dynamic batches.

A free worker takes up to ``max_batch`` queued requests *of the same split, bottleneck and
coder* (the head of the queue decides), after waiting, when the queue is short, until the
oldest has waited ``batch_timeout_ns`` (as the simulation's server does). The queue holds at
most ``max_len`` requests: :meth:`BatchQueue.put` answers ``busy`` beyond that (and
``draining`` once the server is stopping) instead of growing. A request that waited more
than ``queue_timeout_s`` is handed back as expired, not run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Protocol


class Queued(Protocol):
    split: str
    bottleneck: str
    coder: str
    t_recv_ns: int  # on the batching clock
    t_queued: float  # time.monotonic() when queued


class BatchQueue:
    """See the module doc. ``running`` counts requests taken and not yet reported :meth:`done`."""

    def __init__(self, max_len: int, max_batch: int, batch_timeout_ns: int, queue_timeout_s: float,
                 clock_ns: Callable[[], int] = time.monotonic_ns):
        self.max_len, self.max_batch, self.batch_timeout_ns = max_len, max_batch, batch_timeout_ns
        self.queue_timeout_s, self.clock_ns = queue_timeout_s, clock_ns
        self._q: deque = deque()
        self._cv = threading.Condition()
        self.running = 0
        self.draining = False
        self.stopped = False

    def __len__(self) -> int:
        return len(self._q)

    def put(self, item: Queued) -> str | None:
        """Queue ``item``; None when queued, else why not (``busy``, ``draining``)."""
        with self._cv:
            if self.draining or self.stopped:
                return "draining"
            if len(self._q) >= self.max_len:
                return "busy"
            self._q.append(item)
            self._cv.notify()
            return None

    def take(self) -> tuple[list, list] | None:
        """``(batch, expired)``: the next batch (maybe empty) and the requests that waited too
        long; None once stopped. Blocks while there is nothing to take."""
        with self._cv:
            while True:
                while not self._q:
                    if self.stopped:
                        return None
                    self._cv.wait(0.5)
                if self.max_batch > 1 and self.batch_timeout_ns > 0:
                    deadline = self._q[0].t_recv_ns + self.batch_timeout_ns
                    while 0 < len(self._q) < self.max_batch and not self.stopped and not self.draining:
                        left = deadline - self.clock_ns()
                        if left <= 0:
                            break
                        self._cv.wait(left / 1e9)
                if self._q:  # another worker may have taken everything while this one waited
                    break
            now = time.monotonic()
            expired = [it for it in self._q if now - it.t_queued > self.queue_timeout_s]
            if expired:
                gone = set(map(id, expired))
                self._q = deque(it for it in self._q if id(it) not in gone)
            batch, keep = [], deque()
            while self._q and len(batch) < self.max_batch:
                it = self._q.popleft()
                first = batch[0] if batch else it
                (batch if (it.split, it.bottleneck, it.coder) == (first.split, first.bottleneck, first.coder)
                 else keep).append(it)
            self._q.extendleft(reversed(keep))
            self.running += len(batch) + len(expired)
            return batch, expired

    def done(self, n: int) -> None:
        """``n`` taken requests have their outcome."""
        with self._cv:
            self.running -= n
            self._cv.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Refuse new requests and wait (≤ ``timeout_s``) until none is queued or running."""
        end = time.monotonic() + timeout_s
        with self._cv:
            self.draining = True
            self._cv.notify_all()
            while (self._q or self.running) and (left := end - time.monotonic()) > 0:
                self._cv.wait(min(left, 0.05))
            return not self._q and not self.running

    def stop(self) -> list:
        """Stop; returns what was still queued (the caller answers it)."""
        with self._cv:
            self.stopped = True
            left, self._q = list(self._q), deque()
            self._cv.notify_all()
            return left
