"""QoS matching: feasibility with a reason for every violated constraint, and a ranking.

A design point (split, bottleneck) is feasible when it meets every constraint the scenario
sets. Feasible points are ranked jointly, across splits and bottlenecks, by the objective
(latency, device energy, bytes sent, accuracy, or a weighted score of metrics min-max scaled
over all points), ties broken by mean latency, then bytes sent, then topological position
(the earlier cut, which keeps less on the device), then the scenario's order of bottlenecks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import ranking
from .ranking import (FOLLOW_OVERLOAD, PARETO_OBJECTIVES, RESOURCES,
                      Ranked, has_overload, objective_arrays, rank_arrays, tie_arrays)
from .plain import human, human_bytes, num
from .latency.overhead import floor_s
from .latency.transport import transfer_latency_s, uplink_mbps_for

TIE_BREAKS = "ties broken by mean latency, then bytes sent, then the earlier cut, then bottleneck order"


@dataclass(frozen=True)
class Constraint:
    """``column`` must be ``<=`` (or ``>=``) ``limit``; ``fmt`` renders a value for reasons."""

    name: str
    column: str
    limit: float
    upper: bool
    fmt: Callable[[float], str]

    def ok(self, values: pd.Series) -> pd.Series:
        return values <= self.limit if self.upper else values >= self.limit

    def margin(self, values: pd.Series) -> pd.Series:
        """Room left before the limit, in the column's unit (negative: violated)."""
        return (self.limit - values) if self.upper else (values - self.limit)

    def reason(self, value: float) -> str:
        if pd.isna(value):  # e.g. accuracy neither measured nor predictable at this split
            return f"{self.name} unknown, limit {'≤' if self.upper else '≥'} {self.fmt(self.limit)}"
        op = ">" if self.upper else "<"
        return f"{self.name} {self.fmt(value)} {op} {self.fmt(self.limit)}"


def _seconds(v: float) -> str:
    return human(v, "s", 4)


def _joules(v: float) -> str:
    return human(v, "J", 4)


def _pct(v: float) -> str:
    return f"{v * 100:.2f} %"


def _ratio(v: float) -> str:
    return f"{num(v * 100)} %"


def overloaded(table: pd.DataFrame) -> pd.Series:
    """True where a resource is at or over its capacity (the latency stage's ``overload``)."""
    if "overload" not in table.columns:
        return pd.Series(False, index=table.index)
    # A plain loop: this runs once per evaluate (sweeps: per point), pandas' .str is slower here.
    return pd.Series([has_overload(v) for v in table["overload"]], index=table.index,
                     dtype=bool)


def constraints(qos, device=None) -> list[Constraint]:
    cs = []
    if qos.max_latency_s is not None:
        stat = qos.latency_statistic
        cs.append(Constraint("latency" if stat == "mean" else f"{stat} latency", "latency_qos_s",
                             qos.max_latency_s, True, _seconds))
    if qos.max_deadline_miss_ratio is not None:
        cs.append(Constraint("deadline misses", "deadline_miss_ratio", qos.max_deadline_miss_ratio, True, _ratio))
    if qos.max_uplink_utilisation is not None:
        cs.append(Constraint("uplink utilisation", "uplink_utilisation", qos.max_uplink_utilisation, True, _ratio))
    if getattr(qos, "max_frame_loss_ratio", None) is not None:
        cs.append(Constraint("frame loss", "frame_loss_ratio", qos.max_frame_loss_ratio, True, _ratio))
    if qos.max_energy_j is not None:
        cs.append(Constraint("energy", "energy_j", qos.max_energy_j, True, _joules))
    if qos.max_tx_bytes is not None:
        cs.append(Constraint("bytes sent", "bytes_sent", float(qos.max_tx_bytes), True, human_bytes))
    if qos.min_accuracy is not None:
        cs.append(Constraint("accuracy", "accuracy", qos.min_accuracy, False, _pct))
    if qos.fit_device_memory and device is not None:
        cs.append(Constraint("device memory", "head_mem_bytes", device.memory_bytes, True, human_bytes))
    return cs


def describe_qos(qos, device=None) -> str:
    """The QoS limits that are set, in words: ``latency ≤ 90 ms, accuracy ≥ 95.00 %``."""
    return ", ".join(f"{c.name} {'≤' if c.upper else '≥'} {c.fmt(c.limit)}" for c in constraints(qos, device))


def describe_objective(qos) -> str:
    """``objective: …`` with its weights and the tie-breaks, as the ranking applies them."""
    if qos.objective == "weighted":
        w = qos.weights.model_dump()
        what = "min weighted score (" + ", ".join(f"{k} {v:g}" for k, v in w.items() if v) + "; min-max scaled)"
    else:
        stat = "" if qos.objective != "latency" or qos.latency_statistic == "mean" else f"{qos.latency_statistic} "
        what = ("max " if qos.objective == "accuracy" else "min ") + stat + qos.objective
    return f"objective: {what}, {TIE_BREAKS}"


