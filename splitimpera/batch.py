"""Evaluating many scenarios on one prepared group at once: :func:`evaluate_batch`.

The scenarios share a :class:`~splitimpera.prepared.Prepared` (the same model, data, analysis
and bottleneck settings); each may change the device, server, network, workload and QoS. The
latency stage (:func:`splitimpera.latency.engine.latency_arrays`) and the ranking (:mod:`splitimpera.ranking`)
run on arrays of shape scenarios × design points; a frame is built only for what is asked of
the :class:`Batch`: one scenario's :class:`~splitimpera.results.Result`, or every scenario's
rows in one long table (a sweep's output). :func:`~splitimpera.pipeline.evaluate` is a batch
of one. The SimPy engine simulates each scenario on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .accuracy.design_points import DesignPoints
from .accuracy.early_exit import EXIT_COLUMNS, configuration
from .config.scenario import Scenario
from .errors import UserError
from .latency.compute import compute_mode, compute_time_s
from .latency.engine import TABLE_COLUMNS, latency_arrays, overload_text, point_frame
from .latency.profile_keys import ProfileKeys, by_key
from .prepared import Prepared
from .qos import change_tips, compute_error_fraction, constraints, ranked_frame, tie_arrays
from .ranking import RESOURCES, Ranked, closest_order, rank_arrays
from .results.run import Result

ADVICE_POINTS = 3  # closest infeasible points advised on where nothing meets the QoS (qos.advise)


def select_splits(scenario: Scenario, names: list[str], wanted, field: str = "analysis.splits") -> list[str]:
    """``names`` (topological order) restricted to ``wanted`` (a split or a list of them;
    ``all`` and ``nominated`` keep ``names``, which :attr:`Prepared.splits` has narrowed)."""
    if isinstance(wanted, str) and wanted in ("all", "nominated"):
        return names
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise UserError(f"unknown split(s) {', '.join(unknown)}; the model's splits are {', '.join(names)}",
                        source=scenario.source, field=field)
    return [n for n in names if n in set(wanted)]


def selection(prep: Prepared, names: list[str]) -> tuple[DesignPoints, pd.DataFrame, dict]:
    """The design points at ``names``, their engine frame, and the table columns that depend
    on the model alone (kept in ``prep.memo``)."""
    key = ("selection", tuple(names))
    if key not in prep.memo:
        prof = prep.profile
        points = prep.points.select(names)
        splits = points.table.index.get_level_values("split")
        rows = prof.loc[splits]
        cols = {c: rows[c].to_numpy() for c in ("index", "op", "shape", "head_flops", "tail_flops", "head_params",
                                                "tail_params")}
        # At batch 1 the head must hold its weights and its peak of live activations.
        cols["head_mem_bytes"] = (rows["head_state_bytes"] + rows["head_peak_act_bytes"]).to_numpy()
        cols["accuracy"] = points.table["accuracy"].to_numpy()
        cols["accuracy_band"] = points.table["accuracy_band"].to_numpy(dtype=float)
        cols["accuracy_source"] = points.table["accuracy_source"].to_numpy()
        exits = points.table.index.get_level_values("exit") if "exit" in points.table.index.names else None
        cols["config"] = np.array([configuration(s, e) for s, e in zip(splits, exits)] if exits is not None
                                  else [configuration(s) for s in splits], dtype=object)
        for c in EXIT_COLUMNS:
            if c in points.table.columns:
                cols[c] = points.table[c].to_numpy(dtype=float)
        if prep.importance is not None:
            cols["log10_cui"] = prep.importance.curve["log10_cui"].reindex(splits).to_numpy()
        prep.memo[key] = (points, point_frame(prof, points.table), cols)
    return prep.memo[key]


@dataclass
class Batch:
    """N scenarios' evaluation on one prepared group: arrays ``(N, D)``, frames on demand.

    ``latency``: the latency stage's columns (``overload`` the resources' names); ``ranked``:
    the ranking (:class:`~splitimpera.ranking.Ranked`); ``latency_err_s`` and ``tie`` the
    compute error band and the ties it causes; ``advice`` per scenario what would have to
    change (empty where a point meets the QoS); ``sims`` each scenario's simulation (SimPy)."""

    scenarios: list[Scenario]
    prep: Prepared
    points: DesignPoints
    model_columns: dict[str, np.ndarray]
    latency: dict[str, np.ndarray]
    ranked: Ranked
    latency_err_s: np.ndarray
    tie: np.ndarray
    advice: list[dict]
    sims: list
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scenarios)

    @property
    def columns(self) -> list[str]:
        """The table's columns before the ranking's: the latency stage's and the model's."""
        extra = ["config", *(c for c in EXIT_COLUMNS if c in self.model_columns),
                 *(["log10_cui"] if "log10_cui" in self.model_columns else [])]
        return TABLE_COLUMNS + extra

    def table(self, i: int) -> pd.DataFrame:
        """Scenario ``i``'s ranked table, as :func:`~splitimpera.pipeline.evaluate` returns it."""
        src = {**self.model_columns, **{c: v[i] for c, v in self.latency.items()}}
        table = pd.DataFrame({c: src[c] for c in self.columns}, index=self.points.table.index)
        table = ranked_frame(table, self.ranked, i)
        table["latency_err_s"] = self.latency_err_s[i]
        table["tie"] = self.tie[i]
        return table

    def result(self, i: int) -> Result:
        """Scenario ``i``'s :class:`~splitimpera.results.Result`."""
        prep, points = self.prep, self.points
        full = points.full_accuracy if points.full_accuracy is not None else prep.full_accuracy
        return Result(scenario=self.scenarios[i], table=self.table(i), profile=prep.profile,
                      input_shape=prep.traced.input_shape, full_accuracy=full, importance=prep.importance,
                      sim=self.sims[i], meta=self.meta[i], advice=self.advice[i])

    def closest(self, i: int, n: int) -> np.ndarray:
        """The ``n`` infeasible design points of scenario ``i`` nearest to feasibility, nearest
        first (:func:`~splitimpera.qos.closest`)."""
        r, lat = self.ranked, self.latency
        bad = np.flatnonzero(~r.feasible[i])
        util = np.stack([lat[f"{x}_utilisation"][i, bad] for x in RESOURCES], axis=-1)
        load = np.where(r.unstable[i, bad], np.fmax.reduce(util, axis=-1), 0.0)
        index = np.asarray(self.model_columns["index"], dtype=float)[bad]
        return bad[closest_order(r.violation[i, bad], load, lat["latency_s"][i, bad], index)[:n]]

    def tips(self, i: int, j: int, workload: bool = True) -> list[str]:
        """What would make design point ``j`` of scenario ``i`` feasible
        (:func:`~splitimpera.qos.change_tips`; ``workload`` False: overload tips in load, not rate)."""
        sc = self.scenarios[i]
        row = {c: v[j] for c, v in self.model_columns.items()}
        row.update({c: v[i, j] for c, v in {**self.latency, **self.ranked.values}.items()})
        return change_tips(row, sc.qos, sc.network, sc.workload if workload else None)

    def long_table(self, rows: list[int] | None = None) -> pd.DataFrame:
        """Scenarios ``rows`` (default all) × design points in one frame, scenario by scenario:
        the design point's keys (``split``, ``bottleneck`` …) as columns, then :meth:`table`'s
        columns (a constraint one scenario does not set has NaN margins there)."""
        rows = list(range(len(self))) if rows is None else list(rows)
        n, d = len(rows), len(self.points.table)
        r = self.ranked
        flat = lambda a: np.asarray(a)[rows].reshape(n * d)  # noqa: E731
        out = {name: np.tile(np.asarray(self.points.table.index.get_level_values(name), dtype=object), n)
               for name in self.points.table.index.names}
        for c in self.columns:
            out[c] = flat(self.latency[c]) if c in self.latency else np.tile(self.model_columns[c], n)
        if "deadline_miss_ratio" in r.values:
            out["deadline_miss_ratio"] = flat(r.values["deadline_miss_ratio"])
        ranks = pd.array(flat(r.rank), dtype="Int64")
        ranks[flat(r.rank) == 0] = pd.NA
        out.update({"latency_qos_s": flat(r.values["latency_qos_s"]), **{k: flat(v) for k, v in r.margins.items()},
                    "feasible": flat(r.feasible), "pareto": flat(r.pareto),
                    "reason": pd.Series([t for i in rows for t in r.reasons(i)], dtype=object),
                    "violation": flat(r.violation), "score": flat(r.score), "rank": ranks,
                    "latency_err_s": flat(self.latency_err_s), "tie": flat(self.tie)})
        return pd.DataFrame(out)


