"""Results of a run: :class:`Result` (one row per design point), and result folders on disk.

A design point is ``(split, bottleneck)``, the one key: every per-point table is indexed by
that pandas MultiIndex, splits in topological order, bottlenecks in the order the scenario
names them. Folders are written atomically (:func:`write_outputs`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ._version import __version__
from .atomic import check_writable_dir
from .config.scenario import Scenario
from .errors import UserError
from .latency.simulation import SimResult
from .plain import jsonable, row_dict
from .qos import best_per_bottleneck, closest


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
    """

    scenario: Scenario
    table: pd.DataFrame
    profile: pd.DataFrame
    input_shape: tuple[int, ...]
    full_accuracy: float | None = None
    importance: object | None = None  # CUIResult when analysis.splits is "nominated"
    meta: dict = field(default_factory=dict)
    sim: SimResult | None = None  # the simulation behind the table (engine: simpy)

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
            "simulated_requests": None if self.sim is None else int(len(self.sim.requests)),
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
        ``result.json``, ``scenario.yaml`` (fully resolved) and, when simulated,
        ``requests.parquet`` (one row per simulated request,
        :data:`~splitimpera.latency.simulation.REQUEST_COLUMNS`). Returns the folder."""
        doc = {"summary": self.summary(),
               "points": [dict(zip(self.table.index.names, map(str, n)), **row_dict(r))
                          for n, r in self.table.iterrows()]}
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


def check_output_dir(out_dir: str | Path, scenario: Scenario, field: str | None = None) -> Path:
    """Raise a one-line :class:`UserError` unless :func:`write_outputs` can write
    ``<out_dir>/<scenario name>/``; call it before the work. Returns that folder; creates
    nothing. ``field`` names the option in the error line (e.g. ``-o``)."""
    out_dir = Path(out_dir)
    final = out_dir / scenario.name
    check_writable_dir(out_dir, field=field)
    try:
        there = final.exists() or final.is_symlink()
    except OSError as e:  # e.g. a path longer than the file system takes
        raise UserError(f"cannot use this folder: {e.strerror or e}", source=str(final), field=field) from None
    if there:
        check_writable_dir(final, field=field)
    return final


_WRITE_ERRNOS = {getattr(errno, n) for n in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EISDIR",
                                              "EEXIST", "EFBIG") if hasattr(errno, n)}


def write_outputs(out_dir: str | Path, scenario: Scenario, writers: dict, remove: tuple[str, ...] = ()) -> Path:
    """Write ``<out_dir>/<scenario name>/`` files plus the resolved ``scenario.yaml``.

    Every file is written in a temporary folder first and then moved into place with an
    atomic rename, so a failure leaves no half-written file; files other commands wrote in
    the same folder (``analyze`` beside ``simulate``) are kept.
    """
    out_dir = Path(out_dir)
    final = out_dir / scenario.name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder: {e.strerror}", source=str(out_dir)) from None
    try:
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{scenario.name}.tmp-"))
    except OSError as e:
        raise UserError(f"cannot write in the output folder: {e.strerror or e}", source=str(out_dir)) from None
    try:
        for name, write in {**writers, "scenario.yaml": lambda p: p.write_text(scenario.to_yaml())}.items():
            write(tmp / name)
        final.mkdir(exist_ok=True)
        # Files were created with ordinary modes (only the temporary folder is private).
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
        for name in remove:  # files this command owns but did not produce this time
            (final / name).unlink(missing_ok=True)
    except OSError as e:
        # The folder's own state (full disk, read-only, a file where a folder goes), not a bug.
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise UserError(f"cannot write the results: {e.strerror}", source=str(final)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def save_analysis(scenario: Scenario, res, out_dir: str | Path | None = None, accuracy=None) -> Path:
    """Write the importance analysis to ``<out_dir>/<scenario name>/``: ``cui.csv``,
    ``cui_per_image.parquet``, ``cui_per_class.csv``, ``nominations.json``, ``cui.png``; with
    ``accuracy`` (an :class:`~splitimpera.accuracy.design_points.AccuracyAnalysis`), also
    ``accuracy.csv`` (one row per split and bottleneck: accuracy, agreement, bytes per coder),
    ``accuracy_summary.json`` and ``accuracy.png``."""
    from .report.plots import plot_accuracy, plot_cui

    best = res.best_per_class()
    doc = {
        "scenario": scenario.name,
        # What the analysis was computed on: reports use it only beside results of the same.
        "inputs": {"model": scenario.model.model_dump(mode="json"), "data": scenario.data.model_dump(mode="json")},
        "settings": res.settings,
        "best": res.best,
        "nominated": [{k: jsonable(v) for k, v in r.items()} for _, r in res.nominated.iterrows()],
        "best_per_class": [{"class": int(c), **{k: jsonable(v) for k, v in r.items()}} for c, r in best.iterrows()],
    }
    writers = {
        "cui.csv": lambda p: res.curve.to_csv(p),
        "cui_per_image.parquet": lambda p: res.per_image.to_parquet(p),
        "cui_per_class.csv": lambda p: res.per_class.to_csv(p),
        "nominations.json": lambda p: p.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n"),
        "cui.png": lambda p: plot_cui(res, p, title=f"{scenario.name}: {scenario.model.name}"),
    }
    acc_files = ("accuracy.csv", "accuracy_summary.json", "accuracy.png")
    if accuracy is not None:
        adoc = {"scenario": scenario.name, "inputs": doc["inputs"], **accuracy.summary()}
        writers.update({
            "accuracy.csv": lambda p: accuracy.measured.table.to_csv(p, index_label="split"),
            "accuracy_summary.json": lambda p: p.write_text(json.dumps(adoc, indent=2, allow_nan=False) + "\n"),
            "accuracy.png": lambda p: plot_accuracy(accuracy.measured, p, coder=scenario.bottleneck.coder,
                                                    title=f"{scenario.name}: {scenario.model.name}"),
        })
    return write_outputs(out_dir if out_dir is not None else scenario.output.dir, scenario, writers,
                         remove=() if accuracy is not None else acc_files)
