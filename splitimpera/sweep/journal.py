"""The resume journal of a sweep written to a folder, and the folder's files.

Rows are written as points finish (``.parts/``, consolidated into ``points.parquet`` and
``summary.parquet`` at the end), so an interrupted sweep resumes where it stopped: a point
whose ``point_key`` is on disk with a final status (``ok`` or ``invalid``) is not run again.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..atomic import atomic_write
from ..errors import UserError
from ..results.sweep import SWEEP_META
from .spec import Sweep

log = logging.getLogger(__name__)

STATUSES = ("ok", "invalid", "error")  # a point's outcome; ok and invalid are final, error is retried
POINT_COLUMNS = ["point", "point_key"]
SUMMARY_COLUMNS = [
    "status", "error", "num_points", "num_feasible", "recommended_split", "recommended_bottleneck",
    "latency_s", "latency_qos_s", "margin_latency_s", "energy_j", "accuracy", "bytes_sent",
    "closest", "to_change",
]
FILES = {"table": "points.parquet", "summary": "summary.parquet", "summary_csv": "summary.csv",
         "meta": SWEEP_META, "spec": "sweep.yaml", "base": "base.yaml", "parts": ".parts"}
FLUSH_EVERY_S = 2.0  # an interrupted sweep loses at most this much finished work


@dataclass
class Chunk:
    """What a chunk of points gives back: design-point rows and one summary row per point."""

    table: pd.DataFrame | None
    summary: list[dict]


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_final(folder: Path, table: pd.DataFrame, summary: pd.DataFrame, meta: dict, base_yaml: str) -> None:
    """Write a finished sweep's files into ``folder`` (see :data:`FILES`), each atomically."""
    try:
        atomic_write(folder / FILES["table"], _parquet_bytes(table))
        atomic_write(folder / FILES["summary"], _parquet_bytes(summary))
        atomic_write(folder / FILES["summary_csv"], summary.to_csv(index=False))
        atomic_write(folder / FILES["meta"], json.dumps(meta, indent=2, default=str) + "\n")
        atomic_write(folder / FILES["base"], base_yaml)
    except OSError as e:
        raise UserError(f"cannot write the sweep's results: {e.strerror or e}", source=str(folder)) from None


def _axis_columns(sweep: Sweep) -> dict[str, Callable[[Any], Any]]:
    """Per axis, how its values go into a table column: numbers stay numbers, names stay
    strings, and an axis mixing kinds (or giving mappings) is written as JSON text."""
    out = {}
    for axis in sweep.axes:
        vals = [v[axis] for v in sweep.values]
        if all(isinstance(x, bool) for x in vals) or all(isinstance(x, str) for x in vals):
            out[axis] = lambda x: x
        elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            out[axis] = float if any(isinstance(x, float) for x in vals) else int
        else:
            out[axis] = lambda x: json.dumps(x, sort_keys=True)
    return out


