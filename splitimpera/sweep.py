"""Parameter sweeps: a sweep file → scenarios → ranked design points, in-process or on Dask.

A sweep file names a base scenario and axes over its dotted keys (the keys of ``--set``)::

    name: demo_grid
    seed: 0                        # seeds the random block
    base: ../demo.yaml             # a path (relative to this file), a bundled name, or a mapping
    set: {analysis.engine: analytic}            # fixed overrides of every point
    grid:                          # the product of these lists
      network: [3g, lte, wifi5]
      workload.num_devices: [1, 4, 16]
    zip:                           # paired lists, one row per position
      network.rtt_ms: [20, 60]
      network.loss: [0.0, 0.01]
    random:                        # seeded samples
      samples: 20
      axes:
        network.uplink_mbps: {loguniform: [0.5, 50]}
        device: {choice: [rpi4, jetson_nano]}

The points are the product of the blocks (grid × zip rows × random samples; an absent block
is one empty row), at most ``max_points`` (default 100,000): a larger sweep is refused before
any point is drawn. Each point is the base with the ``set`` overrides and its own axis values.

Execution: points are grouped by what :func:`~splitimpera.pipeline.prepare` depends on (seed,
model, data, analysis, bottleneck; :data:`~splitimpera.prepared.PREPARE_SECTIONS`), so the heavy
stages run once per distinct group (as one Dask task whose result the cluster hands to every
worker that needs it), and each point runs only the evaluate step, in chunks of points.
A point whose scenario is invalid is reported (``status`` ``invalid`` with the one-line
error), the others finish; an internal error at one point is ``status`` ``error``, logged.

Results (:class:`SweepResult`): ``table``, one row per point × design point (``point``,
``point_key``, the axes' values, ``split``, ``bottleneck``, then :meth:`Result.table
<splitimpera.results.Result>`'s columns), and ``summary``, one row per point (status, the
recommended design point, its latency and margin under the limit, what would have to change
where nothing meets the QoS). With an output folder the rows are written as they come
(``.parts/``, consolidated into ``points.parquet`` and ``summary.parquet`` at the end), so an
interrupted sweep resumes where it stopped: a point whose ``point_key`` (a hash of the resolved
base scenario and the point's values) is on disk is not run again.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from . import cache
from ._version import __version__
from .atomic import atomic_write, check_writable_dir
from .config.hardware import DeviceProfile, NetworkProfile, _Strict, format_validation_error, read_yaml
from .config.scenario import SCENARIOS_DIR, FolderName, Scenario, bundled_file, scenario_from_dict
from .errors import UserError, first_line
from .pipeline import evaluate, prepare
from .qos import what_would_change
from .report.sweep import SWEEP_META
from .prepared import PREPARE_SECTIONS, Prepared, prepare_key

log = logging.getLogger(__name__)

STATUSES = ("ok", "invalid", "error")  # a point's outcome; ok and invalid are final, error is retried
POINT_COLUMNS = ["point", "point_key"]
SUMMARY_COLUMNS = [
    "status", "error", "num_points", "num_feasible", "recommended_split", "recommended_bottleneck",
    "latency_s", "latency_qos_s", "margin_latency_s", "energy_j", "accuracy", "bytes_sent",
    "closest", "to_change",
]
FILES = {"table": "points.parquet", "summary": "summary.parquet", "summary_csv": "summary.csv",
         "meta": SWEEP_META, "spec": "sweep.yaml", "base": "base.yaml", "parts": ".parts"}
FLUSH_EVERY_S = 2.0  # an interrupted sweep loses at most this much finished work


# --------------------------------------------------------------------------------------------
# The sweep file


class RandomAxis(_Strict):
    """One randomly sampled axis: exactly one of the four distributions."""

    uniform: tuple[float, float] | None = Field(None, description="[low, high): uniform")
    loguniform: tuple[float, float] | None = Field(None, description="[low, high): uniform in log, low > 0")
    integers: tuple[int, int] | None = Field(None, description="[low, high], both included")
    choice: list[Any] | None = Field(None, min_length=1, description="one of these values, equally likely")

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("uniform", "loguniform", "integers", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, integers, choice"
                             + (f" (got {', '.join(given)})" if given else ""))
        lo_hi = self.uniform or self.loguniform or self.integers
        if lo_hi is not None and not lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"low must not exceed high (got {list(lo_hi)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        return self

    def draw(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return _round(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = self.loguniform
            return _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.integers is not None:
            return int(rng.integers(self.integers[0], self.integers[1] + 1))
        return self.choice[int(rng.integers(len(self.choice)))]


def _round(x: float) -> float:
    """Six significant digits: readable in tables and YAML, far below any model's accuracy."""
    return float(f"{x:.6g}")


