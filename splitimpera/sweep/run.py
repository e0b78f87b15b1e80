"""Running a sweep: its points → scenarios → ranked design points, in-process or on Dask.

Points are grouped by what :func:`~splitimpera.pipeline.prepare` depends on
(:data:`~splitimpera.prepared.PREPARE_SECTIONS`), so the heavy stages run once per distinct
group (as one Dask task whose result the cluster hands to every worker that needs it), and
each point runs only the evaluate step, in chunks of points. A point whose scenario is invalid
is reported (``status`` ``invalid`` with the one-line error), the others finish; an internal
error at one point is ``status`` ``error``, logged.

Results (:class:`SweepResult`): ``table``, one row per point × design point (``point``,
``point_key``, the axes' values, ``split``, ``bottleneck``, then :meth:`Result.table
<splitimpera.results.Result>`'s columns), and ``summary``, one row per point (status, the
recommended design point, its latency and margin under the limit, what would have to change
where nothing meets the QoS). With an output folder the rows are written as they come and an
interrupted sweep resumes where it stopped (:mod:`~splitimpera.sweep.journal`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from .. import cache
from .._version import __version__
from ..atomic import atomic_write, check_writable_dir
from ..config.scenario import Scenario
from ..errors import UserError, first_line
from ..batch import Batch, evaluate_batch
from ..pipeline import prepare
from ..prepared import PREPARE_SECTIONS, Prepared, prepare_key
from .journal import FILES, FLUSH_EVERY_S, STATUSES, Chunk, Journal, write_final
from .spec import Sweep, SweepBase, SweepSpec, canonical, load_sweep

log = logging.getLogger(__name__)

# Points per batch. A batch costs a few milliseconds plus tens of microseconds a point (the
# analytic engine): a Dask task of MAX_CHUNK points keeps the scheduler's per-task overhead
# (about a millisecond) small, and four or more tasks per worker keep both workers busy to the end.
MAX_CHUNK = 2000
SIMPY_CHUNK = 25  # a simulated point takes a fraction of a second: small chunks, steady progress


def default_chunk(sw: Sweep) -> int:
    """Points per batch unless the caller says: :data:`MAX_CHUNK`, :data:`SIMPY_CHUNK` on SimPy."""
    return SIMPY_CHUNK if sw.base_scenario.analysis.engine == "simpy" else MAX_CHUNK


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SweepResult:
    """A sweep's outcome. ``table``: one row per point × design point (``point``,
    ``point_key``, the axes' values under their dotted keys, ``split``, ``bottleneck``, then
    the ranked result's columns: latency (s), energy (J), accuracy, feasible, rank, reason …).
    ``summary``: one row per point (``point``, ``point_key``, the axes,
    :data:`~splitimpera.sweep.journal.SUMMARY_COLUMNS`). ``meta``: the spec, counts and timings."""

    name: str
    axes: list[str]
    table: pd.DataFrame
    summary: pd.DataFrame
    meta: dict = field(default_factory=dict)
    base_yaml: str = ""
    path: Path | None = None  # the folder it was written to, if any

    @property
    def failed(self) -> pd.DataFrame:
        """The summary rows of the points that did not run (status ``invalid`` or ``error``)."""
        return self.summary[self.summary["status"] != "ok"]

    def save(self, out_dir: str | Path) -> Path:
        """Write ``<out_dir>/<name>/``: ``points.parquet`` (the table), ``summary.parquet`` and
        ``summary.csv``, ``sweep.json`` (spec, counts, timings), ``base.yaml`` (the resolved base
        scenario). Each file atomically. Returns the folder."""
        folder = Path(out_dir) / self.name
        write_final(folder, self.table, self.summary, self.meta, self.base_yaml)
        return folder


# --------------------------------------------------------------------------------------------
# Work on one group of points (runs on a Dask worker, or in-process)


@dataclass(frozen=True)
class _InputShape:
    """What :func:`~splitimpera.pipeline.evaluate` reads of the traced model: its input shape."""

    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Failed:
    """A group whose prepare step found bad input: every point in it is invalid with ``line``."""

    line: str


def prepare_task(scenario: Scenario) -> Prepared | _Failed:
    """The heavy stages of one group, without the model itself (the evaluate step needs only
    profile, points and importance): a few hundred kB to ship to a worker, not the weights."""
    try:
        prep = prepare(scenario)
    except UserError as e:
        return _Failed(e.line())
    return replace(prep, traced=_InputShape(tuple(prep.traced.input_shape)))


def evaluate_chunk(prep: Prepared | _Failed, base: SweepBase, points: list[tuple[int, str, dict]]) -> Chunk:
    """Evaluate ``points`` (``(number, point_key, axis values)``) on one prepared group, as
    one batch (:func:`~splitimpera.batch.evaluate_batch`): arrays over points × design points,
    one frame for the chunk's rows."""
    rows: dict[int, dict] = {}
    valid, scenarios = [], []
    for number, key, values in points:
        rows[number] = {"point": number, "point_key": key}
        try:
            sc = base.scenario(values)
            if isinstance(prep, _Failed):
                raise UserError(prep.line)
        except UserError as e:
            rows[number].update(status="invalid", error=e.line())
            continue
        valid.append((number, key, values))
        scenarios.append(sc)
    if not scenarios:
        return Chunk(None, list(rows.values()))
    try:
        batches = [(evaluate_batch(scenarios, prep), valid)]
    except Exception:  # one point's bad input or bug must not lose the others: each on its own
        batches = []
        for p, sc in zip(valid, scenarios):
            try:
                batches.append((evaluate_batch([sc], prep), [p]))
            except UserError as e:
                rows[p[0]].update(status="invalid", error=e.line())
            except Exception as e:  # logged in full
                log.exception("point %d (%s) failed", p[0], canonical(p[2]))
                rows[p[0]].update(status="error", error=f"{type(e).__name__}: {first_line(e)}")
    tables = []
    for batch, pts in batches:
        for i, (number, _, _) in enumerate(pts):
            rows[number].update(summarise(batch, i))
        t = batch.long_table()
        d = len(batch.points.table)
        t.insert(0, "point_key", np.repeat([k for _, k, _ in pts], d))
        t.insert(0, "point", np.repeat([n for n, _, _ in pts], d))
        tables.append(t)
    return Chunk(pd.concat(tables, ignore_index=True) if tables else None, list(rows.values()))


