"""The QoS ranking's arithmetic on arrays of shape points × design points.

A sweep ranks the same design points under many scenarios; a single evaluate is one row.
Every function here works row by row (one row: one scenario's design points), with no frame
and no Python loop over rows, so N rows cost about as much as one. What a constraint is,
how a reason reads and what the advice says stay in :mod:`splitimpera.qos`, which calls these.

Shapes: ``(N, D)`` for values per point and design point, ``(N, 1)`` (or ``(N,)`` where
said) for a scenario's own numbers; NaN marks a missing value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .plain import num

RESOURCES = ("device", "uplink", "server", "downlink")  # the ``overload`` column's names, in a request's order


def check(vals: np.ndarray, limit: np.ndarray, upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ok, margin, overshoot)`` of a constraint ``vals ≤ limit`` (``upper``) or ``≥``.

    ``limit`` ``(N, 1)``; ``ok`` is False where the value is missing; ``margin`` is the room
    left (negative: violated); ``overshoot`` the relative excess (absolute where the limit is
    0, e.g. "no deadline misses"), ``inf`` where the value is missing.
    """
    known = ~np.isnan(vals)
    with np.errstate(invalid="ignore"):
        ok = (vals <= limit if upper else vals >= limit) & known
    margin = (limit - vals) if upper else (vals - limit)
    over = np.clip(-margin, 0, None)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # an unbounded value overshoots by inf
        rel = np.where(known, np.where(limit != 0, over / np.abs(limit), over), np.inf)
    return ok, margin, rel


