"""Link-rate traces: a CSV of ``(time_s, uplink_mbps[, downlink_mbps])`` that drives a link over time.

Format: a header row naming the columns (any order), then one row per change point; blank
lines and lines starting with ``#`` are ignored (say there where the trace comes from)::

    # synthetic: made up for the example
    time_s,uplink_mbps,downlink_mbps
    0,6.1,14.0
    1.0,5.4,12.5

Semantics (times in seconds from the start of the simulation, rates in Mbit/s):

* **Piecewise constant.** A row's rates hold from its ``time_s`` until the next row's; the
  last row's rates hold from then on (the trace does not loop: make it cover the simulated
  time, ``num_requests / rate_hz`` plus the drain).
* ``time_s`` starts at 0 and strictly increases; rates are finite and ≥ 0 (0 is an outage),
  the last row's uplink (and downlink) rate is > 0 so that every transfer ends.
* Without a ``downlink_mbps`` column the downlink keeps the profile's ``downlink_mbps``.
* **Analytic mean.** The analytic model (no time) uses the time-weighted mean rate over the
  trace's span ``[0, last time_s]``, each row weighted by the time until the next row; a
  one-row trace is its row. It must be > 0.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

TIME, UP, DOWN = "time_s", "uplink_mbps", "downlink_mbps"
COLUMNS = (TIME, UP, DOWN)


@dataclass(frozen=True)
class RateTrace:
    """A parsed trace: change times (s) and the rates (Mbit/s, as in the file) that start at them.

    Tuples, not arrays, so that profiles holding a trace stay comparable and hashable.
    ``downlink_mbps`` is None when the CSV has no downlink column.
    """

    time_s: tuple[float, ...]
    uplink_mbps: tuple[float, ...]
    downlink_mbps: tuple[float, ...] | None = None
    source: str = ""

    def rates_mbps(self, direction: str) -> tuple[float, ...] | None:
        """The rates of ``direction`` (``"up"`` or ``"down"``), Mbit/s; None when not traced."""
        return self.uplink_mbps if direction == "up" else self.downlink_mbps

    def rates_bps(self, direction: str) -> tuple[float, ...] | None:
        """The rates of ``direction``, bit/s; None when not traced."""
        r = self.rates_mbps(direction)
        return None if r is None else tuple(v * 1e6 for v in r)

    def mean_mbps(self, direction: str) -> float | None:
        """Time-weighted mean rate over ``[0, last time_s]``, Mbit/s (see the module docstring)."""
        r = self.rates_mbps(direction)
        if r is None:
            return None
        t = self.time_s
        if len(t) == 1 or all(v == r[0] for v in r[:-1]):
            return float(r[0])  # exactly, so that a constant trace is its constant rate
        return math.fsum(r[i] * (t[i + 1] - t[i]) for i in range(len(t) - 1)) / (t[-1] - t[0])

    @property
    def end_s(self) -> float:
        """Time of the last change point, seconds."""
        return self.time_s[-1]


def read_trace_csv(path: str | Path) -> RateTrace:
    """Parse and check a trace file; a problem raises ``ValueError`` with a one-line message
    naming the file (and the line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"trace file not found: {p}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the trace {p}: {e.__class__.__name__}") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{p}: empty trace (expected a header {TIME},{UP}[,{DOWN}] and rows)")
    header = [c.strip() for c in next(csv.reader([lines[0][1]]))]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ValueError(f"{p} line {lines[0][0]}: unknown column {unknown[0]!r} "
                         f"(expected {TIME}, {UP} and optionally {DOWN})")
    missing = [c for c in (TIME, UP) if c not in header]
    if missing:
        raise ValueError(f"{p} line {lines[0][0]}: missing column {missing[0]!r} (header: {','.join(header)})")
    if len(set(header)) != len(header):
        raise ValueError(f"{p} line {lines[0][0]}: a column appears twice")
    if len(lines) == 1:
        raise ValueError(f"{p}: the trace has a header but no rows")
    cols: dict[str, list[float]] = {c: [] for c in header}
    for lineno, ln in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([ln]))]
        if len(cells) != len(header):
            raise ValueError(f"{p} line {lineno}: {len(cells)} values for {len(header)} columns")
        for c, cell in zip(header, cells):
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{p} line {lineno}: {c} is not a number (got {cell!r})") from None
            if not math.isfinite(v):
                raise ValueError(f"{p} line {lineno}: {c} must be finite (got {cell!r})")
            if c != TIME and v < 0:
                raise ValueError(f"{p} line {lineno}: {c} must be >= 0 (got {cell})")
            cols[c].append(v)
    t = cols[TIME]
    if t[0] != 0:
        raise ValueError(f"{p} line {lines[1][0]}: the first {TIME} must be 0 (got {t[0]:g})")
    for k in range(1, len(t)):
        if t[k] <= t[k - 1]:
            raise ValueError(f"{p} line {lines[k + 1][0]}: {TIME} must increase ({t[k]:g} after {t[k - 1]:g})")
    tr = RateTrace(time_s=tuple(t), uplink_mbps=tuple(cols[UP]),
                   downlink_mbps=tuple(cols[DOWN]) if DOWN in cols else None, source=str(p))
    for direction, col in (("up", UP), ("down", DOWN)):
        r = tr.rates_mbps(direction)
        if r is None:
            continue
        if r[-1] <= 0:
            raise ValueError(f"{p} line {lines[-1][0]}: the last {col} must be > 0 (it holds from then on)")
        if tr.mean_mbps(direction) <= 0:
            raise ValueError(f"{p}: the time-weighted mean {col} must be > 0")
    return tr