def summarise(batch: Batch, i: int) -> dict:
    """Scenario ``i``'s summary row: the recommended point and its margin, or where nothing
    meets the QoS the closest point and what would have to change for it."""
    sc, r, lat = batch.scenarios[i], batch.ranked, batch.latency
    qos, labels = sc.qos, batch.points.table.index
    out: dict[str, Any] = {"status": "ok", "error": None, "num_points": int(r.rank.shape[1]),
                           "num_feasible": int(r.feasible[i].sum())}
    margin = lambda j: (qos.max_latency_s - float(r.values["latency_qos_s"][i, j])  # noqa: E731
                        if qos.max_latency_s is not None else math.nan)
    best = np.flatnonzero(r.rank[i] == 1)
    if len(best):
        j = best[0]
        out.update(recommended_split=str(labels[j][0]), recommended_bottleneck=str(labels[j][1]),
                   latency_s=float(lat["latency_s"][i, j]), latency_qos_s=float(r.values["latency_qos_s"][i, j]),
                   margin_latency_s=margin(j), energy_j=float(lat["energy_j"][i, j]),
                   accuracy=float(batch.model_columns["accuracy"][j]), bytes_sent=int(lat["bytes_sent"][i, j]))
    else:
        j = batch.closest(i, 1)[0]
        out.update(closest=f"{labels[j][0]} · {labels[j][1]}", to_change="; or ".join(batch.tips(i, j, workload=False)),
                   margin_latency_s=margin(j))
    return out


# --------------------------------------------------------------------------------------------
# Running