def rank(table: pd.DataFrame, qos, device=None) -> pd.DataFrame:
    """``table`` plus ``feasible``, ``pareto`` (on the accuracy/latency/energy front), ``reason``,
    ``rank`` (1 = recommended; NA when infeasible),
    ``margin_<constraint>_…`` columns, and ``violation`` (worst relative overshoot, 0 if feasible)."""
    cols = {c: table[c].to_numpy(dtype=float, na_value=np.nan)[None, :] for c in table.columns
            if c in RANKED_COLUMNS}
    cols["overload"] = (table["overload"].to_numpy(dtype=object) if "overload" in table.columns
                        else np.full(len(table), "", dtype=object))[None, :]
    return ranked_frame(table, rank_arrays(cols, [qos], [constraints(qos, device)]), 0)


def ranked_frame(table: pd.DataFrame, r: Ranked, i: int) -> pd.DataFrame:
    """``table`` (row ``i``'s latency columns) with the ranking's columns of row ``i``."""
    base = table
    if "deadline_miss_ratio" in r.values and "deadline_miss_ratio" in table.columns:  # replaced where it stands
        base = base.assign(deadline_miss_ratio=r.values["deadline_miss_ratio"][i])
    active = {c.column for c in r.constraints[i]}
    ranks = pd.array(r.rank[i], dtype="Int64")
    ranks[r.rank[i] == 0] = pd.NA
    extra = pd.DataFrame({"latency_qos_s": r.values["latency_qos_s"][i],
                          **{k: v[i] for k, v in r.margins.items() if k[len("margin_"):] in active},
                          "feasible": r.feasible[i], "pareto": r.pareto[i],
                          "reason": pd.Series(r.reasons(i), index=table.index, dtype=object),
                          "violation": r.violation[i], "score": r.score[i], "rank": ranks}, index=table.index)
    base = base.drop(columns=[c for c in extra.columns if c in base.columns])  # a table ranked before
    return pd.concat([base, extra], axis=1)


# The numeric columns the ranking reads (the rest of a table passes through).
RANKED_COLUMNS = {"index", "bytes_sent", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s",
                  "deadline_miss_ratio", "uplink_utilisation", "frame_loss_ratio", "energy_j", "accuracy",
                  "head_mem_bytes", "device_utilisation", "server_utilisation", "downlink_utilisation",
                  "latency_qos_s"}


def objective_score(table: pd.DataFrame, qos, extra: dict | None = None) -> pd.Series:
    """Lower is better. ``weighted``: Σ weight × metric min-max scaled over the table's splits
    (accuracy enters as 1 − scaled accuracy); otherwise the objective's column (accuracy negated).
    Latency is the ``qos.latency_statistic`` the limit applies to (``latency_qos_s``).
    ``extra``: columns (arrays in the table's order) not in ``table`` yet."""
    cols = {c: table[c].to_numpy(dtype=float, na_value=np.nan)[None, :] for c in table.columns
            if c in RANKED_COLUMNS}
    cols.update({c: np.asarray(v, dtype=float)[None, :] for c, v in (extra or {}).items()})
    return pd.Series(objective_arrays(cols, qos)[0], index=table.index)


def pareto_front(table: pd.DataFrame, objectives: dict[str, str] | None = None) -> pd.Series:
    """True for the splits no other split dominates on ``objectives`` ({column: "min"|"max"}).

    A split dominates another when it is at least as good on every objective and strictly
    better on one. Objectives whose column is missing or entirely NaN are left out (accuracy
    before any is measured); a NaN elsewhere counts as the worst value.
    """
    objectives = dict(objectives or PARETO_OBJECTIVES)
    cols = [(table[c].to_numpy(dtype=float, na_value=np.nan)[None, :], sense) for c, sense in objectives.items()
            if c in table.columns]
    if not cols or table.empty:
        return pd.Series(True, index=table.index, name="pareto")
    return pd.Series(ranking.pareto_mask(cols)[0], index=table.index, name="pareto")