class RandomBlock(_Strict):
    samples: int = Field(gt=0, description="points drawn")
    axes: dict[str, RandomAxis] = Field(min_length=1)


class SweepSpec(_Strict):
    """A sweep file, validated (see the module doc)."""

    name: FolderName
    seed: int = Field(0, ge=0, description="seeds the random block (numpy Generator)")
    description: str = ""
    base: str | dict = Field(description="scenario file (relative to the sweep file), bundled name, or mapping")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides of every point")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="axes crossed with each other")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="axes paired by position")
    random: RandomBlock | None = None
    max_points: int = Field(
        100_000, gt=0, description="the most points a sweep may have (grid × zip rows × random samples); "
                                   "beyond it the sweep is refused before anything is drawn")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v):
        empty = [k for k, vals in v.items() if not vals]
        if empty:
            raise ValueError(f"{empty[0]}: give at least one value")
        return v

    @field_validator("zip")
    @classmethod
    def _zip(cls, v):
        lengths = {k: len(vals) for k, vals in v.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError("paired lists must have one length, got "
                             + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        if any(n == 0 for n in lengths.values()):
            raise ValueError("give at least one value per list")
        return v

    def sizes(self) -> dict[str, int]:
        """Points each block contributes (``grid``: the product of its lists; ``zip``: its rows;
        ``random.samples``); the sweep has their product."""
        return {"grid": math.prod(len(v) for v in self.grid.values()),
                "zip": len(next(iter(self.zip.values()))) if self.zip else 1,
                "random.samples": self.random.samples if self.random else 1}

    @property
    def axes(self) -> list[str]:
        """The swept keys in the order the file gives them (grid, zip, random)."""
        return [*self.grid, *self.zip, *(self.random.axes if self.random else {})]

    def points(self) -> list[dict[str, Any]]:
        """Every point's axis values (dotted key → value), in order: the grid varies fastest
        in its last key, then the zip rows, then the random samples."""
        grid = [dict(zip(self.grid, vals)) for vals in itertools.product(*self.grid.values())] if self.grid else [{}]
        n = len(next(iter(self.zip.values()))) if self.zip else 0
        pairs = [{k: vals[i] for k, vals in self.zip.items()} for i in range(n)] if self.zip else [{}]
        rnd: list[dict] = [{}]
        if self.random is not None:
            rng = np.random.default_rng(self.seed)
            rnd = [{k: ax.draw(rng) for k, ax in self.random.axes.items()} for _ in range(self.random.samples)]
        return [{**r, **g, **z} for r in rnd for g in grid for z in pairs]


def _schema_node(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``Literal[…] | X``), or None."""
    import types
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            node = _schema_node(arg)
            if node is not None:
                return node
    return None


def check_key(key: str) -> None:
    """Raise ValueError unless dotted ``key`` names a scenario field (down to the first field
    that is not a section: a mapping or a value); ``device``/``server``/``network`` walk
    their profiles, so ``network.uplink_mbps`` passes and ``network.uplink`` does not."""
    import difflib

    node: type[BaseModel] | None = Scenario
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"{key!r} is not a dotted key")
    for i, part in enumerate(parts):
        if node is None:
            return  # below a mapping or a value: the point's validation has the last word
        if part not in node.model_fields:
            close = difflib.get_close_matches(part, list(node.model_fields), n=1, cutoff=0.6)
            where = ".".join(parts[:i]) or "the scenario"
            raise ValueError(f"no field {part!r} in {where}" + (f"; did you mean {close[0]}?" if close else ""))
        node = _schema_node(node.model_fields[part].annotation)
        if node is None and i == 0 and part in ("device", "server"):
            node = DeviceProfile
        elif node is None and i == 0 and part == "network":
            node = NetworkProfile


@dataclass(frozen=True)
class _Base:
    """The base scenario as the workers rebuild every point from it (plain data, picklable)."""

    data: dict
    source: str
    base_dir: str
    fixed: dict  # the sweep's ``set``

    def scenario(self, values: dict[str, Any]) -> Scenario:
        return scenario_from_dict(self.data, source=self.source, overrides={**self.fixed, **values},
                                  base_dir=Path(self.base_dir))


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep: the spec, its base and its points (``values``: each point's axis values;
    ``keys``: each point's ``point_key``)."""

    spec: SweepSpec
    source: str
    base: _Base
    base_scenario: Scenario
    values: list[dict[str, Any]]
    keys: list[str]

    @property
    def axes(self) -> list[str]:
        return self.spec.axes


SWEEPS_DIR = Path(__file__).resolve().parent / "scenarios" / "sweeps"  # bundled (the repo's scenarios/sweeps)


def list_sweeps() -> list[str]:
    """Names of the bundled sweeps (``demo_uplink``, …), sorted; :func:`load_sweep` takes them."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def load_sweep(spec: str | Path | dict | SweepSpec, source: str | None = None, base_dir: str | Path | None = None,
               ) -> Sweep:
    """Read and validate a sweep (a file, a mapping or a :class:`SweepSpec`); its base scenario
    (with ``set``) must be valid. Every error is a one-line :class:`UserError` naming the file
    and the key. ``base_dir``: where a relative ``base`` path is (default: the file's folder,
    else the working directory)."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        source = source or str(path)
        path = bundled_file(path, SWEEPS_DIR, "sweep") or path
        data = read_yaml(path)
        base_dir = base_dir or path.resolve().parent
    elif isinstance(spec, SweepSpec):
        data, source = spec.model_dump(mode="json", exclude_none=True), source or "<sweep>"
    else:
        data, source = spec, source or "<sweep>"
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    if not isinstance(data, dict):
        raise UserError(f"a sweep must be a YAML mapping, got {'an empty file' if data is None else type(data).__name__}",
                        source=source)
    try:
        sp = SweepSpec.model_validate(data)
    except ValidationError as e:
        fld, msg = format_validation_error(e, model=SweepSpec)
        raise UserError(msg, source=source, field=fld) from None
    sizes = sp.sizes()
    total = math.prod(sizes.values())
    if total > sp.max_points:  # before a single point is drawn: their list alone could exhaust memory
        largest = max(sizes, key=sizes.get)
        parts = " × ".join(f"{k} {n:,}" for k, n in sizes.items() if n > 1)
        raise UserError(f"the sweep would have {total:,} points ({parts}), more than max_points "
                        f"({sp.max_points:,}); sweep fewer, or raise max_points", source=source, field=largest)
    seen: dict[str, str] = {}
    blocks = [("set", sp.set), ("grid", sp.grid), ("zip", sp.zip), ("random.axes", sp.random.axes if sp.random else {})]
    for block, keys in blocks:
        for k in keys:
            try:
                check_key(k)
            except ValueError as e:
                raise UserError(str(e), source=source, field=f"{block}.{k}") from None
            if k == "bottleneck":  # the design points' own column
                raise UserError("sweep bottleneck.name (and the other bottleneck.* keys), not the whole section",
                                source=source, field=f"{block}.{k}")
            if k in seen:
                raise UserError(f"also in {seen[k]}: a key is set in one place", source=source, field=f"{block}.{k}")
            seen[k] = block
    base = _load_base(sp, source, base_dir, self_path=path.resolve() if isinstance(spec, (str, Path)) else None)
    try:
        base_sc = base.scenario({})
    except UserError as e:
        raise UserError(f"the base scenario with set is invalid: {e.line()}", source=source, field="base") from None
    from .accuracy import predictors

    # What bottleneck.predictor: auto resolves to (keys unchanged while nothing is validated).
    fp = cache.key("sweep", __version__, base_sc.resolved(), *([predictors.VALIDATED] if predictors.VALIDATED else []))
    drawn = sp.points()
    points: dict[str, dict] = {}
    for v in drawn:
        points.setdefault(cache.key(fp, _canonical(v)), v)  # equal points run once, where first drawn
    if len(points) < len(drawn):
        log.warning("%s: %d point(s) repeat an earlier one (a value listed twice, or a random draw "
                    "that came up again); each runs once", source, len(drawn) - len(points))
    return Sweep(sp, source, base, base_sc, list(points.values()), list(points))


def _canonical(v: dict) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _load_base(sp: SweepSpec, source: str, base_dir: Path, self_path: Path | None = None) -> _Base:
    if isinstance(sp.base, dict):
        return _Base(sp.base, source, str(base_dir), dict(sp.set))
    path = Path(os.path.normpath(base_dir / sp.base))
    if not path.is_file():
        try:
            path = bundled_file(Path(sp.base), SCENARIOS_DIR) or path
        except UserError as e:
            raise UserError(e.message, source=source, field="base") from None
    if not path.is_file():
        raise UserError(f"scenario file not found: {path}", source=source, field="base")
    if self_path is not None and path.resolve() == self_path:
        raise UserError("refers to itself: name the scenario the sweep varies", source=source, field="base")
    return _Base(read_yaml(path), str(path), str(path.resolve().parent), dict(sp.set))


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


def _prepare_task(scenario: Scenario) -> Prepared | _Failed:
    """The heavy stages of one group, without the model itself (the evaluate step needs only
    profile, points and importance): a few hundred kB to ship to a worker, not the weights."""
    try:
        prep = prepare(scenario)
    except UserError as e:
        return _Failed(e.line())
    return replace(prep, traced=_InputShape(tuple(prep.traced.input_shape)))


@dataclass
class _Chunk:
    """What a chunk of points gives back: design-point rows and one summary row per point."""

    table: pd.DataFrame | None
    summary: list[dict]


def _evaluate_chunk(prep: Prepared | _Failed, base: _Base, points: list[tuple[int, str, dict]]) -> _Chunk:
    """Evaluate ``points`` (``(number, point_key, axis values)``) on one prepared group."""
    tables, rows = [], []
    for number, key, values in points:
        row = {"point": number, "point_key": key}
        try:
            sc = base.scenario(values)
            if isinstance(prep, _Failed):
                raise UserError(prep.line)
            res = evaluate(sc, prep)
        except UserError as e:
            rows.append({**row, "status": "invalid", "error": e.line()})
            continue
        except Exception as e:  # one point's bug must not lose the sweep's other points; logged in full
            log.exception("point %d (%s) failed", number, _canonical(values))
            rows.append({**row, "status": "error", "error": f"{type(e).__name__}: {first_line(e)}"})
            continue
        rows.append({**row, **_summarise(res)})
        t = res.table.reset_index()
        t.insert(0, "point_key", key)
        t.insert(0, "point", number)
        tables.append(t)
    return _Chunk(pd.concat(tables, ignore_index=True) if tables else None, rows)


def _summarise(res) -> dict:
    """One summary row of a point's result: the recommended point and its margin, or where
    nothing meets the QoS the closest point and what would have to change for it."""
    t, qos = res.table, res.scenario.qos
    out: dict[str, Any] = {"status": "ok", "error": None, "num_points": int(len(t)),
                           "num_feasible": int(t["feasible"].sum())}
    rec = res.recommended
    if rec is not None:
        r = t.loc[rec]
        out.update(recommended_split=rec.split, recommended_bottleneck=rec.bottleneck,
                   latency_s=float(r["latency_s"]), latency_qos_s=float(r["latency_qos_s"]),
                   margin_latency_s=(qos.max_latency_s - float(r["latency_qos_s"])
                                     if qos.max_latency_s is not None else math.nan),
                   energy_j=float(r["energy_j"]), accuracy=float(r["accuracy"]), bytes_sent=int(r["bytes_sent"]))
    else:
        tips = what_would_change(t, qos, res.scenario.network, n=1)
        (split, bn), change = next(iter(tips.items()))
        out.update(closest=f"{split} · {bn}", to_change="; or ".join(change),
                   margin_latency_s=(qos.max_latency_s - float(t.loc[(split, bn), "latency_qos_s"])
                                     if qos.max_latency_s is not None else math.nan))
    return out


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class SweepResult:
    """A sweep's outcome. ``table``: one row per point × design point (``point``,
    ``point_key``, the axes' values under their dotted keys, ``split``, ``bottleneck``, then
    the ranked result's columns: latency (s), energy (J), accuracy, feasible, rank, reason …).
    ``summary``: one row per point (``point``, ``point_key``, the axes, :data:`SUMMARY_COLUMNS`).
    ``meta``: the spec, counts and timings."""

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
        _write_final(folder, self.table, self.summary, self.meta, self.base_yaml)
        return folder


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _write_final(folder: Path, table: pd.DataFrame, summary: pd.DataFrame, meta: dict, base_yaml: str) -> None:
    try:
        atomic_write(folder / FILES["table"], _parquet_bytes(table))
        atomic_write(folder / FILES["summary"], _parquet_bytes(summary))
        atomic_write(folder / FILES["summary_csv"], summary.to_csv(index=False))
        atomic_write(folder / FILES["meta"], json.dumps(meta, indent=2, default=str) + "\n")
        atomic_write(folder / FILES["base"], base_yaml)
    except OSError as e:
        raise UserError(f"cannot write the sweep's results: {e.strerror or e}", source=str(folder)) from None


def _axis_columns(sweep: Sweep) -> dict[str, Callable[[Any], Any]]:
    """Per axis, how its values go into a table column: numbers stay numbers, names stay
    strings, and an axis mixing kinds (or giving mappings) is written as JSON text."""
    out = {}
    for axis in sweep.axes:
        vals = [v[axis] for v in sweep.values]
        if all(isinstance(x, bool) for x in vals) or all(isinstance(x, str) for x in vals):
            out[axis] = lambda x: x
        elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            out[axis] = float if any(isinstance(x, float) for x in vals) else int
        else:
            out[axis] = lambda x: json.dumps(x, sort_keys=True)
    return out


class _Journal:
    """Finished points on disk: ``.parts/`` files written as points finish, read back on resume.

    A part is a pair of Parquet files (design-point rows, then summary rows); a point counts as
    finished when its summary row is on disk. ``folder`` None: kept in memory only."""

    def __init__(self, folder: Path | None, keys: list[str], flush_s: float = FLUSH_EVERY_S):
        self.folder, self.flush_s = folder, flush_s
        self.current = dict(zip(keys, range(len(keys))))
        self.tables: list[pd.DataFrame] = []
        self.summaries: list[pd.DataFrame] = []
        self.pending_t: list[pd.DataFrame] = []
        self.pending_s: list[dict] = []
        self.last_flush = time.monotonic()
        self.seq = 0

    def load(self) -> set[str]:
        """Read what an earlier run of this sweep finished; return the point keys not to run again."""
        if self.folder is None:
            return set()
        tabs, sums = [], []
        for name, into in ((FILES["table"], tabs), (FILES["summary"], sums)):
            if (self.folder / name).is_file():
                into.append(pd.read_parquet(self.folder / name))
        parts = self.folder / FILES["parts"]
        if parts.is_dir():
            for p in sorted(parts.glob("*.summary.parquet")):
                sums.append(pd.read_parquet(p))
            for p in sorted(parts.glob("*.points.parquet")):
                tabs.append(pd.read_parquet(p))
        if not sums:
            return set()
        s = pd.concat(sums, ignore_index=True).drop_duplicates("point_key", keep="last")
        s = s[s["point_key"].isin(self.current.keys()) & s["status"].isin(["ok", "invalid"])]
        done = set(s["point_key"])
        stale = sum(len(x) for x in sums) - len(s)
        if stale:
            log.info("%s: %d stored summary rows are of other points or base scenarios; ignored", self.folder, stale)
        if tabs:
            t = pd.concat(tabs, ignore_index=True)
            t = t[t["point_key"].isin(done)].drop_duplicates(["point_key", "split", "bottleneck"], keep="last")
            t["point"] = t["point_key"].map(self.current)
            self.tables.append(t)
        s = s.assign(point=s["point_key"].map(self.current))
        self.summaries.append(s)
        return done

    def add(self, chunk: _Chunk) -> None:
        if chunk.table is not None:
            self.pending_t.append(chunk.table)
        self.pending_s.extend(chunk.summary)

    def flush(self, force: bool = False) -> None:
        if not self.pending_s or (not force and time.monotonic() - self.last_flush < self.flush_s):
            return
        t = pd.concat(self.pending_t, ignore_index=True) if self.pending_t else None
        s = pd.DataFrame(self.pending_s)
        if self.folder is not None:
            parts = self.folder / FILES["parts"]
            stem = f"{time.time_ns():020d}-{self.seq:05d}-{secrets.token_hex(3)}"
            try:
                if t is not None:  # rows first: a summary row on disk means its rows are there
                    atomic_write(parts / f"{stem}.points.parquet", _parquet_bytes(t))
                atomic_write(parts / f"{stem}.summary.parquet", _parquet_bytes(s))
            except OSError as e:
                raise UserError(f"cannot write the sweep's results: {e.strerror or e}", source=str(parts)) from None
            self.seq += 1
        if t is not None:
            self.tables.append(t)
        self.summaries.append(s)
        self.pending_t, self.pending_s = [], []
        self.last_flush = time.monotonic()

    def result(self, sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The consolidated table and summary, in point order, with the axis columns."""
        self.flush(force=True)
        enc = _axis_columns(sweep)
        axes = pd.DataFrame({a: [enc[a](v[a]) for v in sweep.values] for a in sweep.axes},
                            index=pd.Index(range(len(sweep.values)), name="point"))
        s = pd.concat(self.summaries, ignore_index=True) if self.summaries else pd.DataFrame(columns=POINT_COLUMNS)
        s = s.reindex(columns=POINT_COLUMNS + SUMMARY_COLUMNS).sort_values("point", kind="stable")
        s = s.join(axes, on="point")[POINT_COLUMNS + sweep.axes + SUMMARY_COLUMNS].reset_index(drop=True)
        s["point"] = s["point"].astype("int64")
        for col in ("num_points", "num_feasible"):
            s[col] = s[col].astype("Int64")
        s["bytes_sent"] = s["bytes_sent"].astype("Int64")
        tabs = [t for t in self.tables if len(t)]
        if tabs:
            t = pd.concat(tabs, ignore_index=True).sort_values("point", kind="stable")
            rest = [c for c in t.columns if c not in POINT_COLUMNS + sweep.axes]  # read back: axes again
            t = t[POINT_COLUMNS + rest].join(axes, on="point")[POINT_COLUMNS + sweep.axes + rest].reset_index(drop=True)
            t["rank"] = t["rank"].astype("Int64")
        else:
            t = pd.DataFrame(columns=POINT_COLUMNS + sweep.axes + ["split", "bottleneck"])
        return t, s

    def clean(self) -> None:
        if self.folder is None:
            return
        parts = self.folder / FILES["parts"]
        if parts.is_dir():
            for p in parts.iterdir():
                p.unlink(missing_ok=True)
            parts.rmdir()


# --------------------------------------------------------------------------------------------
# Running


def _prepare_group(values: dict[str, Any]) -> str:
    """The part of a point's values that :func:`~splitimpera.pipeline.prepare` depends on."""
    return _canonical({k: v for k, v in values.items()
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
    journal = _Journal(folder, sw.keys, flush_s)
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
            invalid.extend(_evaluate_chunk(_Failed(e.line()), sw.base, pts).summary)
            continue
        key = prepare_key(rep)
        prepared.setdefault(key, (rep, []))[1].extend(pts)
    journal.add(_Chunk(None, invalid))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(sw.values), initial=len(done), desc=sw.spec.name, unit="pt", disable=not progress,
               dynamic_ncols=True, leave=True)
    failed = [len(invalid)]
    bar.update(len(invalid))
    bar.set_postfix(failed=failed[0], refresh=False)

    def finished(chunk: _Chunk) -> None:
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
                prep = _prepare_task(rep)
                for c in _chunks(pts, chunk_size or 25):
                    finished(_evaluate_chunk(prep, sw.base, c))
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
    size = chunk_size or max(1, min(64, math.ceil(n / (4 * n_workers))))
    base = client.scatter(sw.base, broadcast=True)
    futures = []
    for key, (rep, pts) in prepared.items():
        prep = client.submit(_prepare_task, rep, key=f"prepare-{cache.key(key)}", pure=False)
        futures += [client.submit(_evaluate_chunk, prep, base, c, pure=False) for c in _chunks(pts, size)]
    try:
        for fut in as_completed(futures):
            finished(fut.result())
            fut.release()
    finally:  # an error (or Ctrl-C) here must not leave this sweep's tasks running on the cluster
        client.cancel(futures)
