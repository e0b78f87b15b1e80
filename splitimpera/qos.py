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

from .plain import human, human_bytes, num
from .latency.transport import transfer_latency_s, uplink_mbps_for

# "latency" is the latency the limit applies to (qos.latency_statistic; rank() sets the column).
OBJECTIVE_COLUMN = {"latency": "latency_qos_s", "energy": "energy_j", "bytes": "bytes_sent", "accuracy": "accuracy"}
LATENCY_COLUMN = {"mean": "latency_s", "p50": "latency_p50_s", "p95": "latency_p95_s", "p99": "latency_p99_s"}
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


RESOURCES = ("device", "uplink", "server", "downlink")  # the ``overload`` column's names, in a request's order
# Limits whose violation follows from an overload (unbounded latency): not restated in its reason.
FOLLOW_OVERLOAD = ("latency_qos_s", "deadline_miss_ratio")


def overloaded(table: pd.DataFrame) -> pd.Series:
    """True where a resource is at or over its capacity (the latency stage's ``overload``)."""
    if "overload" not in table.columns:
        return pd.Series(False, index=table.index)
    # A plain loop: this runs once per evaluate (sweeps: per point), pandas' .str is slower here.
    return pd.Series([isinstance(v, str) and v.strip() != "" for v in table["overload"]], index=table.index,
                     dtype=bool)


def overload_reason(row: pd.Series) -> str:
    """``"device overloaded (1.43× its capacity), latency unbounded"`` for the resources ``row``
    overloads (several: ``"device, uplink overloaded (2.1×, 1.2× their capacity), …"``)."""
    names = [r.strip() for r in str(row.get("overload") or "").split(",") if r.strip()]
    times = ", ".join(_times(row.get(f"{r}_utilisation", np.nan)) for r in names)
    return f"{', '.join(names)} overloaded ({times} {'its' if len(names) == 1 else 'their'} capacity), latency unbounded"


def _times(rho: float) -> str:
    return "≥ 1×" if pd.isna(rho) else f"{num(rho)}×"


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
    # On arrays, one frame built at the end: this runs once per sweep point (a few ms matter).
    n = len(table)
    new: dict[str, np.ndarray] = {}

    def column(name: str) -> np.ndarray:
        return new[name] if name in new else table[name].to_numpy(dtype=float, na_value=np.nan)

    # The latency the limit applies to; a missing percentile (analytic engine: one request,
    # no spread) falls back to the mean.
    lat_col = LATENCY_COLUMN[qos.latency_statistic]
    lat = column("latency_s")
    q = column(lat_col) if lat_col in table.columns else lat
    new["latency_qos_s"] = np.where(np.isnan(q), lat, q)
    if "deadline_miss_ratio" in table.columns and qos.max_latency_s is not None:
        # Analytic engine: every request takes the same time, so it misses or it does not.
        d = column("deadline_miss_ratio")
        new["deadline_miss_ratio"] = np.where(np.isnan(d), (lat > qos.max_latency_s).astype(float), d)
    # An overloaded resource (utilisation ≥ 1, from the latency stage) makes latency unbounded.
    unstable = overloaded(table).to_numpy()
    feasible = ~unstable
    reasons: list[list[str]] = [[overload_reason(table.iloc[i])] if unstable[i] else [] for i in range(n)]
    violation = np.where(unstable, np.inf, 0.0)
    margins = {}
    for c in constraints(qos, device):
        vals = column(c.column)
        known = ~np.isnan(vals)
        with np.errstate(invalid="ignore"):
            ok = (vals <= c.limit if c.upper else vals >= c.limit) & known
        feasible &= ok
        for i in np.flatnonzero(~ok):
            if not (unstable[i] and c.column in FOLLOW_OVERLOAD):
                reasons[i].append(c.reason(vals[i]))
        # Relative overshoot (absolute when the limit is 0, e.g. "no deadline misses");
        # a missing value is as far as can be.
        margin = (c.limit - vals) if c.upper else (vals - c.limit)
        over = np.clip(-margin, 0, None)
        with np.errstate(over="ignore", invalid="ignore"):  # an unbounded (overloaded) value overshoots by inf
            rel = np.where(known, over / abs(c.limit) if c.limit != 0 else over, np.inf)
        violation = np.fmax(violation, rel)
        margins[f"margin_{c.column}"] = margin
    pareto = pareto_front(table).to_numpy()
    score = objective_score(table, qos, {"latency_qos_s": new["latency_qos_s"]}).to_numpy(dtype=float)
    # Feasible points by score, ties by mean latency, bytes sent, topological position (stable).
    feas = np.flatnonzero(feasible)
    keys = [column(k)[feas] for k in ("index", "bytes_sent", "latency_s")] + [score[feas]]
    order = feas[np.lexsort(keys)]
    ranks = pd.array([pd.NA] * n, dtype="Int64")
    ranks[order] = np.arange(1, len(order) + 1)
    base = table
    if "deadline_miss_ratio" in new:  # replaced where it stands
        base = base.assign(deadline_miss_ratio=new.pop("deadline_miss_ratio"))
    extra = pd.DataFrame({**new, **margins, "feasible": feasible, "pareto": pareto,
                          "reason": pd.Series(["; ".join(r) for r in reasons], index=table.index, dtype=object),
                          "violation": violation, "score": score, "rank": ranks}, index=table.index)
    base = base.drop(columns=[c for c in extra.columns if c in base.columns])  # a table ranked before
    return pd.concat([base, extra], axis=1)


