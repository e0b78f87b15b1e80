"""The one view of a result that every front end renders: terminal, HTML report, dashboard.

A :class:`View` is built from a :class:`~splitimpera.results.run.Result` (:meth:`View.of`),
run now or read from a folder, and answers what the front ends show:
the verdict (:meth:`View.verdict`), the ranked rows, the latency stages, what would have to
change, and the best split per bottleneck. Renderers only format what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config.hardware import NetworkProfile
from ..config.scenario import QoSSpec, WorkloadSpec
from ..plain import flops_text, human, human_bytes, num
from ..accuracy.predictors import METHODS, is_predicted
from ..qos import best_per_bottleneck, closest, overloaded
from ..ranking import LATENCY_COLUMN
from .columns import Column, column_spec, column_values, uplink_parts

# Latency stages of a request, in order, with their display names.
STAGES = [("device_wait_s", "device wait"), ("device_compute_s", "device compute"), ("uplink_s", "uplink"),
          ("server_wait_s", "server wait"), ("server_compute_s", "server compute"), ("downlink_s", "downlink")]


# How an accuracy figure is marked by where it comes from, and the footnote of each mark.
ACCURACY_MARKS = {"user": " u", "full model (nominal)": " n"}
PREDICTED_MARK = "*"
ACCURACY_NOTES = {" u": "u: from your accuracy CSV (bottleneck.accuracy_csv)",
                  " n": "n: nominal sizes, the full model's accuracy assumed (not measured)"}


def _mark(source) -> str:
    return PREDICTED_MARK if is_predicted(source) else ACCURACY_MARKS.get(source, "")


def accuracy_text(acc: float, source=None, digits: int = 1, unit: str = " %", band=None) -> str:
    """``acc`` (a fraction) in percent, marked by ``source`` (``97.5 %*``: predicted), with
    ``band`` (a fraction, the predictor's leave-one-split-out error) as ``±1.2``; "—" when
    unknown."""
    if acc is None or pd.isna(acc):
        return "—"
    pm = f" ±{band * 100:.{digits}f}" if band is not None and not pd.isna(band) else ""
    return f"{acc * 100:.{digits}f}{pm}{unit}{_mark(source)}"


def accuracy_footnote(sources) -> str:
    """The footnotes of the marks :func:`accuracy_text` puts on accuracies from ``sources``;
    "" when none is marked."""
    notes = {}
    for s in sources:
        if is_predicted(s):
            m = s[len("predicted ("):-1]
            label = METHODS[m].label if m in METHODS else m
            notes.setdefault(PREDICTED_MARK, f"* predicted ({label}), not measured; ± its leave-one-split-out "
                                             "error on the measured splits")
        elif s in ACCURACY_MARKS:
            notes.setdefault(ACCURACY_MARKS[s], ACCURACY_NOTES[ACCURACY_MARKS[s]])
    return "; ".join(notes.values())


# The breakdown's stages (:meth:`View.stages`): the uplink split into its propagation (RTT/2,
# where something is sent) and the rest (bytes at the link's rate, transport rounds, waits).
UPLINK_PARTS = ("uplink propagation", "uplink transmit")
STAGE_LABELS = [label for _, label in STAGES[:2]] + list(UPLINK_PARTS) + [label for _, label in STAGES[3:]]
# One colour per stage in every front end (the HTML report's plots and the dashboard's charts),
# whichever stages a result shows.
STAGE_COLOURS = dict(zip(STAGE_LABELS, ["#1f77b4", "#ff7f0e", "#98df8a", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]))


def compute_error_sentence(view: "View", modes: dict, device: str, server: str) -> str:
    """One sentence on the compute model's error band at the recommended point and the ties in
    the ranking it causes (:func:`splitimpera.qos.mark_ties`); "" when the table has no band.
    ``modes``: the result's ``compute`` meta (which model each side used and its error, %)."""
    t = view.table
    if view.recommended is None:
        return ""
    stated = [f"{name} ±{num(modes[k])} %" for name, k in ((device, "device_error_pct"), (server, "server_error_pct"))
              if modes.get(k) is not None]
    if not stated:
        return "compute error: neither profile states one (compute.error_pct); ties not checked"
    missing = [name for name, k in ((device, "device_error_pct"), (server, "server_error_pct"))
               if modes.get(k) is None]
    if missing:
        stated.append(f"{missing[0]} none stated (counted as 0)")
    rec = t.loc[view.recommended]
    err = float(rec["latency_err_s"])
    ties = t[t["tie"].astype(bool)].sort_values("rank")
    names = ", ".join(view.label(p) for p in ties.index[:5]) + (", …" if len(ties) > 5 else "")
    objective = view.qos.objective
    where = (f"ties not checked (the ranking is by {objective}, not latency)" if objective != "latency" else
             f"{len(ties)} point{'s' if len(ties) > 1 else ''} ranked below it ({names}) closer than the error of "
             "the compute that differs: a tie, measure before choosing (`splitimpera calibrate --for-model`)"
             if len(ties) else "no point ranked below it is closer than the error of the compute that differs")
    return (f"compute model error {', '.join(stated)}: the recommended point's {view.statistic} "
            f"{num(float(rec['latency_qos_s']) * 1e3)} ms "
            f"± {num(err * 1e3)} ms; {where}")


@dataclass(frozen=True)
class Verdict:
    """The answer in words. ``ok``: a point meets the QoS; ``headline``: one sentence;
    ``details``: further sentences (runners-up, counts); ``closest``: when nothing meets the
    QoS, ``(label, reason, tips)`` for the nearest points."""

    ok: bool
    headline: str
    details: list[str] = field(default_factory=list)
    closest: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def text(self) -> str:
        lines = [self.headline, *self.details]
        for label, reason, tips in self.closest:
            lines.append(f"  {label}: {reason}" + (f" — would pass with {'; or '.join(tips)}" if tips else ""))
        return "\n".join(lines)


@dataclass(frozen=True)
class View:
    """What the front ends show of one ranked design-point table.

    ``table`` is indexed by ``(split, bottleneck)`` with the ranking columns
    (:func:`~splitimpera.qos.rank`); ``simulated``: the latency columns are simulation means
    (percentiles exist); ``advice``: what would have to change, decided with the ranking
    (point → tips, closest first); ``result``: the :class:`~splitimpera.results.run.Result`
    shown, when the view was made from one (:meth:`of`).
    """

    table: pd.DataFrame
    qos: QoSSpec
    network: NetworkProfile | None = None
    simulated: bool = False
    name: str = ""
    workload: WorkloadSpec | None = None

    advice: dict = field(default_factory=dict)
    result: object | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, result) -> "View":
        """The view of a :class:`~splitimpera.results.run.Result` (run now or read from a folder)."""
        sc = result.scenario
        return cls(result.table, sc.qos, sc.network, result.simulated, sc.name, sc.workload, result.advice, result)

    # -- the key -------------------------------------------------------------------------------

    @property
    def bottlenecks(self) -> list[str]:
        return list(dict.fromkeys(self.table.index.get_level_values("bottleneck")))

    @property
    def multi(self) -> bool:
        """More than one bottleneck: points are named by split and bottleneck."""
        return len(self.bottlenecks) > 1

    def label(self, point) -> str:
        split, bottleneck = point[0], point[1]
        text = f"{split} · {bottleneck}" if self.multi else str(split)
        if len(point) > 2 and str(point[2]) != "none":  # early exit at τ
            text += f" · EE τ={point[2]}"
        return text

    @property
    def recommended(self):
        r = self.table["rank"]
        hit = r[r == 1]
        return None if hit.empty else tuple(map(str, hit.index[0]))

    # -- what the QoS applies to ------------------------------------------------------------------

    @property
    def statistic(self) -> str:
        return self.qos.latency_statistic

    @property
    def latency_column(self) -> str:
        """The column the latency limit applies to (and the one to show beside the mean)."""
        col = LATENCY_COLUMN[self.statistic]
        return col if col in self.table.columns and self.table[col].notna().any() else "latency_s"

    @property
    def latency_name(self) -> str:
        """What the ranking and the limit call latency: ``latency`` (the mean) or ``p95 latency``."""
        return "latency" if self.statistic == "mean" else f"{self.statistic} latency"

    @property
    def statistic_note(self) -> str | None:
        """A sentence when the statistic cannot be what it says: a percentile limit on the
        analytic engine, which has one latency per point and no spread."""
        if self.simulated or self.statistic == "mean" or self.qos.max_latency_s is None:
            return None
        return (f"The analytic engine has no spread: the {self.statistic} limit applies to its one-request "
                "latency (analysis.engine=simpy gives percentiles).")

    def constrained(self, row: pd.Series) -> float:
        v = row.get("latency_qos_s")
        return float(row["latency_s"] if v is None or pd.isna(v) else v)

    # -- rows ------------------------------------------------------------------------------------

    def ranked(self, top: int | None = None) -> pd.DataFrame:
        """Feasible points in rank order (the first ``top``); :meth:`all_rows` adds the others."""
        t = self.table
        feas = t[t["feasible"]].sort_values("rank")
        return feas.head(top) if top else feas

    def all_rows(self) -> pd.DataFrame:
        """Every point: feasible by rank, then the others closest first."""
        t = self.table
        return pd.concat([t[t["feasible"]].sort_values("rank"), closest(t, n=len(t))])

    @property
    def unbounded(self) -> pd.Series:
        """True for the overloaded points (a resource at or over its capacity): their latency is infinite."""
        return overloaded(self.table)

    def stages(self, bounded: bool = False) -> pd.DataFrame:
        """Latency per stage (seconds) for every point, in :data:`STAGE_LABELS` order (absent: 0;
        infinite at an overloaded resource): the uplink as its propagation (RTT/2 where
        something is sent) and the rest. ``bounded``: NaN for every stage of an
        :attr:`unbounded` point, which charts leave out (and mark)."""
        out = pd.DataFrame({label: self.table[col].fillna(0.0) if col in self.table.columns else 0.0
                            for col, label in STAGES}, index=self.table.index)
        out.pop("uplink")
        prop, tx = uplink_parts(self.table, self.network.rtt_s if self.network is not None else 0.0)
        out.insert(2, UPLINK_PARTS[0], prop)
        out.insert(3, UPLINK_PARTS[1], tx)
        if bounded:
            out[self.unbounded.to_numpy()] = np.nan
        return out

    def columns(self) -> list[Column]:
        """The ranked table's columns, in order, as every front end shows them
        (:func:`~splitimpera.report.columns.column_spec`)."""
        return column_spec(self)

    def rows(self, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """The values of :meth:`columns` (by key, SI) for ``table``'s points (default: :meth:`all_rows`)."""
        return column_values(self, self.all_rows() if table is None else table)

    def best_per_bottleneck(self) -> pd.DataFrame:
        return best_per_bottleneck(self.table)

    def chart_frame(self) -> pd.DataFrame:
        """One tidy row per point for interactive charts, in topological order (within a split,
        the bottlenecks in the scenario's order). SI units, plain columns, no index.

        Columns: ``split``, ``bottleneck``, ``label`` (:meth:`label`), ``index`` (topological
        position of the split), ``latency_s``, ``latency_qos_s`` (the latency the limit applies
        to), one column per stage of :meth:`stages` (seconds, named by its display name),
        ``unbounded`` (overloaded: the latency columns are NaN),
        ``energy_j``, ``accuracy`` (fraction; NaN when unknown), ``bytes_sent``, ``feasible``,
        ``pareto``, ``rank`` (NA when infeasible), ``status`` (``recommended``, ``feasible`` or
        ``infeasible``), ``verdict`` (``ok`` or the reason) and ``best`` (the point is its
        bottleneck's best split, :meth:`best_per_bottleneck`).
        """
        t = self.table.sort_values("index", kind="stable")
        stages = self.stages(bounded=True).loc[t.index]
        rec = self.recommended
        best = {(r["split"], b, *([r["exit"]] if "exit" in r.index else [])) for b, r in
                self.best_per_bottleneck().iterrows()}
        points = [tuple(map(str, p)) for p in t.index]
        feasible = t["feasible"].astype(bool).to_numpy()
        out = pd.DataFrame({
            "split": [p[0] for p in points], "bottleneck": [p[1] for p in points],
            "exit": [p[2] if len(p) > 2 else "none" for p in points],
            "config": t["config"].to_numpy() if "config" in t.columns else "",
            "exit_threshold": t["exit_threshold"].to_numpy(dtype=float) if "exit_threshold" in t.columns else np.nan,
            "exit_rate": t["exit_rate"].to_numpy(dtype=float) if "exit_rate" in t.columns else 0.0,
            "label": [self.label(p) for p in points], "index": t["index"].to_numpy(),
            "latency_s": t["latency_s"].to_numpy(),
            "latency_qos_s": [self.constrained(r) for _, r in t.iterrows()],
        })
        out["unbounded"] = self.unbounded.loc[t.index].to_numpy()
        for col in ("latency_s", "latency_qos_s"):  # charts leave an unbounded latency out (and mark it)
            out[col] = out[col].where(~out["unbounded"])
        for label in stages.columns:
            out[label] = stages[label].to_numpy(dtype=float)
        out["energy_j"] = t["energy_j"].to_numpy()
        out["accuracy"] = t["accuracy"].to_numpy(dtype=float) if "accuracy" in t.columns else np.nan
        out["bytes_sent"] = t["bytes_sent"].to_numpy()
        for col in ("latency_p95_s",):
            out[col] = t[col].to_numpy(dtype=float) if col in t.columns else np.nan
        out["feasible"] = feasible
        out["pareto"] = t["pareto"].astype(bool).to_numpy()
        out["rank"] = pd.array(t["rank"], dtype="Int64")
        out["status"] = ["recommended" if p == rec else "feasible" if f else "infeasible"
                         for p, f in zip(points, feasible)]
        out["verdict"] = np.where(feasible, "ok", t["reason"].astype(str).to_numpy())
        out["best"] = [p in best for p in points]
        return out

    # -- the answer ------------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        """The recommendation (or why there is none) in words, as every front end shows it."""
        t, rec = self.table, self.recommended
        n_feas, n = int(t["feasible"].sum()), len(t)
        what = "design points" if self.multi or self.table.index.nlevels > 2 else "splits"
        if rec is None:
            near = [(self.label(p), str(t.loc[p, "reason"]), tp) for p, tp in list(self.advice.items())[:3]]
            return Verdict(False, f"No {what[:-1]} meets the QoS ({n} evaluated).",
                           [self.statistic_note] if self.statistic_note else [], near)
        r = t.loc[rec]
        stat = self.statistic
        shown = self.latency_column
        margin = ""
        if self.qos.max_latency_s is not None:  # (analytic: a percentile limit on the one latency)
            on = f" on the {stat}" if stat != "mean" and shown == "latency_s" else ""
            margin = (f", {human(self.qos.max_latency_s - self.constrained(r), 's')} under the "
                      f"{self.qos.max_latency_ms:g} ms limit{on}")
        # The statistic the limit and the ranking use comes first, the mean (or p95) beside it.
        if stat != "mean" and shown != "latency_s":
            lat = f"{stat} latency {human(self.constrained(r), 's')} (mean {human(r['latency_s'], 's')})"
        else:
            p95 = r.get("latency_p95_s", np.nan) if self.simulated else np.nan
            lat = f"latency {human(r['latency_s'], 's')}" + ("" if pd.isna(p95) else f" (p95 {human(p95, 's')})")
        acc = ("" if pd.isna(r.get("accuracy", np.nan)) else
               f", accuracy {accuracy_text(r['accuracy'], r.get('accuracy_source'), 2, band=r.get('accuracy_band'))}"
               + (f" ({r['accuracy_source']}, not measured)" if is_predicted(r.get("accuracy_source")) else ""))
        bn = f" under {rec[1]}" if not self.multi and rec[1] != "none" else ""
        config = f" ({r['config']})" if len(rec) > 2 else ""  # with early exit, which of LC, RC, SC, EE
        exited = (f"; {r['exit_rate'] * 100:.0f} % of the requests exit on the device at τ = {rec[2]}"
                  if len(rec) > 2 and rec[2] != "none" else "")
        headline = (f"Recommended: {self.label(rec)}{config} — {lat}{margin}{exited}; "
                    f"the device runs {flops_text(r['head_flops'])} of {flops_text(r['head_flops'] + r['tail_flops'])}"
                    f" FLOPs and sends {human_bytes(r['bytes_sent'])}{bn} ({human(r['energy_j'], 'J')} on the "
                    f"device){acc}.")
        ranked = self.ranked()
        details = [f"{n_feas} of {n} {what} meet the QoS."]
        runners = list(ranked.index[1:3])
        if runners:
            details.append("Runners-up: " + ", ".join(
                f"{self.label(p)} ({'' if shown == 'latency_s' else stat + ' '}{human(self.constrained(t.loc[p]), 's')})"
                for p in runners))
        if self.statistic_note:
            details.append(self.statistic_note)
        return Verdict(True, headline, details)


def exit_table(view: View) -> pd.DataFrame:
    """The early-exit points with their split computing point, per split and bottleneck:
    ``split``, ``bottleneck``, ``config``, ``tau`` (NaN: SC), ``exit_rate``, ``exit_accuracy``,
    ``accuracy``, ``latency_s`` (mean), ``latency_p95_s`` (NaN on the analytic engine), ``rank``."""
    t = view.table
    if "exit" not in (t.index.names or []):
        return pd.DataFrame()
    at = set(t.index[t["config"] == "EE"].droplevel("exit"))
    keep = [p for p in t.index if (p[0], p[1]) in at]
    s = t.loc[keep]
    return pd.DataFrame({
        "split": [p[0] for p in keep], "bottleneck": [p[1] for p in keep], "config": s["config"].to_numpy(),
        "tau": s["exit_threshold"].to_numpy(dtype=float), "exit_rate": s["exit_rate"].to_numpy(dtype=float),
        "exit_accuracy": s["exit_accuracy"].to_numpy(dtype=float), "accuracy": s["accuracy"].to_numpy(dtype=float),
        "latency_s": s["latency_s"].to_numpy(dtype=float),
        "latency_p95_s": s["latency_p95_s"].to_numpy(dtype=float) if "latency_p95_s" in s else np.nan,
        "rank": pd.array(s["rank"], dtype="Int64")})
