"""The ranked table's one ordered column spec (:class:`Column`), and its values per point.

Every front end shows the same columns in this order (:meth:`View.columns
<splitimpera.report.view.View.columns>`): the terminal (which leaves out the columns of
highest ``priority`` first when it is too narrow), the HTML report and the dashboard only
format them. Values are SI (:func:`column_values`); the label names the display unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Index levels of the key, shown as columns.
KEY_COLUMNS = ("split", "bottleneck", "exit")


@dataclass(frozen=True)
class Column:
    """One column of the ranked table. ``key``: the column of :func:`column_values` (an index
    level for ``split``, ``bottleneck`` and ``exit``); ``label``: its header everywhere;
    ``unit``: the unit of the values (``s``, ``B``, ``J``, ``1`` for a fraction, ``""`` for
    text and counts); ``priority``: 0 is always shown, otherwise a narrow terminal leaves out
    the highest first."""

    key: str
    label: str
    unit: str = ""
    priority: int = 0

    @property
    def scale(self) -> float:
        """Factor from the SI value to the number the label's unit shows (ms, mJ, %)."""
        return {"s": 1e3, "J": 1e3, "1": 100.0}.get(self.unit, 1.0)


def uplink_parts(table: pd.DataFrame, rtt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``(propagation, transmit)`` seconds of each point's ``uplink_s``: RTT/2 where something
    is sent (with early exit, times the share of requests forwarded: the columns are the
    mixture's means), never more than the uplink itself; the rest is the bytes at the link's
    rate, the transport's round trips and retransmissions, waits for the medium."""
    up = table["uplink_s"].fillna(0.0).to_numpy(dtype=float) if "uplink_s" in table.columns else np.zeros(len(table))
    stay = 1.0 - table["exit_rate"].fillna(0.0).to_numpy(dtype=float) if "exit_rate" in table.columns else 1.0
    prop = np.where(up > 0, np.minimum(rtt_s / 2 * stay, up), 0.0)
    return prop, up - prop


def shows_accuracy(table: pd.DataFrame) -> bool:
    """Accuracy differs by point (measured, predicted, yours or nominal), not the full model's alone."""
    src = table["accuracy_source"] if "accuracy_source" in table.columns else pd.Series(dtype=object)
    return "accuracy" in table.columns and not src.isin(["full model", "unknown"]).all()


def column_spec(view) -> list[Column]:
    """The ordered columns of ``view``'s ranked table (see :meth:`View.columns`)."""
    t = view.table
    sim = view.simulated
    stat = view.statistic
    net, wl = view.network, view.workload
    cols = [Column("rank", "rank"), Column("split", "split")]
    if view.multi:
        cols.append(Column("bottleneck", "bottleneck"))
    if "config" in t.columns:
        cols.append(Column("config", "config"))
    if "exit" in (t.index.names or []):
        cols += [Column("exit", "exit τ"), Column("exit_rate", "exits", "1")]
    cols.append(Column("bytes_sent", "sent", "B", 4))
    if sim:
        cols.append(Column("device_wait_s", "dev wait ms", "s", 13))
    cols += [Column("device_compute_s", "device ms", "s"), Column("uplink_prop_s", "RTT/2 ms", "s", 5),
             Column("uplink_tx_s", "transmit ms", "s", 3)]
    if sim:
        cols.append(Column("server_wait_s", "srv wait ms", "s", 12))
    cols.append(Column("server_compute_s", "server ms", "s", 9))
    if wl is not None and wl.result_at == "device":
        cols.append(Column("downlink_s", "downlink ms", "s", 11))
    cols.append(Column("latency_s", "mean ms" if sim else "latency ms", "s"))
    if sim:  # the p95, and the percentile the limit applies to when it is another
        cols += [Column(f"latency_{p}_s", f"{p} ms", "s", 0 if p == stat or stat == "mean" else 7)
                 for p in dict.fromkeys(["p95", stat]) if p != "mean"]
    cols.append(Column("energy_j", "energy mJ", "J", 8))
    if net is not None and net.transport == "udp":
        cols.append(Column("frame_loss_ratio", "frames lost", "1", 10))
    if shows_accuracy(t):
        cols.append(Column("accuracy", "accuracy", "1"))
    cols.append(Column("reason", "verdict"))
    return cols


def column_values(view, table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows (points of ``view``) with every column of :func:`column_spec` by key,
    SI; ``reason`` is ``ok`` for a feasible point; absent columns are NaN."""
    out = pd.DataFrame(index=table.index)
    prop, tx = uplink_parts(table, view.network.rtt_s if view.network is not None else 0.0)
    for c in column_spec(view):
        if c.key in KEY_COLUMNS:
            out[c.key] = [str(p[table.index.names.index(c.key)]) for p in table.index]
        elif c.key == "uplink_prop_s":
            out[c.key] = prop
        elif c.key == "uplink_tx_s":
            out[c.key] = tx
        elif c.key == "reason":
            out[c.key] = np.where(table["feasible"].astype(bool), "ok", table["reason"].astype(str))
        else:
            out[c.key] = table[c.key] if c.key in table.columns else np.nan
    return out