def _prepare_group(values: dict[str, Any]) -> str:
    """The part of a point's values that :func:`~splitimpera.pipeline.prepare` depends on."""
    return canonical({k: v for k, v in values.items()
                       if k.split(".")[0] in PREPARE_SECTIONS and k != "analysis.engine"})


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def sweep(spec: str | Path | dict | SweepSpec | Sweep, client=None, *, workers: int = 0, out_dir: str | Path | None = None,
          progress: bool = False, chunk_size: int | None = None, flush_s: float = FLUSH_EVERY_S) -> SweepResult:
    """Run a sweep (a file, a mapping or a :class:`SweepSpec`; see the module doc).

    ``client``: a ``dask.distributed.Client`` to run on (an existing cluster); else
    ``workers`` > 0 starts a ``LocalCluster`` of that many single-threaded worker processes for
    this call, and ``workers`` 0 runs in this process without Dask. ``out_dir``: write
    ``<out_dir>/<name>/`` as points finish and resume from what is there (points already
    finished with the same base scenario are not run again). ``progress``: a progress bar on
    stderr (points done, failed, rate). ``chunk_size``: points per task (default: a few
    tasks per worker). ``flush_s``: finished points are written at most this often (an
    interrupted run loses less than that much work). Bad input (the sweep file, the base scenario) is a :class:`UserError`;
    an invalid point is a summary row with status ``invalid``.
    """
    sw = spec if isinstance(spec, Sweep) else load_sweep(spec)
    folder = None
    if out_dir is not None:
        check_writable_dir(out_dir, field="-o")
        folder = Path(out_dir) / sw.spec.name
    journal = Journal(folder, sw.keys, flush_s)
    done = journal.load()
    todo = [(i, k, v) for i, (k, v) in enumerate(zip(sw.keys, sw.values)) if k not in done]
    t0 = time.perf_counter()
    groups: dict[str, list] = {}
    for p in todo:
        groups.setdefault(_prepare_group(p[2]), []).append(p)
    # One prepare per distinct key: groups whose values differ but resolve alike ("int*" and
    # the names it expands to) share one. A group whose own values are invalid reports each point.
    prepared: dict[str, tuple[Scenario, list]] = {}
    invalid: list[dict] = []
    for pvals, pts in groups.items():
        try:
            rep = sw.base.scenario(json.loads(pvals))
        except UserError as e:
            invalid.extend(evaluate_chunk(_Failed(e.line()), sw.base, pts).summary)
            continue
        key = prepare_key(rep)
        prepared.setdefault(key, (rep, []))[1].extend(pts)
    journal.add(Chunk(None, invalid))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(sw.values), initial=len(done), desc=sw.spec.name, unit="pt", disable=not progress,
               dynamic_ncols=True, leave=True)
    failed = [len(invalid)]
    bar.update(len(invalid))
    bar.set_postfix(failed=failed[0], refresh=False)

    def finished(chunk: Chunk) -> None:
        journal.add(chunk)
        bad = sum(r["status"] != "ok" for r in chunk.summary)
        failed[0] += bad
        bar.update(len(chunk.summary))
        bar.set_postfix(failed=failed[0], refresh=False)
        journal.flush()

    n_todo = sum(len(p) for _, p in prepared.values())
    try:
        if client is not None:
            _run_dask(client, sw, prepared, finished, chunk_size)
        elif workers > 0:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                              silence_logs=logging.ERROR) as cluster, Client(cluster) as cl:
                _run_dask(cl, sw, prepared, finished, chunk_size)
        else:
            for rep, pts in prepared.values():
                prep = prepare_task(rep)
                for c in _chunks(pts, chunk_size or default_chunk(sw)):
                    finished(evaluate_chunk(prep, sw.base, c))
    finally:
        bar.close()
        journal.flush(force=True)
    elapsed = time.perf_counter() - t0
    table, summary = journal.result(sw)
    counts = summary["status"].value_counts()
    meta = {
        "name": sw.spec.name, "splitimpera_version": __version__, "source": sw.source,
        "spec": sw.spec.model_dump(mode="json", exclude_none=True), "axes": sw.axes,
        "base_source": sw.base.source, "points": len(sw.values),
        **{f"points_{s}": int(counts.get(s, 0)) for s in STATUSES},
        "resumed": len(done), "run_points": n_todo + len(invalid), "prepared_groups": len(prepared),
        "seconds": elapsed, "engine": sw.base_scenario.analysis.engine,
        # SimPy simulates each point on its own; the analytic engine evaluates a chunk at once.
        "evaluation": "per point" if sw.base_scenario.analysis.engine == "simpy" else "batched",
    }
    res = SweepResult(sw.spec.name, sw.axes, table, summary, meta, sw.base_scenario.to_yaml(), folder)
    if folder is not None:
        res.save(out_dir)
        atomic_write(folder / FILES["spec"], yaml.safe_dump(meta["spec"], sort_keys=False, allow_unicode=True))
        journal.clean()
    return res


def _run_dask(client, sw: Sweep, prepared: dict[str, tuple[Scenario, list]], finished, chunk_size: int | None,
              ) -> None:
    """Prepare each group once as a task; evaluate its points in chunks, each chunk a task
    that takes the prepared group as input (Dask moves it to the workers that need it)."""
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    n = sum(len(p) for _, p in prepared.values())
    size = chunk_size or max(1, min(default_chunk(sw), math.ceil(n / (4 * n_workers))))
    base = client.scatter(sw.base, broadcast=True)
    futures = []
    for key, (rep, pts) in prepared.items():
        prep = client.submit(prepare_task, rep, key=f"prepare-{cache.key(key)}", pure=False)
        futures += [client.submit(evaluate_chunk, prep, base, c, pure=False) for c in _chunks(pts, size)]
    try:
        for fut in as_completed(futures):
            finished(fut.result())
            fut.release()
    finally:  # an error (or Ctrl-C) here must not leave this sweep's tasks running on the cluster
        client.cancel(futures)
