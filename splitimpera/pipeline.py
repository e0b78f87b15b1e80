"""The end-to-end pipeline behind ``splitimpera simulate``: scenario → ranked splits."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__
from .analytic import analytic_latency
from .data import load_dataset
from .errors import UserError
from .models import default_input_shape, load_model
from .profile import profile_model
from .qos import closest, rank
from .scenario import Scenario
from .splits import TracedModel, trace

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params", "head_mem_bytes",
    "bytes_sent", "device_compute_s", "uplink_s", "server_compute_s", "downlink_s", "latency_s", "energy_j",
    "accuracy",
]


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`run`: one row per split (index: split name, topological order).

    ``table`` columns: see :data:`TABLE_COLUMNS`, plus ``feasible``, ``reason``, ``rank``
    (1 = recommended, NA when infeasible), ``margin_<column>`` per QoS constraint and
    ``violation`` (worst relative overshoot). ``profile`` is the full per-split profile.
    """

    scenario: Scenario
    table: pd.DataFrame
    profile: pd.DataFrame
    input_shape: tuple[int, ...]
    full_accuracy: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def recommended(self) -> str | None:
        r = self.table["rank"]
        hit = r[r == 1]
        return None if hit.empty else str(hit.index[0])

    def ranked(self) -> pd.DataFrame:
        """Feasible splits in rank order, then the infeasible ones, closest first."""
        t = self.table
        feas = t[t["feasible"]].sort_values("rank")
        return pd.concat([feas, closest(t, n=len(t))])

    def summary(self) -> dict:
        sc, t = self.scenario, self.table
        rec = self.recommended
        out = {
            "scenario": sc.name,
            "splitimpera_version": __version__,
            "model": sc.model.name,
            "input_shape": list(self.input_shape),
            "device": sc.device.name, "server": sc.server.name, "network": sc.network.name,
            "num_splits": int(len(t)),
            "num_feasible": int(t["feasible"].sum()),
            "recommended": rec,
            "full_model_accuracy": self.full_accuracy,
            "flop_convention": "1 FLOP = 1 multiply-add (fvcore)",
        }
        if rec is not None:
            out["recommendation"] = _row_dict(t.loc[rec])
        else:
            out["closest"] = [dict(split=str(n), **_row_dict(r)) for n, r in closest(t).iterrows()]
        return out

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write ``<out_dir>/<scenario name>/`` atomically: ``splits.csv``, ``result.json``,
        ``scenario.yaml`` (fully resolved). Returns the folder."""
        out_dir = Path(out_dir if out_dir is not None else self.scenario.output.dir)
        final = out_dir / self.scenario.name
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output folder: {e.strerror}", source=str(out_dir)) from None
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{self.scenario.name}.tmp-"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; results are ordinary files
        try:
            self.table.to_csv(tmp / "splits.csv", index_label="split")
            doc = {"summary": self.summary(),
                   "splits": [dict(split=str(n), **_row_dict(r)) for n, r in self.table.iterrows()]}
            (tmp / "result.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
            (tmp / "scenario.yaml").write_text(self.scenario.to_yaml())
            old = None
            if final.exists():
                old = out_dir / f".{self.scenario.name}.old-{os.getpid()}"
                os.replace(final, old)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is pd.NA or v is None:
        return None
    return v


def _row_dict(row: pd.Series) -> dict:
    return {k: _jsonable(v) for k, v in row.items()}


def evaluate_accuracy(model: torch.nn.Module, dataset, batch_size: int = 64) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (fraction in [0, 1])."""
    from torch.utils.data import DataLoader

    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total if total else float("nan")


def _measure_full_accuracy(scenario: Scenario, model: torch.nn.Module, shape: tuple[int, ...]) -> float | None:
    """Top-1 accuracy of the whole model on the scenario's data (None without labelled data).

    Runs before anything is profiled or cached, so that bad data leaves nothing behind.
    """
    spec, src = scenario.data, scenario.source
    if spec.source in ("none", "synthetic"):
        return None
    try:
        ds = load_dataset(spec, shape, scenario.model.num_classes, seed=scenario.seed)
        if len(ds) == 0:
            raise UserError("the data set is empty", source=src, field="data")
        got = tuple(ds[0][0].shape)
    except UserError:
        raise
    except Exception as e:  # torchvision/PIL report unreadable folders and images in many ways
        raise UserError(f"cannot read the data: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        source=src, field="data.path" if spec.path else "data") from None
    if got != tuple(shape):
        raise UserError(f"samples of shape {'x'.join(map(str, got))} do not fit model.input_shape "
                        f"{'x'.join(map(str, shape))}", source=src, field="data.source")
    try:
        return evaluate_accuracy(model, ds, spec.batch_size)
    except Exception as e:
        raise UserError(f"cannot evaluate the model on the data: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        source=src, field="data.path" if spec.path else "data") from None


def run(scenario: Scenario) -> Result:
    """Run the pipeline on a validated scenario: model → splits → profile → latency → QoS."""
    tm = load_traced(scenario)
    model, shape = tm.model, tm.input_shape
    full_acc = _measure_full_accuracy(scenario, model, shape)
    prof = profile_model(tm)
    lat = analytic_latency(prof, scenario)
    table = pd.DataFrame(index=prof.index)
    for col in ("index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params"):
        table[col] = prof[col]
    # At batch 1 the head must hold its weights and its peak of live activations.
    table["head_mem_bytes"] = prof["head_state_bytes"] + prof["head_peak_act_bytes"]
    table = table.join(lat)
    # No bottleneck on the sent tensor: every split computes exactly the full model.
    table["accuracy"] = full_acc if full_acc is not None else np.nan
    table = rank(table[TABLE_COLUMNS], scenario.qos, scenario.device)
    return Result(scenario=scenario, table=table, profile=prof, input_shape=shape, full_accuracy=full_acc)


def load_traced(scenario: Scenario) -> TracedModel:
    """The scenario's model, loaded (seeded) and traced at its input shape."""
    torch.manual_seed(scenario.seed)
    ms = scenario.model
    try:
        model = load_model(ms.name, ms.weights, ms.num_classes)
    except UserError as e:
        raise e.at(source=scenario.source, field="model.name") from None
    shape = tuple(ms.input_shape) if ms.input_shape else default_input_shape(ms.name, model)
    try:
        return trace(model, shape)
    except UserError as e:
        raise e.at(source=scenario.source, field="model.input_shape") from None


def model_profile(scenario: Scenario) -> pd.DataFrame:
    """Load, trace and profile the scenario's model (as :func:`run` does), no data needed.

    Returns the per-split profile (:func:`~splitimpera.profile.profile_model`); its
    ``attrs["input_shape"]`` is the per-sample input shape used.
    """
    return profile_model(load_traced(scenario))
