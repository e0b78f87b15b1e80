"""The dashboard's tables: the ranking of :func:`~splitimpera.whatif.ranked_view` (the column
spec of :meth:`View.columns <splitimpera.report.view.View.columns>`, then the dashboard's
details) with the terminal's number formats."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import whatif
from ..accuracy.predictors import is_predicted
from ..plain import human_bytes, num
from ..report.view import View, accuracy_footnote, accuracy_text, compute_error_sentence
from ..results.run import Result


def _ms_cell(v) -> str:
    """A time in ms as the terminal writes it (``report.text``): 3 significant digits, ``—`` for
    nothing (0, no value), ``∞`` for unbounded (an overloaded resource)."""
    if isinstance(v, str):
        return v
    return "—" if v is None or pd.isna(v) or v == 0 else num(v)


def _num_cell(v) -> str:
    return v if isinstance(v, str) else num(v)


def _bytes_cell(v) -> str:
    return "—" if v is None or pd.isna(v) else human_bytes(v)


def _cell_formats(df: pd.DataFrame, units: dict | None = None) -> dict:
    """Column → formatter of the cells' text, the terminal's: bytes ``65.5 kB``, times ``38.5``,
    ``—`` and ``∞``, energies and percentages to 3 significant digits. ``units``: label → unit
    of the ranked table's columns (:meth:`View.columns`); other columns by their label's unit.
    Only the text changes: the values stay numbers, so a column sorts by value."""
    units = units or {}
    fmt = {}
    for c in df.columns:
        if df[c].dtype == object:  # already text (an accuracy with its band and mark)
            continue
        unit = units.get(c)
        if unit == "B" or c == "sent B":
            fmt[c] = _bytes_cell
        elif c == "Δ ms" or c == "± ms":
            fmt[c] = _num_cell
        elif unit == "s" or c.endswith(" ms"):
            fmt[c] = _ms_cell
        elif unit in ("J", "1") or c.endswith((" mJ", " %")):
            fmt[c] = _num_cell
    return fmt


def styled(df: pd.DataFrame, styler=None, units: dict | None = None):
    """``df`` (or its ``styler``) with the terminal's number formats (:func:`_cell_formats`).
    Streamlit shows a Styler's text for a column whose config sets no ``format``, which is why
    :func:`_column_config` sets none for these columns."""
    return (df.style if styler is None else styler).format(_cell_formats(df, units), na_rep="—")


def column_config(df: pd.DataFrame, units: dict | None = None) -> dict:
    """Column widths and kinds; the number formats are the Styler's (:func:`styled`)."""
    fmt = {c: st.column_config.NumberColumn(c, width="small") for c in _cell_formats(df, units)}
    if "sent B" in df.columns:
        fmt["sent B"] = st.column_config.NumberColumn("sent", width="small")
    fmt["rank"] = st.column_config.NumberColumn("rank", format="%d", width="small")
    fmt["verdict"] = st.column_config.TextColumn("verdict", width="medium")
    if "Pareto" in df.columns:
        fmt["Pareto"] = st.column_config.CheckboxColumn("Pareto", width="small")
    return fmt


# The ranking's columns that fit a laptop's pane; "All columns" shows the rest.
NARROW_COLUMNS = ("rank", "config", "exits", "sent", "device ms", "RTT/2 ms", "transmit ms", "server ms", "latency ms",
                  "mean ms", "p50 ms", "p95 ms", "p99 ms", "± ms", "tie", "accuracy", "energy mJ", "verdict")


def ranked_table(res: Result, view: View) -> None:
    """:func:`whatif.ranked_view`, the recommended point highlighted; the bottleneck column only
    when several are ranked (with several, first the best split of each)."""
    if view.multi:
        st.markdown("**Best split per bottleneck** (its joint rank; the closest split when none meets the QoS)")
        best = whatif.best_view(res)
        st.dataframe(styled(best), column_config=column_config(best), placeholder="—")
        st.markdown("**All design points, ranked jointly**")
    df = whatif.ranked_view(res)
    rec = view.recommended
    if not view.multi:
        df = df.droplevel("bottleneck")
        rec = None if rec is None else (rec[0] if len(rec) == 2 else (rec[0], rec[2]))
    predicted = "accuracy from" in df.columns and df["accuracy from"].map(is_predicted).any()
    if predicted:  # like the terminal and the report: the band, and * predicted, not measured
        band = df["accuracy ± %"] / 100 if "accuracy ± %" in df.columns else [None] * len(df)
        df["accuracy"] = [("" if pd.isna(a) else accuracy_text(a / 100, src, unit="", band=b))
                          for a, src, b in zip(df["accuracy"], df["accuracy from"], band)]
    wide = st.toggle("All columns", key="wide_ranking", help="the queueing waits, downlink, link load, frames lost, "
                     "FLOPs share, where each accuracy comes from and the Pareto front")
    order = None if wide else [c for c in df.columns if c in NARROW_COLUMNS]
    units = {c.label: c.unit for c in view.columns()}
    table = styled(df, df.style.apply(
        lambda row: ["background-color: #fff4d6; font-weight: 600" if row.name == rec else
                     ("color: #888" if row["verdict"] != "ok" else "") for _ in row], axis=1), units)
    config = column_config(df, units)
    if df["accuracy"].dtype == object if "accuracy" in df.columns else False:
        config["accuracy"] = st.column_config.TextColumn("accuracy", width="small")
    st.dataframe(table, column_config=config, height=min(38 + 35 * len(df), 820), placeholder="—",
                 column_order=order)
    if predicted:
        st.caption(accuracy_footnote(df["accuracy from"]))
    sc = res.scenario
    modes = res.meta.get("compute") or {}
    err = compute_error_sentence(view, modes, sc.device.name, sc.server.name)
    if modes.get("device"):
        st.caption(f"Compute: {sc.device.name} {modes['device']}; {sc.server.name} {modes['server']}. {err}")
    st.caption(f"Feasible {'design points' if view.multi else 'splits'} by rank (highlighted: the recommended one), "
               "then the others, closest first. Split: the torch.fx node after which the model is cut. "
               "FLOPs: 1 per multiply-add.")