def evaluate_batch(scenarios: list[Scenario], prep: Prepared, progress=None) -> Batch:
    """Latency (by each scenario's ``analysis.engine``) and the joint QoS ranking of ``prep``'s
    design points under every scenario. The scenarios must share ``prep``'s model, data,
    analysis and bottleneck settings; row ``i`` equals :func:`~splitimpera.pipeline.evaluate`
    of ``scenarios[i]`` alone. ``progress``: the simulation's hook (SimPy scenarios)."""
    if not scenarios:
        raise ValueError("evaluate_batch needs at least one scenario")
    first = scenarios[0]
    names = select_splits(first, prep.splits, first.analysis.splits)
    points, frame, cols = selection(prep, names)
    keys = ProfileKeys()

    def compute_s(rows: pd.DataFrame, side: str, device) -> np.ndarray:  # kept per device: sweeps repeat them
        if rows is not frame:  # a subset (the simulation's overloaded points) asks the model
            return compute_time_s(rows, side, device).to_numpy()
        key = ("compute", tuple(names), side, keys(device))
        if key not in prep.memo:
            prep.memo[key] = compute_time_s(rows, side, device).to_numpy()
        return prep.memo[key]

    sims, lat = latency_arrays(scenarios, frame, compute_s, prep.profile, progress, points.decisions, keys)
    n, d = len(scenarios), len(frame)
    unstable = lat["overload"].any(axis=-1)
    lat["overload"] = overload_text(lat["overload"])
    full = {c: np.broadcast_to(np.asarray(v, dtype=float), (n, d)) for c, v in cols.items()
            if c in ("index", "accuracy", "head_mem_bytes")}
    full.update({c: (v if c == "overload" else v.astype(float, copy=False)) for c, v in lat.items()})
    qoss = [sc.qos for sc in scenarios]
    memo: dict = {}
    per_row = [memo.setdefault((q.model_dump_json(), keys(sc.device)), constraints(q, sc.device))
               for q, sc in zip(qoss, scenarios)]
    ranked = rank_arrays(full, qoss, per_row, unstable)
    # The compute model's own error: a band on the ranked latency, and ties within it.
    e_dev = by_key([keys(sc.device) for sc in scenarios],
                   lambda i: [compute_error_fraction(scenarios[i].device, prep.profile)])
    e_srv = by_key([keys(sc.server) for sc in scenarios],
                   lambda i: [compute_error_fraction(scenarios[i].server, prep.profile)])
    err, tie = tie_arrays(ranked.rank, ranked.values["latency_qos_s"], lat["device_compute_s"],
                          lat["server_compute_s"], e_dev, e_srv, [q.objective for q in qoss])
    meta = [point_meta(sc, prep, points, e_dev[i, 0], e_srv[i, 0], memo) for i, sc in enumerate(scenarios)]
    batch = Batch(scenarios, prep, points, cols, lat, ranked, err, tie, [], sims, meta)
    # What would have to change is decided here, with the ranking (qos.advise): renderers only show it.
    labels = points.table.index
    batch.advice = [{} if ranked.feasible[i].any() else
                    {labels[j]: batch.tips(i, j) for j in batch.closest(i, ADVICE_POINTS)} for i in range(n)]
    return batch


def point_meta(sc: Scenario, prep: Prepared, points: DesignPoints, e_dev: float, e_srv: float, memo: dict) -> dict:
    """A result's ``meta``: where the accuracy came from and which compute model ran."""
    meta = {"accuracy": points.info} if points.info else {}
    key = ("modes", id(sc.device), id(sc.server))
    if key not in memo:
        memo[key] = (sc.device, sc.server, compute_mode(prep.profile, "head", sc.device),
                     compute_mode(prep.profile, "tail", sc.server))
    meta["compute"] = {"device": memo[key][2], "server": memo[key][3],
                       "device_error_pct": None if np.isnan(e_dev) else round(float(e_dev) * 100, 3),
                       "server_error_pct": None if np.isnan(e_srv) else round(float(e_srv) * 100, 3)}
    return meta