PARETO_OBJECTIVES = {"latency_s": "min", "accuracy": "max", "energy_j": "min"}


def objective_score(table: pd.DataFrame, qos, extra: dict | None = None) -> pd.Series:
    """Lower is better. ``weighted``: Σ weight × metric min-max scaled over the table's splits
    (accuracy enters as 1 − scaled accuracy); otherwise the objective's column (accuracy negated).
    Latency is the ``qos.latency_statistic`` the limit applies to (``latency_qos_s``).
    ``extra``: columns (arrays in the table's order) not in ``table`` yet, e.g. ``latency_qos_s``
    while :func:`rank` builds it (no copy of the table)."""
    extra = extra or {}

    def has(col: str) -> bool:
        return col in extra or col in table.columns

    def values(col: str) -> pd.Series:
        return pd.Series(extra[col], index=table.index, dtype=float) if col in extra else table[col].astype(float)

    if qos.objective != "weighted":
        col = OBJECTIVE_COLUMN[qos.objective]
        if not has(col):  # a table rank() has not seen: the mean
            col = "latency_s"
        v = values(col)
        return -v.fillna(-np.inf) if col == "accuracy" else v
    w = qos.weights
    score = pd.Series(0.0, index=table.index)
    lat = "latency_qos_s" if has("latency_qos_s") else "latency_s"
    for col, weight, sign in ((lat, w.latency, 1), ("energy_j", w.energy, 1), ("bytes_sent", w.bytes, 1),
                              ("accuracy", w.accuracy, -1)):
        if weight == 0 or not has(col) or values(col).isna().all():
            continue
        v = values(col) * sign
        v = v.where(np.isfinite(v))  # an unbounded latency (overloaded) would flatten the scale
        span = v.max() - v.min()
        score += weight * ((v - v.min()) / span if span > 0 else 0.0)
    return score


def pareto_front(table: pd.DataFrame, objectives: dict[str, str] | None = None) -> pd.Series:
    """True for the splits no other split dominates on ``objectives`` ({column: "min"|"max"}).

    A split dominates another when it is at least as good on every objective and strictly
    better on one. Objectives whose column is missing or entirely NaN are left out (accuracy
    before any is measured); a NaN elsewhere counts as the worst value.
    """
    objectives = dict(objectives or PARETO_OBJECTIVES)
    cols = [c for c in objectives if c in table.columns and table[c].notna().any()]
    if not cols or table.empty:
        return pd.Series(True, index=table.index, name="pareto")
    # Turn every objective into "smaller is better".
    v = np.column_stack([table[c].to_numpy(dtype=float, na_value=np.nan) * (1.0 if objectives[c] == "min" else -1.0)
                         for c in cols])
    v[np.isnan(v)] = np.inf
    le = (v[:, None, :] <= v[None, :, :]).all(axis=2)   # le[j, i]: j at least as good as i everywhere
    lt = (v[:, None, :] < v[None, :, :]).any(axis=2)    # lt[j, i]: j strictly better somewhere
    dominated = (le & lt).any(axis=0)
    return pd.Series(~dominated, index=table.index, name="pareto")


def closest(table: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The ``n`` infeasible splits nearest to feasibility (smallest worst relative overshoot;
    among overloaded ones, the least loaded)."""
    bad = table[~table["feasible"]]
    cols = [f"{r}_utilisation" for r in RESOURCES if f"{r}_utilisation" in bad.columns]
    load = bad[cols].max(axis=1) if cols else pd.Series(0.0, index=bad.index)
    order = pd.DataFrame({"v": bad["violation"], "l": load.where(overloaded(bad), 0.0), "t": bad["latency_s"],
                          "i": bad["index"]}, index=bad.index)
    return bad.loc[order.sort_values(["v", "l", "t", "i"], kind="stable").index].head(n)


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
    out: dict = {}
    for name, r in closest(table, n).iterrows():
        tips = []
        lat, lim = float(r.get("latency_qos_s", r["latency_s"])), qos.max_latency_s
        is_over = bool(overloaded(r.to_frame().T).iloc[0])
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
                scale = up / transfer_latency_s(network, b, connection=conn)
                need = uplink_mbps_for(network, b, (up - excess) / scale, conn) if up > excess else None
                if need is not None:  # rounded up to 3 digits, so the printed rate is enough
                    step = 10.0 ** (math.floor(math.log10(need)) - 2)
                    tips.append(f"uplink ≥ {num(math.ceil(need / step - 1e-9) * step)} Mbit/s "
                                f"(now {num(network.uplink_mbps)})")
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
        out[name] = tips
    return out


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
    dev = out["device_compute_s"].to_numpy(dtype=float)
    srv = out["server_compute_s"].to_numpy(dtype=float)
    tie = np.zeros(len(out), dtype=bool)
    if np.isnan(e_device) and np.isnan(e_server):
        out["latency_err_s"] = np.full(len(out), np.nan)
        out["tie"] = tie
        return out
    ed, es = np.nan_to_num(e_device), np.nan_to_num(e_server)
    out["latency_err_s"] = dev * ed + srv * es
    ranks = out["rank"].to_numpy(dtype=float, na_value=np.nan)
    best = np.flatnonzero(ranks == 1)
    if len(best) and objective == "latency":
        b = best[0]
        lat = out["latency_qos_s"].to_numpy(dtype=float)
        band = ed * np.abs(dev - dev[b]) + es * np.abs(srv - srv[b])
        with np.errstate(invalid="ignore"):
            tie = (ranks > 1) & (np.abs(lat - lat[b]) <= band)
    out["tie"] = tie
    return out
