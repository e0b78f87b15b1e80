"""Sweep files: parsing, validation and the points they name.

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
any point is drawn. Each point is the base with the ``set`` overrides and its own axis values,
and has a ``point_key``: a hash of the resolved base scenario and the point's values.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .. import cache
from .._version import __version__
from ..config.hardware import DeviceProfile, NetworkProfile
from ..config.strict import StrictModel, format_validation_error
from ..config.yaml_files import read_yaml
from ..config.scenario import SCENARIOS_DIR, FolderName, Scenario, bundled_file, scenario_from_dict
from ..errors import UserError

log = logging.getLogger(__name__)


class RandomAxis(StrictModel):
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


class RandomBlock(StrictModel):
    samples: int = Field(gt=0, description="points drawn")
    axes: dict[str, RandomAxis] = Field(min_length=1)


class SweepSpec(StrictModel):
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
class SweepBase:
    """The base scenario as the workers rebuild every point from it (plain data, picklable)."""

    data: dict
    source: str
    base_dir: str
    fixed: dict  # the sweep's ``set``

    def scenario(self, values: dict[str, Any]) -> Scenario:
        """The point's scenario: the base with ``set`` and then ``values`` (dotted key → value)."""
        return scenario_from_dict(self.data, source=self.source, overrides={**self.fixed, **values},
                                  base_dir=Path(self.base_dir))


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep: the spec, its base and its points (``values``: each point's axis values;
    ``keys``: each point's ``point_key``)."""

    spec: SweepSpec
    source: str
    base: SweepBase
    base_scenario: Scenario
    values: list[dict[str, Any]]
    keys: list[str]

    @property
    def axes(self) -> list[str]:
        return self.spec.axes


SWEEPS_DIR = Path(__file__).resolve().parent.parent / "scenarios" / "sweeps"  # bundled (the repo's scenarios/sweeps)


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
    from ..accuracy import predictors

    # What bottleneck.predictor: auto resolves to (keys unchanged while nothing is validated).
    fp = cache.key("sweep", __version__, base_sc.resolved(), *([predictors.VALIDATED] if predictors.VALIDATED else []))
    drawn = sp.points()
    points: dict[str, dict] = {}
    for v in drawn:
        points.setdefault(cache.key(fp, canonical(v)), v)  # equal points run once, where first drawn
    if len(points) < len(drawn):
        log.warning("%s: %d point(s) repeat an earlier one (a value listed twice, or a random draw "
                    "that came up again); each runs once", source, len(drawn) - len(points))
    return Sweep(sp, source, base, base_sc, list(points.values()), list(points))


def canonical(v: dict) -> str:
    """``v`` as canonical JSON text: equal values, equal text (a point's identity)."""
    return json.dumps(v, sort_keys=True, default=str)


def _load_base(sp: SweepSpec, source: str, base_dir: Path, self_path: Path | None = None) -> SweepBase:
    if isinstance(sp.base, dict):
        return SweepBase(sp.base, source, str(base_dir), dict(sp.set))
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
    return SweepBase(read_yaml(path), str(path), str(path.resolve().parent), dict(sp.set))
