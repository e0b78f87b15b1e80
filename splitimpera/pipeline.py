"""Wiring only: scenario → prepared stages → ranked design points.

``prepare`` runs the heavy stages once (model, trace, profile, importance, accuracy and bytes
of every design point); ``evaluate`` runs the latency engine and the QoS ranking on them
(the what-if and sweep fast path); ``run`` is both. Each stage lives in its own package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .accuracy.early_exit import EXIT_COLUMNS, configuration
from .accuracy.design_points import DesignPoints, analyze, design_points, full_model_accuracy
from .config.scenario import Scenario
from .data import load_data
from .errors import UserError
from .latency.compute import compute_mode, compute_time_s
from .latency.engine import TABLE_COLUMNS, latency_table, point_frame
from .latency.simulation import SimResult
from .model.cost import profile_model
from .model.loading import load_traced
from .prepared import Prepared
from .qos import advise, compute_error_fraction, mark_ties, rank
from .results.run import Result


def _select(scenario: Scenario, names: list[str], wanted, field: str = "analysis.splits") -> list[str]:
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


def prepare(scenario: Scenario) -> Prepared:
    """Model, trace, profile, full-model accuracy, (if asked) the importance analysis, and
    bytes and accuracy at every design point."""
    tm = load_traced(scenario)
    names = [sp.name for sp in tm.candidates]
    _select(scenario, names, scenario.analysis.splits)  # a misspelt split fails before the heavy work
    if scenario.exit is not None:
        _select(scenario, names, scenario.exit.splits, "exit.splits")
    ds = load_data(scenario, tm.input_shape, tm.output_width)
    full_acc = full_model_accuracy(scenario, tm.model, ds)
    importance = analyze(scenario, tm, ds) if scenario.analysis.splits == "nominated" else None
    prof = profile_model(tm)
    points = design_points(scenario, tm, prof, ds, full_acc, importance)
    return Prepared(traced=tm, profile=prof, full_accuracy=full_acc, importance=importance, points=points)


def _selection(prep: Prepared, names: list[str]) -> tuple[DesignPoints, pd.DataFrame, dict]:
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


def evaluate(scenario: Scenario, prep: Prepared, progress=None) -> Result:
    """Latency (by ``analysis.engine``) and the joint QoS ranking of ``prep``'s design points.

    ``scenario`` must share ``prep``'s model, data, analysis and bottleneck settings;
    everything else (device, server, network, workload, QoS) may differ. ``progress``: the
    simulation's size and progress hook (:func:`~splitimpera.latency.simulation.simulate`).
    """
    names = _select(scenario, prep.splits, scenario.analysis.splits)
    points, frame, cols = _selection(prep, names)

    def compute_s(rows: pd.DataFrame, side: str, device) -> np.ndarray:  # kept per device: sweeps repeat them
        key = ("compute", tuple(names), side, device.model_dump_json())
        if key not in prep.memo:
            prep.memo[key] = compute_time_s(rows, side, device).to_numpy()
        return prep.memo[key]

    sim, lat = latency_table(scenario, prep.profile, points.table, frame=frame, compute_s=compute_s,
                             progress=progress, decisions=points.decisions)
    cols = {**cols, **{c: lat[c].to_numpy() for c in lat.columns}}
    extra = ["config", *(c for c in EXIT_COLUMNS if c in cols), *(["log10_cui"] if "log10_cui" in cols else [])]
    table = pd.DataFrame({c: cols[c] for c in TABLE_COLUMNS + extra}, index=points.table.index)
    # QoS: the latency limit applies to qos.latency_statistic (mean, p50, p95, p99).
    table = rank(table, scenario.qos, scenario.device)
    # The compute model's own error: a band on the ranked latency, and ties within it.
    e_dev = compute_error_fraction(scenario.device, prep.profile)
    e_srv = compute_error_fraction(scenario.server, prep.profile)
    table = mark_ties(table, e_dev, e_srv, scenario.qos.objective)
    full = points.full_accuracy if points.full_accuracy is not None else prep.full_accuracy
    meta = {"accuracy": points.info} if points.info else {}
    meta["compute"] = {"device": compute_mode(prep.profile, "head", scenario.device),
                       "server": compute_mode(prep.profile, "tail", scenario.server),
                       "device_error_pct": None if np.isnan(e_dev) else round(e_dev * 100, 3),
                       "server_error_pct": None if np.isnan(e_srv) else round(e_srv * 100, 3)}
    # What would have to change is decided here, with the ranking: renderers only show it.
    tips = advise(table, scenario.qos, scenario.network, scenario.workload)
    return Result(scenario=scenario, table=table, profile=prep.profile, input_shape=prep.traced.input_shape,
                  full_accuracy=full, importance=prep.importance, sim=sim, meta=meta, advice=tips)


def run(scenario: Scenario, progress=None) -> Result:
    """Run the pipeline on a validated scenario: ``evaluate(scenario, prepare(scenario))``.

    Every design point ``(split, bottleneck)`` is ranked; the latency model is
    ``analysis.engine`` (``simpy``: simulated; ``analytic``: the closed form).
    """
    return evaluate(scenario, prepare(scenario), progress)


def simulate(scenario: Scenario, splits: list[str] | None = None) -> SimResult:
    """The discrete-event simulation of the scenario's design points (``splits``: only those),
    whatever ``analysis.engine`` says; see :class:`~splitimpera.latency.simulation.SimResult`."""
    from .latency.simulation import simulate as simulate_frame

    prep = prepare(scenario)
    names = _select(scenario, prep.splits, scenario.analysis.splits)
    if splits is not None:
        names = _select(scenario, names, splits, "splits")
    points = prep.points.select(names)
    return simulate_frame(scenario, point_frame(prep.profile, points.table), decisions=points.decisions)