def pareto_mask(columns: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """True where no other design point of the row dominates: at least as good on every
    ``(values, "min" | "max")`` column and strictly better on one. A column that is all NaN in
    a row is left out there; a NaN elsewhere counts as the worst value."""
    if not columns:
        raise ValueError("pareto_mask needs at least one column")
    parts = []
    for vals, sense in columns:
        v = vals * (1.0 if sense == "min" else -1.0)
        empty = np.isnan(v).all(axis=1, keepdims=True)
        v = np.where(np.isnan(v), np.inf, v)
        parts.append(np.where(empty, 0.0, v))  # constant in the row: decides nothing
    le = lt = None  # le[n, j, i]: j at least as good as i everywhere; lt: j strictly better somewhere
    for v in parts:
        a, b = v[:, :, None], v[:, None, :]
        le = (a <= b) if le is None else le & (a <= b)
        lt = (a < b) if lt is None else lt | (a < b)
    return ~(le & lt).any(axis=1)


def scaled_sum(terms: list[tuple[float, np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """Σ weight × values min-max scaled over the row's finite values (``terms``: ``(weight,
    values)``); a term whose values are all NaN in a row, or that spans nothing, adds 0 there."""
    score = np.zeros(shape)
    for weight, vals in terms:
        if weight == 0:
            continue
        v = np.where(np.isfinite(vals), vals, np.nan)  # an unbounded latency would flatten the scale
        lo = np.fmin.reduce(v, axis=1, keepdims=True)
        hi = np.fmax.reduce(v, axis=1, keepdims=True)
        span = hi - lo
        skip = np.isnan(vals).all(axis=1, keepdims=True) | ~(span > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            score += np.where(skip, 0.0, weight * ((v - lo) / span))
    return score


def rank_positions(feasible: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """1-based rank of every feasible design point within its row, 0 where infeasible.

    ``keys``: ``(N, D)`` sort keys, the last one primary (:func:`numpy.lexsort`'s order);
    equal keys keep the design points' order."""
    n, d = feasible.shape
    flat = np.flatnonzero(feasible.ravel())
    row = flat // d
    order = flat[np.lexsort([k.ravel()[flat] for k in keys] + [row])]
    rows = order // d
    start = np.searchsorted(rows, np.arange(n))
    ranks = np.zeros(n * d, dtype=np.int64)
    ranks[order] = np.arange(len(order)) - start[rows] + 1
    return ranks.reshape(n, d)


def tie_mask(ranks: np.ndarray, latency: np.ndarray, device_s: np.ndarray, server_s: np.ndarray,
             e_device: np.ndarray, e_server: np.ndarray) -> np.ndarray:
    """Points ranked below 1 whose latency is within the compute error that differs between
    them and the row's rank-1 point: ``e_device`` × |Δ device compute| + ``e_server`` × |Δ server
    compute| (``e_*``: ``(N, 1)``, NaN read as 0). False in rows without a rank-1 point."""
    has = (ranks == 1).any(axis=1, keepdims=True)
    b = np.argmax(ranks == 1, axis=1)[:, None]
    pick = lambda a: np.take_along_axis(a, b, axis=1)  # noqa: E731
    ed, es = np.nan_to_num(e_device), np.nan_to_num(e_server)
    band = ed * np.abs(device_s - pick(device_s)) + es * np.abs(server_s - pick(server_s))
    with np.errstate(invalid="ignore"):
        return has & (ranks > 1) & (np.abs(latency - pick(latency)) <= band)


def closest_order(violation: np.ndarray, load: np.ndarray, latency: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Design points of one row (1-D arrays), nearest to feasibility first: by worst relative
    overshoot, then load (the busiest resource where overloaded, else 0), latency, position."""
    return np.lexsort([index, latency, load, violation])


# "latency" is the latency the limit applies to (qos.latency_statistic; rank() sets the column).
OBJECTIVE_COLUMN = {"latency": "latency_qos_s", "energy": "energy_j", "bytes": "bytes_sent", "accuracy": "accuracy"}
LATENCY_COLUMN = {"mean": "latency_s", "p50": "latency_p50_s", "p95": "latency_p95_s", "p99": "latency_p99_s"}


# Limits whose violation follows from an overload (unbounded latency): not restated in its reason.
FOLLOW_OVERLOAD = ("latency_qos_s", "deadline_miss_ratio")


PARETO_OBJECTIVES = {"latency_s": "min", "accuracy": "max", "energy_j": "min"}


def overload_reason(row) -> str:
    """``"device overloaded (1.43× its capacity), latency unbounded"`` for the resources ``row``
    overloads (several: ``"device, uplink overloaded (2.1×, 1.2× their capacity), …"``)."""
    names = [r.strip() for r in str(row.get("overload") or "").split(",") if r.strip()]
    times = ", ".join(_times(row.get(f"{r}_utilisation", np.nan)) for r in names)
    return f"{', '.join(names)} overloaded ({times} {'its' if len(names) == 1 else 'their'} capacity), latency unbounded"


def _times(rho) -> str:
    try:
        v = float(rho)
    except (TypeError, ValueError):  # None, pd.NA
        v = np.nan
    return "≥ 1×" if np.isnan(v) else f"{num(v)}×"


@dataclass(frozen=True)
class Ranked:
    """The ranking of N scenarios' design points (:func:`rank_arrays`): arrays ``(N, D)``.

    ``values``: the columns the constraints read (``latency_qos_s`` the latency the limit
    applies to, ``deadline_miss_ratio`` as ranked); ``margins``: ``margin_<column>`` per
    constraint, NaN in rows whose scenario does not set it; ``ok``: which values meet their
    constraint; ``rank``: 1 = recommended, 0 where infeasible; ``constraints``: each row's."""

    values: dict[str, np.ndarray]
    margins: dict[str, np.ndarray]
    ok: dict[str, np.ndarray]
    unstable: np.ndarray
    feasible: np.ndarray
    pareto: np.ndarray
    violation: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    constraints: list[list]  # each row's qos.Constraint objects
    overload: np.ndarray  # object: the overloaded resources' names, comma-separated
    utilisation: dict[str, np.ndarray]  # resource → offered load over capacity

    def reasons(self, i: int) -> list[str]:
        """Why each design point of row ``i`` misses the QoS ("" where it meets it)."""
        out = []
        for j in range(self.feasible.shape[1]):
            parts = []
            if self.unstable[i, j]:
                parts.append(overload_reason({"overload": self.overload[i, j],
                                              **{f"{r}_utilisation": u[i, j] for r, u in self.utilisation.items()}}))
            for c in self.constraints[i]:
                if not self.ok[c.column][i, j] and not (self.unstable[i, j] and c.column in FOLLOW_OVERLOAD):
                    parts.append(c.reason(self.values[c.column][i, j]))
            out.append("; ".join(parts))
        return out


def has_overload(value) -> bool:
    """An ``overload`` cell that names a resource."""
    return isinstance(value, str) and value.strip() != ""


def rank_arrays(cols: dict[str, np.ndarray], qoss: list, per_row: list[list], unstable: np.ndarray | None = None,
                ) -> Ranked:
    """Feasibility, margins, reasons, Pareto front, score and rank of N scenarios' design
    points at once: ``cols`` are the latency stage's columns as arrays ``(N, D)`` (``overload``
    an object array of strings), ``qoss`` each row's QoS and ``per_row`` its constraints
    (:func:`splitimpera.qos.constraints`); ``unstable``: where a resource is overloaded, when
    the caller has it (else read from ``overload``). Row ``i`` is ranked exactly as
    :func:`splitimpera.qos.rank` ranks that scenario's table alone."""
    n, d = cols["latency_s"].shape
    lat = cols["latency_s"]
    # The latency the limit applies to; a missing percentile (analytic engine: one request,
    # no spread) falls back to the mean.
    q = lat
    for stat in dict.fromkeys(x.latency_statistic for x in qoss):
        col = LATENCY_COLUMN[stat]
        if col in cols and col != "latency_s":
            rows = np.array([x.latency_statistic == stat for x in qoss])[:, None]
            q = np.where(rows, cols[col], q)
    values = {"latency_qos_s": np.where(np.isnan(q), lat, q)}
    max_lat = np.array([np.nan if x.max_latency_s is None else x.max_latency_s for x in qoss])[:, None]
    if "deadline_miss_ratio" in cols:
        # Analytic engine: every request takes the same time, so it misses or it does not.
        dl = cols["deadline_miss_ratio"]
        with np.errstate(invalid="ignore"):
            missed = np.where(np.isnan(dl), (lat > max_lat).astype(float), dl)
        values["deadline_miss_ratio"] = np.where(np.isnan(max_lat), dl, missed)
    # An overloaded resource (utilisation ≥ 1, from the latency stage) makes latency unbounded.
    over = cols["overload"]
    if unstable is None:
        unstable = np.vectorize(has_overload, otypes=[bool])(over) if over.size else np.zeros((n, d), dtype=bool)
    feasible = ~unstable
    violation = np.where(unstable, np.inf, 0.0)
    margins, ok = {}, {}
    for column in dict.fromkeys(c.column for cs in per_row for c in cs):
        limit = np.full((n, 1), np.nan)
        upper = True
        for i, cs in enumerate(per_row):
            for c in cs:
                if c.column == column:
                    limit[i, 0], upper = c.limit, c.upper
        active = ~np.isnan(limit)
        vals = values[column] if column in values else cols[column]
        values[column] = vals
        good, margin, rel = check(vals, limit, upper)
        feasible &= good | ~active
        violation = np.where(active, np.fmax(violation, rel), violation)
        margins[f"margin_{column}"] = margin
        ok[column] = good
    front = [(cols[c], sense) for c, sense in PARETO_OBJECTIVES.items() if c in cols]
    pareto = pareto_mask(front) if front else np.ones((n, d), dtype=bool)
    score = np.empty((n, d))
    for key in dict.fromkeys((x.objective, tuple(x.weights.model_dump().values())) for x in qoss):
        rows = np.array([(x.objective, tuple(x.weights.model_dump().values())) == key for x in qoss])
        sub = {c: v[rows] for c, v in {**cols, **values}.items() if c != "overload"}
        score[rows] = objective_arrays(sub, next(x for x in qoss if x.objective == key[0]
                                                 and tuple(x.weights.model_dump().values()) == key[1]))
    # Feasible points by score, ties by mean latency, bytes sent, topological position (stable).
    ranks = rank_positions(feasible, [cols["index"], cols["bytes_sent"], lat, score])
    utils = {r: cols[f"{r}_utilisation"] for r in RESOURCES if f"{r}_utilisation" in cols}
    return Ranked(values, margins, ok, unstable, feasible, pareto, violation, score, ranks, per_row, over, utils)


def objective_arrays(cols: dict[str, np.ndarray], qos) -> np.ndarray:
    """:func:`objective_score` of rows that share ``qos``'s objective, on arrays ``(N, D)``."""
    if qos.objective != "weighted":
        col = OBJECTIVE_COLUMN[qos.objective]
        if col not in cols:  # a table rank() has not seen: the mean
            col = "latency_s"
        v = cols[col]
        return -np.where(np.isnan(v), -np.inf, v) if col == "accuracy" else v
    w = qos.weights
    lat = cols["latency_qos_s"] if "latency_qos_s" in cols else cols["latency_s"]
    terms = []
    for c, weight, sign in ((None, w.latency, 1), ("energy_j", w.energy, 1), ("bytes_sent", w.bytes, 1),
                            ("accuracy", w.accuracy, -1)):
        v = lat if c is None else cols.get(c)
        if v is not None:
            terms.append((weight, v * sign))
    return scaled_sum(terms, lat.shape)


def tie_arrays(ranks, latency, device_s, server_s, e_device, e_server, objectives) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mark_ties` on arrays ``(N, D)``: ``(latency_err_s, tie)``; ``e_*`` ``(N, 1)``,
    ``objectives`` each row's ``qos.objective`` (ties are judged only when it is latency)."""
    none = np.isnan(e_device) & np.isnan(e_server)
    err = np.where(none, np.nan, device_s * np.nan_to_num(e_device) + server_s * np.nan_to_num(e_server))
    judged = ~none & np.array([o == "latency" for o in objectives])[:, None]
    tie = judged & tie_mask(ranks, latency, device_s, server_s, e_device, e_server)
    return err, tie
