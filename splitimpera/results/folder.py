"""Reading a result folder back: :func:`load_result`, the one way from a folder to a
:class:`~splitimpera.results.run.Result`.

A result folder is what ``simulate -o`` / ``analyze -o`` write: ``splits.csv``,
``result.json``, ``scenario.yaml`` and, when present, ``cui.csv``, ``nominations.json``,
``accuracy.csv`` and ``accuracy_summary.json`` (written by ``analyze``). Folders written
before design points or before the advice was saved still load; one whose scenario this
version cannot read is refused with one line naming the command to rerun.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..config.scenario import scenario_from_dict
from ..errors import UserError, first_line
from ..qos import advise
from .run import Result

log = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "splits.csv", "fidelity.csv")  # any one marks a result folder (fidelity: measure)
RERUN = "rerun `splitimpera simulate SCENARIO -o DIR` to rewrite it"


@dataclass(frozen=True)
class SavedAnalysis:
    """What ``analyze`` wrote beside a result (files of another model or data set are left
    out): ``cui`` (``cui.csv``, indexed by split), ``nominations`` (``nominations.json``),
    ``accuracy`` (``accuracy.csv``, split × bottleneck) and ``accuracy_summary``; None where
    absent."""

    cui: pd.DataFrame | None = None
    nominations: dict | None = None
    accuracy: pd.DataFrame | None = None
    accuracy_summary: dict | None = None


def read_points(path: Path, bottleneck: str = "none") -> pd.DataFrame:
    """A result folder's ``splits.csv`` indexed by ``(split, bottleneck)``; a folder written
    before design points (no ``bottleneck`` column) reads as the one ``bottleneck`` it ran."""
    head = pd.read_csv(path, nrows=0).columns
    if "exit" in head:  # early exit: the threshold τ is the third level of the key
        return pd.read_csv(path, index_col=["split", "bottleneck", "exit"],
                           dtype={"split": str, "bottleneck": str, "exit": str, "config": str})
    if "bottleneck" in head:
        return pd.read_csv(path, index_col=["split", "bottleneck"], dtype={"split": str, "bottleneck": str})
    t = pd.read_csv(path, index_col="split", dtype={"split": str})
    t.index = pd.MultiIndex.from_arrays([t.index, [bottleneck] * len(t)], names=["split", "bottleneck"])
    return t


def _old_bottleneck(summary: dict) -> str:
    """The one bottleneck of a folder written before design points (its summary names it)."""
    name = (summary.get("bottleneck") or {}).get("name")
    return name if isinstance(name, str) else "none"


def ranked_table(table: pd.DataFrame) -> pd.DataFrame:
    """A read ``splits.csv`` with the ranking's columns as a fresh run has them: ``feasible``,
    ``pareto`` and ``tie`` as booleans, ``rank`` as Int64 (a folder without one: feasible
    points by mean latency), ``reason`` as text, ``latency_qos_s`` (absent: the mean), absent
    FLOPs, energy and compute error band as NaN."""
    t = table.copy()
    missing = [c for c in ("feasible", "latency_s", "bytes_sent", "index") if c not in t.columns]
    if missing:
        raise ValueError(f"splits.csv lacks column(s) {', '.join(missing)}")
    for col in ("pareto", "tie"):
        t[col] = t[col] if col in t.columns else False
    if "latency_qos_s" not in t.columns:
        t["latency_qos_s"] = t["latency_s"]
    for col in ("feasible", "pareto", "tie"):
        t[col] = t[col].astype(str).str.lower().isin(["true", "1"])
    if "rank" not in t.columns:  # a hand-made folder: feasible points by mean latency
        order = t[t["feasible"]].sort_values(["latency_s", "index"], kind="stable").index
        t["rank"] = pd.Series(range(1, len(order) + 1), index=order).reindex(t.index)
    t["rank"] = pd.array(t["rank"], dtype="Int64")
    reason = t["reason"].astype(object) if "reason" in t.columns else pd.Series(None, index=t.index, dtype=object)
    t["reason"] = reason.where(reason.notna(), "").astype(str)
    if "overload" in t.columns:  # "" (nothing overloaded) reads back as NaN
        over = t["overload"].astype(object)
        t["overload"] = over.where(over.notna(), "").astype(str)
    for col in ("head_flops", "tail_flops", "energy_j", "latency_err_s"):
        if col not in t.columns:
            t[col] = np.nan
    return t


def _saved_analysis(path: Path, scenario: dict) -> SavedAnalysis | None:
    """``analyze``'s files in ``path`` computed on this scenario's model and data."""
    inputs_here = {"model": scenario.get("model"), "data": scenario.get("data")}
    cui = pd.read_csv(path / "cui.csv", index_col="split") if (path / "cui.csv").is_file() else None
    noms = json.loads((path / "nominations.json").read_text()) if (path / "nominations.json").is_file() else None
    if cui is not None and (noms or {}).get("inputs") != inputs_here:
        # Left by an `analyze` of another model or data set in the same folder: not this run's.
        log.warning("%s: ignoring cui.csv/nominations.json from another model or data set", path)
        cui = noms = None
    acc = acc_doc = None
    if (path / "accuracy.csv").is_file() and (path / "accuracy_summary.json").is_file():
        acc_doc = json.loads((path / "accuracy_summary.json").read_text())
        if acc_doc.get("inputs") == inputs_here:
            acc = pd.read_csv(path / "accuracy.csv", index_col="split")
        else:
            log.warning("%s: ignoring accuracy.csv from another model or data set", path)
            acc_doc = None
    if cui is None and acc is None:
        return None
    return SavedAnalysis(cui, noms, acc, acc_doc)


def _advice(doc: dict, table: pd.DataFrame, scenario) -> dict:
    """The saved advice; a folder written before it was saved gets it decided now."""
    if "advice" not in doc:
        return advise(table, scenario.qos, scenario.network, scenario.workload)
    names = list(table.index.names)
    return {tuple(str(a[n]) for n in names): list(a["tips"]) for a in doc["advice"]}


def load_result(path: str | Path) -> Result:
    """The :class:`Result` saved in ``path`` (:meth:`Result.save`); a missing or unreadable
    file is a one-line :class:`UserError`. The folder's table, summary, scenario and advice
    come back as they were; ``profile`` is empty and ``sim`` None (the request count is kept
    in ``meta``)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("not a result folder (run `splitimpera simulate SCENARIO -o DIR` first)", source=str(path))
    missing = [n for n in ("splits.csv", "result.json", "scenario.yaml") if not (path / n).is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}: not a simulate result folder", source=str(path))
    try:
        doc = json.loads((path / "result.json").read_text())
        summary = doc["summary"]
        table = ranked_table(read_points(path / "splits.csv", _old_bottleneck(summary)))
        data = yaml.safe_load((path / "scenario.yaml").read_text())
        analysis = _saved_analysis(path, data if isinstance(data, dict) else {})
    except (ValueError, KeyError, OSError, yaml.YAMLError) as e:
        raise UserError(f"unreadable result folder: {first_line(e)}", source=str(path)) from None
    try:
        scenario = scenario_from_dict(data, source=str(path / "scenario.yaml"), base_dir=path)
    except UserError as e:
        raise UserError(f"this version cannot read the folder's scenario.yaml ({first_line(e)}); {RERUN}",
                        source=str(path)) from None
    meta = {"compute": summary.get("compute_model"), "simulated_requests": summary.get("simulated_requests")}
    accuracy = {k: v for k, v in (summary.get("bottleneck") or {}).items() if k not in ("names", "coder", "nominal")}
    if accuracy:
        meta["accuracy"] = accuracy
    return Result(scenario=scenario, table=table, profile=pd.DataFrame(),
                  input_shape=tuple(summary.get("input_shape") or ()), full_accuracy=summary.get("full_model_accuracy"),
                  meta=meta, advice=_advice(doc, table, scenario), analysis=analysis)


def has_results(path: Path) -> bool:
    """``path`` holds a result file of its own (:data:`RESULT_FILES`)."""
    return any((path / n).is_file() for n in RESULT_FILES)


def result_dirs(dirs: list[str | Path]) -> list[Path]:
    """The result folders named by ``dirs``, in order, each once.

    A folder with no result file of its own but with result folders in it (the folder given
    to ``simulate -o``, e.g. ``results/`` holding ``results/demo/``) stands for those, sorted
    by name. Any other folder is kept as given, for :func:`load_result` to reject.
    """
    out: dict[Path, Path] = {}  # resolved → as given: a folder named twice is reported once
    for d in map(Path, dirs):
        subs: list[Path] = []
        if d.is_dir() and not has_results(d):
            try:
                subs = sorted((p for p in d.iterdir() if p.is_dir() and has_results(p)), key=lambda p: p.name)
            except OSError as e:
                raise UserError(f"unreadable folder: {e.strerror}", source=str(d)) from None
            if subs:
                log.info("%s holds no results itself: reporting its result folders %s", d,
                         ", ".join(p.name for p in subs))
        for p in subs or [d]:
            out.setdefault(p.resolve(), p)
    return list(out.values())
