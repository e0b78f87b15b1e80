"""The result of a run: :class:`Result` (one row per design point, and the advice decided
with the ranking), and how it is written to a folder (:meth:`Result.save`).

A design point is ``(split, bottleneck)``, the one key: every per-point table is indexed by
that pandas MultiIndex, splits in topological order, bottlenecks in the order the scenario
names them. :func:`~splitimpera.results.folder.load_result` reads a folder back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .._version import __version__
from ..config.scenario import Scenario
from ..errors import UserError
from ..latency.simulation import SimResult
from ..plain import row_dict
from ..qos import best_per_bottleneck, closest
from .outputs import write_outputs


class DesignPoint(NamedTuple):
    """Where to cut and what is done to the sent tensor; a tuple, so ``table.loc[point]`` works."""

    split: str
    bottleneck: str


class ExitPoint(NamedTuple):
    """A design point of a scenario with early exit: ``exit`` is ``"none"`` (no exit head) or
    the threshold τ of the exit head at the split (``"0.9"``)."""

    split: str
    bottleneck: str
    exit: str


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`~splitimpera.pipeline.run`: one row per design point.

    ``table`` is indexed by ``(split, bottleneck)``, or ``(split, bottleneck, exit)`` with an
    ``exit`` section (:class:`ExitPoint`; ``config`` names LC, RC, SC or EE); its columns are
    :data:`~splitimpera.latency.engine.TABLE_COLUMNS`, plus ``feasible``, ``pareto`` (over
    points), ``reason``, ``rank`` (1 = recommended, NA when infeasible), ``margin_<column>``
    per QoS constraint and ``violation`` (worst relative overshoot). ``profile`` is the full
    per-split profile (index: split).

    The latency columns come from ``scenario.analysis.engine``: with ``simpy`` (default) they
    are means over the simulated requests (``latency_s`` is the mean latency, the sum of the
    mean stages including ``device_wait_s`` and ``server_wait_s``) and ``sim`` holds the
    :class:`~splitimpera.latency.simulation.SimResult`; with ``analytic`` they are the
    one-request closed form, the waits are 0, the percentile, throughput and deadline columns
    NaN, ``sim`` None.

    ``advice``: what would have to change, decided with the ranking
    (:func:`~splitimpera.qos.what_would_change`): the closest infeasible points, closest first,
    each mapped to its first-order tips; empty when a point meets the QoS. ``analysis``: the
    importance and accuracy files ``analyze`` left beside a result read from a folder
    (:class:`~splitimpera.results.folder.SavedAnalysis`), else None. A result read from a
    folder has ``sim`` None and its request count in ``meta["simulated_requests"]``.
    """

    scenario: Scenario
    table: pd.DataFrame
    profile: pd.DataFrame
    input_shape: tuple[int, ...]
    full_accuracy: float | None = None
    importance: object | None = None  # CUIResult when analysis.splits is "nominated"
    meta: dict = field(default_factory=dict)
    sim: SimResult | None = None  # the simulation behind the table (engine: simpy)
    advice: dict = field(default_factory=dict)  # point → tips, closest first (qos.what_would_change)
    analysis: object | None = None  # SavedAnalysis of a folder read back

    @property
    def simulated_requests(self) -> int | None:
        """How many requests were simulated (after warm-up); None on the analytic engine."""
        if self.sim is not None:
            return int(len(self.sim.requests))
        return self.meta.get("simulated_requests")

    @property
    def simulated(self) -> bool:
        """The latency columns are simulation means (percentiles exist)."""
        return self.simulated_requests is not None

    @property
    def bottlenecks(self) -> list[str]:
        """The bottlenecks ranked, in the scenario's order."""
        return list(dict.fromkeys(self.table.index.get_level_values("bottleneck")))

    @property
    def recommended(self) -> DesignPoint | None:
        """The design point ranked first, or None when no point meets the QoS."""
        r = self.table["rank"]
        hit = r[r == 1]
        if hit.empty:
            return None
        return (ExitPoint if self.table.index.nlevels == 3 else DesignPoint)(*map(str, hit.index[0]))

    def for_bottleneck(self, name: str) -> pd.DataFrame:
        """The rows of one bottleneck, indexed by split (ranks stay the joint ranks)."""
        if name not in self.bottlenecks:
            raise UserError(f"bottleneck {name!r} was not ranked (ranked: {', '.join(self.bottlenecks)})")
        return self.table.xs(name, level="bottleneck")

    def ranked(self) -> pd.DataFrame:
        """Feasible points in rank order, then the infeasible ones, closest first."""
        t = self.table
        feas = t[t["feasible"]].sort_values("rank")
        return pd.concat([feas, closest(t, n=len(t))])

    def best_per_bottleneck(self) -> pd.DataFrame:
        """One row per bottleneck: its best split and how it ranks overall
        (:func:`~splitimpera.qos.best_per_bottleneck`)."""
        return best_per_bottleneck(self.table)

    def summary(self) -> dict:
        sc, t = self.scenario, self.table
        rec = self.recommended
        out = {
            "scenario": sc.name,
            "splitimpera_version": __version__,
            "model": sc.model.name,
            "input_shape": list(self.input_shape),
            "device": sc.device.name, "server": sc.server.name, "network": sc.network.name,
            "num_splits": int(t.index.get_level_values("split").nunique()),
            "num_points": int(len(t)),
            "num_feasible": int(t["feasible"].sum()),
            "recommended": None if rec is None else rec._asdict(),
            "full_model_accuracy": self.full_accuracy,
            "flop_convention": "1 FLOP = 1 multiply-add (fvcore)",
            "engine": sc.analysis.engine,
            "compute_model": self.meta.get("compute"),
            "simulated_requests": self.simulated_requests,
            "bottleneck": {"names": self.bottlenecks, "coder": sc.bottleneck.coder,
                           "nominal": sc.bottleneck.nominal, **self.meta.get("accuracy", {})},
            "best_per_bottleneck": [{"bottleneck": str(b), **row_dict(r)}
                                    for b, r in self.best_per_bottleneck().iterrows()],
        }
        if rec is not None:
            out["recommendation"] = row_dict(t.loc[rec])
        else:
            out["closest"] = [dict(zip(t.index.names, map(str, n)), **row_dict(r)) for n, r in closest(t).iterrows()]
        if "exit" in t.index.names:
            out["configurations"] = {c: int(n) for c, n in t["config"].value_counts(sort=False).items()}
        return out

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write ``<out_dir>/<scenario name>/`` atomically: ``splits.csv`` and ``splits.parquet``
        (one row per design point, columns ``split``, ``bottleneck``, then the table's),
        ``result.json`` (the summary, every point, and the advice), ``scenario.yaml`` (fully
        resolved) and, when simulated,
        ``requests.parquet`` (one row per simulated request,
        :data:`~splitimpera.latency.simulation.REQUEST_COLUMNS`). Returns the folder."""
        doc = {"summary": self.summary(),
               "points": [dict(zip(self.table.index.names, map(str, n)), **row_dict(r))
                          for n, r in self.table.iterrows()],
               "advice": [{**dict(zip(self.table.index.names, map(str, p))), "tips": list(tips)}
                          for p, tips in self.advice.items()]}
        writers = {
            "splits.csv": lambda p: self.table.to_csv(p),
            "splits.parquet": lambda p: self.table.to_parquet(p),
            "result.json": lambda p: p.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n"),
        }
        if self.sim is not None:
            writers["requests.parquet"] = lambda p: self.sim.requests.to_parquet(p, index=False)
        # An earlier simulated run's requests must not sit beside an analytic run's table.
        stale = () if self.sim is not None else ("requests.parquet",)
        return write_outputs(out_dir if out_dir is not None else self.scenario.output.dir, self.scenario, writers,
                             remove=stale)