class Journal:
    """Finished points on disk: ``.parts/`` files written as points finish, read back on resume.

    A part is a pair of Parquet files (design-point rows, then summary rows); a point counts as
    finished when its summary row is on disk. ``folder`` None: kept in memory only."""

    def __init__(self, folder: Path | None, keys: list[str], flush_s: float = FLUSH_EVERY_S):
        self.folder, self.flush_s = folder, flush_s
        self.current = dict(zip(keys, range(len(keys))))
        self.tables: list[pd.DataFrame] = []
        self.summaries: list[pd.DataFrame] = []
        self.pending_t: list[pd.DataFrame] = []
        self.pending_s: list[dict] = []
        self.last_flush = time.monotonic()
        self.seq = 0

    def load(self) -> set[str]:
        """Read what an earlier run of this sweep finished; return the point keys not to run again."""
        if self.folder is None:
            return set()
        tabs, sums = [], []
        for name, into in ((FILES["table"], tabs), (FILES["summary"], sums)):
            if (self.folder / name).is_file():
                into.append(pd.read_parquet(self.folder / name))
        parts = self.folder / FILES["parts"]
        if parts.is_dir():
            for p in sorted(parts.glob("*.summary.parquet")):
                sums.append(pd.read_parquet(p))
            for p in sorted(parts.glob("*.points.parquet")):
                tabs.append(pd.read_parquet(p))
        if not sums:
            return set()
        s = pd.concat(sums, ignore_index=True).drop_duplicates("point_key", keep="last")
        s = s[s["point_key"].isin(self.current.keys()) & s["status"].isin(["ok", "invalid"])]
        done = set(s["point_key"])
        stale = sum(len(x) for x in sums) - len(s)
        if stale:
            log.info("%s: %d stored summary rows are of other points or base scenarios; ignored", self.folder, stale)
        if tabs:
            t = pd.concat(tabs, ignore_index=True)
            t = t[t["point_key"].isin(done)].drop_duplicates(["point_key", "split", "bottleneck"], keep="last")
            t["point"] = t["point_key"].map(self.current)
            self.tables.append(t)
        s = s.assign(point=s["point_key"].map(self.current))
        self.summaries.append(s)
        return done

    def add(self, chunk: Chunk) -> None:
        """Take a finished chunk's rows; they reach the disk at the next :meth:`flush`."""
        if chunk.table is not None:
            self.pending_t.append(chunk.table)
        self.pending_s.extend(chunk.summary)

    def flush(self, force: bool = False) -> None:
        """Write the rows taken since the last flush as one part, at most every ``flush_s``
        seconds unless ``force``."""
        if not self.pending_s or (not force and time.monotonic() - self.last_flush < self.flush_s):
            return
        t = pd.concat(self.pending_t, ignore_index=True) if self.pending_t else None
        s = pd.DataFrame(self.pending_s)
        if self.folder is not None:
            parts = self.folder / FILES["parts"]
            stem = f"{time.time_ns():020d}-{self.seq:05d}-{secrets.token_hex(3)}"
            try:
                if t is not None:  # rows first: a summary row on disk means its rows are there
                    atomic_write(parts / f"{stem}.points.parquet", _parquet_bytes(t))
                atomic_write(parts / f"{stem}.summary.parquet", _parquet_bytes(s))
            except OSError as e:
                raise UserError(f"cannot write the sweep's results: {e.strerror or e}", source=str(parts)) from None
            self.seq += 1
        if t is not None:
            self.tables.append(t)
        self.summaries.append(s)
        self.pending_t, self.pending_s = [], []
        self.last_flush = time.monotonic()

    def result(self, sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The consolidated table and summary, in point order, with the axis columns."""
        self.flush(force=True)
        enc = _axis_columns(sweep)
        axes = pd.DataFrame({a: [enc[a](v[a]) for v in sweep.values] for a in sweep.axes},
                            index=pd.Index(range(len(sweep.values)), name="point"))
        s = pd.concat(self.summaries, ignore_index=True) if self.summaries else pd.DataFrame(columns=POINT_COLUMNS)
        s = s.reindex(columns=POINT_COLUMNS + SUMMARY_COLUMNS).sort_values("point", kind="stable")
        s = s.join(axes, on="point")[POINT_COLUMNS + sweep.axes + SUMMARY_COLUMNS].reset_index(drop=True)
        s["point"] = s["point"].astype("int64")
        for col in ("num_points", "num_feasible"):
            s[col] = s[col].astype("Int64")
        s["bytes_sent"] = s["bytes_sent"].astype("Int64")
        tabs = [t for t in self.tables if len(t)]
        if tabs:
            t = pd.concat(tabs, ignore_index=True).sort_values("point", kind="stable")
            rest = [c for c in t.columns if c not in POINT_COLUMNS + sweep.axes]  # read back: axes again
            t = t[POINT_COLUMNS + rest].join(axes, on="point")[POINT_COLUMNS + sweep.axes + rest].reset_index(drop=True)
            t["rank"] = t["rank"].astype("Int64")
        else:
            t = pd.DataFrame(columns=POINT_COLUMNS + sweep.axes + ["split", "bottleneck"])
        return t, s

    def clean(self) -> None:
        """Remove the parts, once the consolidated files are written."""
        if self.folder is None:
            return
        parts = self.folder / FILES["parts"]
        if parts.is_dir():
            for p in parts.iterdir():
                p.unlink(missing_ok=True)
            parts.rmdir()