def closest(table: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The ``n`` infeasible splits nearest to feasibility (smallest worst relative overshoot;
    among overloaded ones, the least loaded)."""
    bad = table[~table["feasible"]]
    cols = [f"{r}_utilisation" for r in RESOURCES if f"{r}_utilisation" in bad.columns]
    load = bad[cols].max(axis=1) if cols else pd.Series(0.0, index=bad.index)
    f = lambda c: np.asarray(c, dtype=float)  # noqa: E731
    order = ranking.closest_order(f(bad["violation"]), f(load.where(overloaded(bad), 0.0)), f(bad["latency_s"]),
                                  f(bad["index"]))
    return bad.iloc[order[:n]]


def overload_tips(r: pd.Series, network=None, workload=None) -> list[str]:
    """What would bring an overloaded point's every resource under its capacity: a lower
    request rate, else the overloaded resource itself (faster, more workers, a faster link)."""
    names = [x.strip() for x in str(r.get("overload") or "").split(",") if x.strip()]
    rho = {x: float(r.get(f"{x}_utilisation", np.nan)) for x in names}
    worst = max(rho.values(), default=np.nan)
    tips, fixes = [], []
    if workload is not None and np.isfinite(worst):
        tips.append(f"a request rate below {num(workload.rate_hz / worst)} Hz per device (now {num(workload.rate_hz, 4)})")
    elif np.isfinite(worst):
        tips.append(f"{num(worst)}× less load (a lower request rate or fewer devices)")
    for x, u in rho.items():
        if not np.isfinite(u):
            continue
        if x == "device":
            fixes.append(f"a device more than {num(u)}× faster")
        elif x == "server":
            more = "" if workload is None else (f" (or more than {num(workload.server_workers * u)} server workers, "
                                                f"now {workload.server_workers})")
            fixes.append(f"a server more than {num(u)}× faster{more}")
        elif network is not None:
            now = network.uplink_mbps if x == "uplink" else network.downlink_mbps
            fixes.append(f"{x} above {num(now * u)} Mbit/s (now {num(now)})")
        else:
            fixes.append(f"{x} more than {num(u)}× faster")
    if fixes:  # every overloaded resource must change, so they are needed together
        tips.append(" and ".join(fixes))
    return tips


def what_would_change(table: pd.DataFrame, qos, network=None, n: int = 3, workload=None) -> dict:
    """For the ``n`` closest infeasible points (keyed by their index label), first-order changes
    that would make each feasible.

    Overloaded points (a resource at or over capacity, latency unbounded): :func:`overload_tips`
    (the request rate, given ``workload``, or the resource). Latency: the uplink rate that
    would bring the transfer within the budget (``None`` when even an infinitely fast link
    would not, because compute and RTT alone exceed it), the device speed-up that would, and
    the limit that would accept the split as it is. Other constraints: the amount to relax.
    Estimates hold the other terms fixed (no queueing change).
    """
    return {name: change_tips(r, qos, network, workload) for name, r in closest(table, n).iterrows()}


def change_tips(r, qos, network=None, workload=None) -> list[str]:
    """:func:`what_would_change`'s tips for one infeasible point, ``r`` its row (a Series, or
    a mapping of column to value)."""
    tips = []
    lat, lim = float(r.get("latency_qos_s", r["latency_s"])), qos.max_latency_s
    is_over = has_overload(r.get("overload"))
    if is_over:
        tips += overload_tips(r, network, workload)
    elif lim is not None and lat > lim:
        excess = lat - lim
        up = float(r["uplink_s"]) if r["bytes_sent"] > 0 else 0.0
        if network is not None and up > 0:
            # One transfer alone at a higher rate, scaled to this point's uplink time (which
            # may include contention): slow start's and the handshake's round trips stay.
            conn = "new" if network.tcp.connection == "new" else "idle"
            b = int(r["bytes_sent"])
            floor = floor_s(network)
            floored = floor > 0 and up - excess <= floor  # the link's per-message floor: no rate goes below it
            need = None
            if not floored and up > excess:
                scale = up / transfer_latency_s(network, b, connection=conn)
                need = uplink_mbps_for(network, b, (up - excess) / scale, conn)
            if need is not None:  # rounded up to 3 digits, so the printed rate is enough
                step = 10.0 ** (math.floor(math.log10(need)) - 2)
                tips.append(f"uplink ≥ {num(math.ceil(need / step - 1e-9) * step)} Mbit/s "
                            f"(now {num(network.uplink_mbps)})")
            elif floored:
                tips.append(f"no uplink rate is enough: the link's message floor of {human(floor, 's', 3)} "
                            "alone exceeds what the limit leaves for the uplink")
            else:
                tips.append("no uplink rate is enough: compute, propagation and the transport's "
                            "round trips alone exceed the limit")
        dev = float(r["device_compute_s"])
        if 0 < excess < dev:
            tips.append(f"a {num(dev / (dev - excess))}× faster device")
        tips.append(f"a latency limit of {human(lat, 's', 4)}")
    for c in constraints(qos):
        if c.column in ("latency_s", "latency_qos_s") or (is_over and c.column in FOLLOW_OVERLOAD):
            continue  # handled above
        v = r.get(c.column)
        if v is not None and not pd.isna(v) and not (v <= c.limit if c.upper else v >= c.limit):
            tips.append(f"{c.name} limit {'≥' if c.upper else '≤'} {c.fmt(v)}")
    return tips


def advise(table: pd.DataFrame, qos, network=None, workload=None, n: int = 3) -> dict:
    """The advice stored with a result: :func:`what_would_change` for the ``n`` closest points
    when no point meets the QoS, else nothing (the recommendation is the answer)."""
    if table["feasible"].any():
        return {}
    return what_would_change(table, qos, network, n=n, workload=workload)


def best_per_bottleneck(table: pd.DataFrame) -> pd.DataFrame:
    """One row per bottleneck of a ranked design-point table (its order): the best split.

    Columns: ``split`` (the best-ranked feasible split, else the closest infeasible one),
    ``feasible`` (whether that split meets the QoS), ``feasible_splits`` (how many of the
    bottleneck's splits do), ``rank`` (the joint rank; NA when infeasible), and that point's
    ``latency_s``, ``latency_qos_s``, ``bytes_sent``, ``accuracy``, ``accuracy_band``,
    ``accuracy_source``, ``energy_j``, ``reason``.
    """
    rows = []
    if table.empty:
        return pd.DataFrame(columns=["split", "feasible", "feasible_splits", "rank", "latency_s", "latency_qos_s",
                                     "bytes_sent", "accuracy", "accuracy_band", "accuracy_source", "energy_j",
                                     "reason"],
                            index=pd.Index([], name="bottleneck"))
    for b in dict.fromkeys(table.index.get_level_values("bottleneck")):
        t = table.xs(b, level="bottleneck")
        feas = t[t["feasible"].astype(bool)]
        best = feas.sort_values("rank").iloc[0] if len(feas) else closest(t, n=1).iloc[0]
        name = best.name if isinstance(best.name, tuple) else (best.name,)  # (split, exit) with early exit
        rows.append({"bottleneck": b, "split": str(name[0]), **({"exit": str(name[1])} if len(name) > 1 else {}),
                     "feasible": bool(best["feasible"]),
                     "feasible_splits": int(len(feas)), "rank": best["rank"],
                     **{c: best.get(c, np.nan) for c in ("latency_s", "latency_qos_s", "bytes_sent", "accuracy",
                                                         "accuracy_band", "accuracy_source", "energy_j", "reason")}})
    out = pd.DataFrame(rows).set_index("bottleneck")
    out["rank"] = pd.array(out["rank"], dtype="Int64")
    return out


def compute_error_fraction(device, profile=None) -> float:
    """The relative error of ``device``'s compute times: its timing table's run-to-run spread
    when one is used for this model (measured mode), else the profile's held-out
    ``compute.error_pct``; NaN when the profile states none."""
    if profile is not None:
        from .latency.compute import matching_table

        table = matching_table(profile, device)
        if table is not None:
            return table.noise_pct / 100
    e = device.compute.error_pct
    return float("nan") if e is None else e / 100


def mark_ties(table: pd.DataFrame, e_device: float, e_server: float, objective: str = "latency") -> pd.DataFrame:
    """``table`` (ranked) plus ``latency_err_s`` and ``tie``.

    ``latency_err_s`` is the compute model's error band on a point's latency:
    ``device_compute_s`` × the device's relative error + ``server_compute_s`` × the server's
    (as if each side were off in one direction). A side whose error is not stated (NaN) adds
    nothing; when neither states one the band is NaN and nothing ties.

    ``tie``: a feasible point ranked below 1 whose ranked latency differs from the
    recommended point's by no more than the error of the compute that *differs* between
    them, ``e_device`` × |Δ device compute| + ``e_server`` × |Δ server compute|: a model that
    is off by e on a side is off alike for two points running the same layers there, so two
    points that differ only in what they send never tie on compute error. Ties are judged
    only when the ranking is by latency (``objective``); otherwise ``tie`` is all False."""
    out = table.copy()
    dev = out["device_compute_s"].to_numpy(dtype=float)[None, :]
    srv = out["server_compute_s"].to_numpy(dtype=float)[None, :]
    ranks = out["rank"].to_numpy(dtype=float, na_value=0.0)[None, :]
    lat = (out["latency_qos_s"].to_numpy(dtype=float) if "latency_qos_s" in out.columns
           else np.full(len(out), np.nan))[None, :]
    err, tie = tie_arrays(ranks, lat, dev, srv, np.array([[e_device]]), np.array([[e_server]]), [objective])
    out["latency_err_s"] = err[0]
    out["tie"] = tie[0]
    return out
