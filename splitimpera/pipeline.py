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
from .latency.analytic import analytic_latency
from .latency.compute import extra_columns
from .accuracy.cui import cui
from .data import load_dataset
from .errors import UserError, first_line
from .model.loading import default_input_shape, load_model
from .model.cost import profile_model
from .qos import closest, rank
from .config.scenario import Scenario
from .latency.simulation import SimResult, simulate, split_table
from .model.splits import OUTPUT, PREDICTION_BYTES, TracedModel, trace

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params", "head_mem_bytes",
    "bytes_sent", "device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
    "downlink_s", "latency_s", "latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps",
    "deadline_miss_ratio", "uplink_utilisation", "energy_j", "accuracy", "accuracy_source",
]
# Columns only the simulation measures; the analytic engine (one request, no queueing) leaves them NaN.
SIM_ONLY_COLUMNS = ["latency_p50_s", "latency_p95_s", "latency_p99_s", "throughput_rps", "deadline_miss_ratio"]


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`run`: one row per split (index: split name, topological order).

    ``table`` columns: see :data:`TABLE_COLUMNS`, plus ``feasible``, ``reason``, ``rank``
    (1 = recommended, NA when infeasible), ``margin_<column>`` per QoS constraint and
    ``violation`` (worst relative overshoot). ``profile`` is the full per-split profile.

    The latency columns come from ``scenario.analysis.engine``: with ``simpy`` (default) they
    are means over the simulated requests (``latency_s`` is the mean latency, the sum of the
    mean stages including ``device_wait_s`` and ``server_wait_s``) and ``sim`` holds the
    :class:`~splitimpera.latency.simulation.SimResult`; with ``analytic`` they are the one-request closed
    form, the waits are 0, the percentile, throughput and deadline columns NaN, ``sim`` None.
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
            "engine": sc.analysis.engine,
            "simulated_requests": None if self.sim is None else int(len(self.sim.requests)),
            "bottleneck": {"name": sc.bottleneck.name, "coder": sc.bottleneck.coder,
                           **self.meta.get("accuracy", {})},
        }
        if rec is not None:
            out["recommendation"] = _row_dict(t.loc[rec])
        else:
            out["closest"] = [dict(split=str(n), **_row_dict(r)) for n, r in closest(t).iterrows()]
        return out

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write ``<out_dir>/<scenario name>/`` atomically: ``splits.csv``, ``result.json``,
        ``scenario.yaml`` (fully resolved) and, when simulated, ``requests.parquet`` (one row
        per simulated request, :data:`~splitimpera.latency.simulation.REQUEST_COLUMNS`). Returns the folder."""
        doc = {"summary": self.summary(),
               "splits": [dict(split=str(n), **_row_dict(r)) for n, r in self.table.iterrows()]}
        writers = {
            "splits.csv": lambda p: self.table.to_csv(p, index_label="split"),
            "splits.parquet": lambda p: self.table.to_parquet(p),
            "result.json": lambda p: p.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n"),
        }
        if self.sim is not None:
            writers["requests.parquet"] = lambda p: self.sim.requests.to_parquet(p, index=False)
        # An earlier simulated run's requests must not sit beside an analytic run's table.
        stale = () if self.sim is not None else ("requests.parquet",)
        return write_outputs(out_dir if out_dir is not None else self.scenario.output.dir, self.scenario, writers,
                             remove=stale)


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
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{scenario.name}.tmp-"))
    try:
        for name, write in {**writers, "scenario.yaml": lambda p: p.write_text(scenario.to_yaml())}.items():
            write(tmp / name)
        final.mkdir(exist_ok=True)
        # Files were created with ordinary modes (only the temporary folder is private).
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
        for name in remove:  # files this command owns but did not produce this time
            (final / name).unlink(missing_ok=True)
    finally:
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
    from .data import batches

    correct = total = 0
    with torch.no_grad():
        for x, y in batches(dataset, batch_size):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total if total else float("nan")


def load_data(scenario: Scenario, shape: tuple[int, ...], num_outputs: int | None = None):
    """The scenario's data set, checked against the model's input shape and, when
    ``num_outputs`` (the model's output width) is given, its labels (None for ``none``).

    Runs before anything is profiled or cached, so that bad data leaves nothing behind.
    """
    spec, src = scenario.data, scenario.source
    where = "data.path" if spec.path else "data"
    try:
        ds = load_dataset(spec, shape, num_outputs or scenario.model.num_classes, seed=scenario.seed)
        if ds is None:
            return None
        if len(ds) == 0:
            raise UserError("the data set is empty", source=src, field="data")
        got = tuple(ds[0][0].shape)
    except UserError:
        raise
    except Exception as e:  # torchvision/PIL report unreadable folders and images in many ways
        raise UserError(f"cannot read the data: {first_line(e)}", source=src, field=where) from None
    _check_samples("the data", got, shape, label_count(ds), num_outputs, src, "data.source", "model.num_classes")
    return ds


def _check_samples(what: str, got: tuple, shape: tuple, n_labels: int | None, width: int | None, src: str,
                   shape_field: str, label_field: str) -> None:
    """Samples must have the model's input shape and labels within its outputs."""
    if got != tuple(shape):
        raise UserError(f"samples of shape {'x'.join(map(str, got))} do not fit model.input_shape "
                        f"{'x'.join(map(str, shape))}", source=src, field=shape_field)
    if width is not None and n_labels is not None and n_labels > width:
        raise UserError(f"{what} has {n_labels} classes but the model outputs {width}", source=src,
                        field=label_field)


def label_count(ds) -> int | None:
    """Number of classes a data set's labels span (max label + 1), without loading images."""
    from torch.utils.data import Subset, TensorDataset

    idx = None
    if isinstance(ds, Subset):
        idx, ds = list(ds.indices), ds.dataset
    if isinstance(ds, TensorDataset):
        y = ds.tensors[1] if idx is None else ds.tensors[1][idx]
        return int(y.max()) + 1 if len(y) else None
    targets = getattr(ds, "targets", None)  # torchvision ImageFolder
    if targets is not None:
        t = targets if idx is None else [targets[i] for i in idx]
        return max(t) + 1 if len(t) else None
    return None


def output_width(tm: TracedModel) -> int | None:
    """The model's number of outputs per sample (classes), from the tracing run."""
    out = tm.output_value
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() >= 1 else None



def _measure_full_accuracy(scenario: Scenario, model: torch.nn.Module, ds) -> float | None:
    """Top-1 accuracy of the whole model on labelled data (None without it)."""
    if ds is None or scenario.data.source == "synthetic":
        return None
    try:
        return evaluate_accuracy(model, ds, scenario.data.batch_size)
    except Exception as e:
        raise UserError(f"cannot evaluate the model on the data: {first_line(e)}", source=scenario.source,
                        field="data.path" if scenario.data.path else "data") from None


def analyze(scenario: Scenario, tm: TracedModel | None = None, data=None, *, progress: bool = False):
    """I-SPLIT importance analysis of the scenario: its :class:`~splitimpera.accuracy.cui.CUIResult`.

    Settings come from ``analysis.cui``; the curve covers ``analysis.cui.classes`` when set.
    """
    tm = tm if tm is not None else load_traced(scenario)
    ds = data if data is not None else load_data(scenario, tm.input_shape, output_width(tm))
    if ds is None:
        raise UserError("the importance analysis needs data (set data.source)", source=scenario.source,
                        field="data.source")
    c = scenario.analysis.cui
    try:
        res = cui(tm, ds, preset=c.preset, method=c.method, target=c.target, reduction=c.reduction,
                  aggregate=c.aggregate, splits=c.splits, trim=c.trim, prominence=c.prominence, top_k=c.top_k,
                  batch_size=scenario.data.batch_size, progress=progress)
        return res.for_classes(c.classes) if c.classes else res
    except UserError as e:
        raise e.at(source=scenario.source, field="analysis.cui") from None


@dataclass(frozen=True)
class Prepared:
    """The heavy part of a run (see :func:`prepare`), reusable across what-if changes.

    Depends only on ``model``, ``data`` and ``analysis`` (and the seed): what-if changes to
    the device, server, network, workload or QoS reuse it through :func:`evaluate`.
    """

    traced: TracedModel
    profile: pd.DataFrame
    full_accuracy: float | None
    importance: object | None  # CUIResult with analysis.splits "nominated"
    # Under an active bottleneck (see BottleneckSpec.active): per split accuracy,
    # accuracy_source and bytes_sent (mean coded bytes per sample); and what it came from.
    accuracy: pd.DataFrame | None = None
    accuracy_info: dict = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        """Splits to rank, topological order (only the nominated ones when asked)."""
        names = list(self.profile.index)
        if self.importance is not None:
            nominated = set(self.importance.nominated["split"])
            names = [n for n in names if n in nominated]
        return names


def prepare(scenario: Scenario) -> Prepared:
    """Model, trace, profile, full-model accuracy, (if asked) the importance analysis, and
    accuracy and bytes under the scenario's bottleneck."""
    tm = load_traced(scenario)
    ds = load_data(scenario, tm.input_shape, output_width(tm))
    full_acc = _measure_full_accuracy(scenario, tm.model, ds)
    importance = analyze(scenario, tm, ds) if scenario.analysis.splits == "nominated" else None
    prof = profile_model(tm)
    acc, info = (bottleneck_accuracy(scenario, tm, prof, ds, full_acc, importance)
                 if scenario.bottleneck.active else (None, {}))
    return Prepared(traced=tm, profile=prof, full_accuracy=full_acc, importance=importance, accuracy=acc,
                    accuracy_info=info)


def evaluate(scenario: Scenario, prep: Prepared) -> Result:
    """Latency (by ``analysis.engine``) and QoS ranking of ``prep``'s splits under ``scenario``.

    ``scenario`` must share ``prep``'s model, data and analysis settings; everything else
    (device, server, network, workload, QoS) may differ: this is the what-if fast path.
    """
    prof, names = prep.profile, prep.splits
    sent = prof
    if prep.accuracy is not None:
        # The bottleneck decides what is sent: its measured (or nominal) coded bytes; its own
        # encoder and decoder add to the device's and the server's compute.
        sent = prof.copy()
        sent["tx_bytes"] = np.ceil(prep.accuracy["bytes_sent"].reindex(prof.index)).astype(np.int64)
        for col in extra_columns("head") + extra_columns("tail"):
            sent[col] = prep.accuracy[col].reindex(prof.index).fillna(0.0)
    sim, lat = latency_table(scenario, sent, names)
    table = pd.DataFrame(index=prof.index[prof.index.isin(names)])
    for col in ("index", "op", "shape", "head_flops", "tail_flops", "head_params", "tail_params"):
        table[col] = prof[col]
    # At batch 1 the head must hold its weights and its peak of live activations.
    table["head_mem_bytes"] = prof["head_state_bytes"] + prof["head_peak_act_bytes"]
    table = table.join(lat)
    if prep.accuracy is not None:
        table["accuracy"] = prep.accuracy["accuracy"]
        table["accuracy_source"] = prep.accuracy["accuracy_source"]
    else:
        # No bottleneck on the sent tensor: every split computes exactly the full model.
        table["accuracy"] = prep.full_accuracy if prep.full_accuracy is not None else np.nan
        table["accuracy_source"] = "full model" if prep.full_accuracy is not None else "unknown"
    table["uplink_utilisation"] = uplink_utilisation(table["bytes_sent"], scenario)
    table = table[TABLE_COLUMNS]
    if prep.importance is not None:
        table["log10_cui"] = prep.importance.curve.loc[table.index, "log10_cui"]
    # QoS: the latency limit applies to qos.latency_statistic (mean, p50, p95, p99).
    table = rank(table, scenario.qos, scenario.device)
    return Result(scenario=scenario, table=table, profile=prof, input_shape=prep.traced.input_shape,
                  full_accuracy=prep.full_accuracy, importance=prep.importance, sim=sim,
                  meta={"accuracy": prep.accuracy_info} if prep.accuracy_info else {})


def run(scenario: Scenario) -> Result:
    """Run the pipeline on a validated scenario: model → splits → profile → latency → QoS.

    ``evaluate(scenario, prepare(scenario))``. The latency model is ``analysis.engine``:
    ``simpy`` simulates the ranked splits (only the nominated ones with
    ``analysis.splits: nominated``) on the profile computed here; ``analytic`` is the
    closed form (see :class:`Result`).
    """
    return evaluate(scenario, prepare(scenario))


def uplink_utilisation(bytes_sent, scenario: Scenario) -> np.ndarray:
    """Offered uplink load of all devices over the link's capacity (1 = saturated).

    Load = devices × request rate × bits on the air per request (headers and the mean
    retransmissions included); capacity = the link's aggregate rate with that many stations
    (``contention_share × stations × uplink rate``).
    """
    from .latency.link import contention_share, wire_bytes

    net, wl = scenario.network, scenario.workload
    b = np.asarray(bytes_sent, dtype=float)
    bits = np.where(b > 0, wire_bytes(b, net) * 8.0 / (1.0 - net.loss), 0.0)
    capacity = net.uplink_bps * contention_share(net, wl.num_devices) * wl.num_devices
    return wl.num_devices * wl.rate_hz * bits / capacity


def latency_table(scenario: Scenario, profile: pd.DataFrame, splits: list[str] | None = None,
                  ) -> tuple[SimResult | None, pd.DataFrame]:
    """Latency columns of :data:`TABLE_COLUMNS` for ``splits`` (default: all) by the scenario's engine.

    Returns ``(SimResult or None, table indexed by split)``; the simulation reuses ``profile``.
    """
    names = list(profile.index) if splits is None else list(splits)
    if scenario.analysis.engine == "simpy":
        sim = simulate(scenario, splits=names, profile=profile)
        return sim, split_table(sim)
    lat = analytic_latency(profile.loc[names], scenario)
    lat["device_wait_s"] = 0.0  # one request alone: nothing queues
    lat["server_wait_s"] = 0.0
    for col in SIM_ONLY_COLUMNS:
        lat[col] = np.nan
    return None, lat


def load_traced(scenario: Scenario) -> TracedModel:
    """The scenario's model, loaded (seeded) and traced at its input shape."""
    ms = scenario.model
    try:
        # Random initialisation (weights: none) is seeded without touching the caller's
        # global torch generator.
        with torch.random.fork_rng():
            torch.manual_seed(scenario.seed)
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

    Returns the per-split profile (:func:`~splitimpera.model.cost.profile_model`); its
    ``attrs["input_shape"]`` is the per-sample input shape used.
    """
    return profile_model(load_traced(scenario))


def save_analysis(scenario: Scenario, res, out_dir: str | Path | None = None,
                  accuracy: "AccuracyAnalysis | None" = None) -> Path:
    """Write the importance analysis to ``<out_dir>/<scenario name>/``: ``cui.csv``,
    ``cui_per_image.parquet``, ``cui_per_class.csv``, ``nominations.json``, ``cui.png``; with
    ``accuracy``, also ``accuracy.csv`` (one row per split and bottleneck: accuracy,
    agreement, bytes per coder), ``accuracy_summary.json`` and ``accuracy.png``."""
    from .report.text import plot_accuracy, plot_cui

    best = res.best_per_class()
    doc = {
        "scenario": scenario.name,
        # What the analysis was computed on: reports use it only beside results of the same.
        "inputs": {"model": scenario.model.model_dump(mode="json"), "data": scenario.data.model_dump(mode="json")},
        "settings": res.settings,
        "best": res.best,
        "nominated": [{k: _jsonable(v) for k, v in r.items()} for _, r in res.nominated.iterrows()],
        "best_per_class": [{"class": int(c), **{k: _jsonable(v) for k, v in r.items()}} for c, r in best.iterrows()],
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


# --------------------------------------------------------------------------------------------
# Accuracy under bottlenecks


def load_calibration(scenario: Scenario, shape: tuple[int, ...], ds):
    """``(calibration data, evaluation data, how)`` for bottlenecks that learn.

    ``bottleneck.calibration: auto`` takes the digits train split when the evaluation data is
    the digits test split, else a seeded half of the data (the other half evaluates, so
    nothing is fitted on what it is scored on); a data section names other data.
    """
    from torch.utils.data import Subset

    from .data import digits

    spec, src = scenario.bottleneck, scenario.source
    limit = spec.calibration_limit
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 0xCA1]))

    def cap(d):
        if len(d) <= limit:
            return d
        return Subset(d, np.sort(rng.permutation(len(d))[:limit]).tolist())

    if isinstance(spec.calibration, str):  # auto
        if scenario.data.source == "digits" and scenario.data.split == "test":
            return cap(digits("train", size=shape[-1])), ds, "digits train split"
        if len(ds) < 4:
            raise UserError("too few samples to set half aside for calibration", source=src, field="data")
        perm = rng.permutation(len(ds))
        half = len(ds) // 2
        calib = Subset(ds, np.sort(perm[:half]).tolist())
        return cap(calib), Subset(ds, np.sort(perm[half:]).tolist()), "a seeded half of the data"
    from .data import load_dataset

    field = "bottleneck.calibration.path" if spec.calibration.path else "bottleneck.calibration"
    try:
        calib = load_dataset(spec.calibration, shape, scenario.model.num_classes, seed=scenario.seed)
        if calib is None or len(calib) == 0:
            raise UserError("the calibration data set is empty", source=src, field="bottleneck.calibration")
        calib = cap(calib)
        # Decode every sample now: a broken file must be a one-line error, not a crash mid-fit.
        samples = [calib[i] for i in range(len(calib))]
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot read the calibration data: {first_line(e)}", source=src, field=field) from None
    width = scenario.model.num_classes or (label_count(ds) if ds is not None else None)
    _check_samples("the calibration data", tuple(samples[0][0].shape), shape, max(int(y) for _, y in samples) + 1,
                   width, src, field, field)
    return calib, ds, f"bottleneck.calibration ({spec.calibration.source})"



def _measured_splits(scenario: Scenario, tm: TracedModel, importance) -> tuple[list[str], object]:
    spec = scenario.bottleneck
    names = [sp.name for sp in tm.candidates]
    if spec.splits == "all":
        return names, importance
    if spec.splits == "nominated":
        if importance is None:
            importance = analyze(scenario, tm)
        nominated = set(importance.nominated["split"])
        return [n for n in names if n in nominated], importance
    unknown = [s for s in spec.splits if s not in names]
    if unknown:
        raise UserError(f"unknown split(s) {', '.join(unknown)}", source=scenario.source, field="bottleneck.splits")
    return [n for n in names if n in set(spec.splits)], importance


def bottleneck_accuracy(scenario: Scenario, tm: TracedModel, profile: pd.DataFrame, ds, full_accuracy,
                        importance=None) -> tuple[pd.DataFrame, dict]:
    """Per split, under ``scenario.bottleneck``: ``accuracy``, ``accuracy_source``
    (``user``, ``measured``, ``predicted (CUI)``, ``full model`` or ``unknown``) and
    ``bytes_sent`` (mean bytes per sample under the coder); plus what it came from.

    Accuracy is measured at ``bottleneck.splits``; elsewhere it is predicted from the CUI
    curve (isotonic fit on the measured splits). A split the bottleneck cannot apply to is
    sent as plain fp32. Accuracies from ``bottleneck.accuracy_csv`` take precedence.
    """
    from .accuracy.measure import fit_predictor, measure_accuracy, read_user_accuracy
    from .accuracy.bottlenecks import get_bottleneck

    spec = scenario.bottleneck
    bn = get_bottleneck(spec.name)
    names = list(profile.index)
    out = pd.DataFrame(index=profile.index)
    out["accuracy"] = np.nan
    out["accuracy_source"] = "unknown"
    out["bytes_sent"] = profile["tx_bytes"].astype(float)
    info: dict = {"measured_splits": 0}
    measured, importance = _measured_splits(scenario, tm, importance)
    labelled = ds is not None and scenario.data.source != "synthetic"
    if spec.name == "none" and spec.coder == "raw":
        # Nothing changes the tensor: every split computes exactly the full model.
        if full_accuracy is not None:
            out["accuracy"], out["accuracy_source"] = full_accuracy, "full model"
    else:
        calib = None
        if bn.needs_fit:
            calib, ds, how = load_calibration(scenario, tm.input_shape, ds)
            info["calibration"] = f"{how}, {len(calib)} samples"
        try:
            at = measure_accuracy(tm, ds, [bn], measured, calibration=calib, labelled=labelled, seed=scenario.seed,
                                  batch_size=scenario.data.batch_size, options=spec.fit_options(),
                                  coders=[spec.coder])
        except UserError as e:
            raise e.at(source=scenario.source, field="bottleneck") from None
        t = at.for_bottleneck(bn.name)
        if labelled and at.full_accuracy is not None:
            # Splits sent unchanged compare with the measured ones on the same samples (the
            # evaluation half when the other half calibrates).
            full_accuracy = at.full_accuracy
        info.update(measured_splits=int(t["accuracy"].notna().sum() if labelled else len(t)),
                    evaluation_samples=at.samples)
        applies = t["applicable"]
        ok = t.index[applies]
        out.loc[ok, "bytes_sent"] = t.loc[ok, f"bytes_{spec.coder}"]
        if labelled:
            out.loc[ok, "accuracy"] = t.loc[ok, "accuracy"]
            out.loc[ok, "accuracy_source"] = "measured"
        na = t.index[~applies]
        if full_accuracy is not None:
            out.loc[na, "accuracy"] = full_accuracy
            out.loc[na, "accuracy_source"] = "full model (bottleneck n/a)"
        # Unmeasured splits: nominal bytes (scaled by the coder's median ratio to raw bytes on
        # the measured splits), accuracy predicted from the CUI curve.
        rest = [n for n in names if n not in set(t.index) and n != OUTPUT]  # output: set below
        ratio = 1.0
        if spec.coder != "raw" and rest:
            m = t[applies & (t.index != OUTPUT)]
            r = (m[f"bytes_{spec.coder}"] / m.index.map(lambda n: bn.nominal_bytes(tm.split(n).shape))).dropna()
            ratio = float(r.median()) if len(r) else 1.0
        estimated = 0
        for n in rest:
            sp = tm.split(n)
            if bn.applicable(sp.shape, n) is None:
                out.at[n, "bytes_sent"] = float(bn.nominal_bytes(sp.shape)) * ratio
                estimated += 1
            else:
                out.at[n, "accuracy"] = full_accuracy if full_accuracy is not None else np.nan
                out.at[n, "accuracy_source"] = "full model (bottleneck n/a)"
        if estimated:
            info["estimated_bytes"] = {"splits": estimated, "coder_ratio_to_raw": round(ratio, 4)}
        todo = [n for n in rest if out.at[n, "accuracy_source"] == "unknown"]
        if todo and labelled:
            if importance is None:
                importance = analyze(scenario, tm)
            curve = importance.curve["log10_cui"]
            pred = fit_predictor(curve, out.loc[out["accuracy_source"] == "measured", "accuracy"])
            if pred is not None:
                info["predictor"] = pred.summary()
                can = [n for n in todo if n in curve.index and np.isfinite(curve[n])]
                if can:
                    out.loc[can, "accuracy"] = pred.predict(curve[can].to_numpy())
                    out.loc[can, "accuracy_source"] = "predicted (CUI)"
    # Work the bottleneck adds where it is applied (the autoencoder's encoder and decoder).
    for side in ("head", "tail"):
        for col in extra_columns(side):
            out[col] = 0.0
    if spec.name != "none":
        for n in out.index:
            if n == OUTPUT or bn.applicable(tm.split(n).shape, n) is not None:
                continue
            for side, work in bn.extra_work(tm.split(n).shape).items():
                for key, v in work.items():
                    out.at[n, f"{side}_extra_{key}"] = float(v)
    if OUTPUT in out.index:  # the prediction itself is sent, whatever the bottleneck
        out.at[OUTPUT, "bytes_sent"] = float(PREDICTION_BYTES)
        out.at[OUTPUT, "accuracy"] = full_accuracy if full_accuracy is not None else np.nan
        out.at[OUTPUT, "accuracy_source"] = "full model" if full_accuracy is not None else "unknown"
    if spec.accuracy_csv is not None:
        user = read_user_accuracy(spec.accuracy_csv, spec.name, names, scenario.source)
        out.loc[user.index, "accuracy"] = user
        out.loc[user.index, "accuracy_source"] = "user"
        info["user_splits"] = int(len(user))
    return out, info


@dataclass(frozen=True)
class AccuracyAnalysis:
    """What ``analyze`` measures under bottlenecks: the accuracy × bytes table
    (:class:`~splitimpera.accuracy.measure.AccuracyTable`), per bottleneck the CUI predictor's
    validation (``predictors``: Spearman, leave-one-out MAE, baseline MAE), and Grad-CAM
    vs random channels at equal channel counts (``channels``)."""

    measured: object
    predictors: pd.DataFrame
    channels: pd.DataFrame
    calibration: str | None = None

    def summary(self) -> dict:
        m = self.measured
        doc = {
            "evaluation_samples": m.samples, "calibration": self.calibration,
            "calibration_samples": m.calibration_samples, "full_model_accuracy": m.full_accuracy,
            "settings": m.settings,
            "predictor": {"method": "isotonic regression of accuracy on log10 CUI (direction from the data)",
                          "per_bottleneck": {b: {k: _jsonable(v) for k, v in r.items()}
                                             for b, r in self.predictors.iterrows()}},
        }
        if not self.channels.empty:
            c = self.channels
            doc["channels_gradcam_vs_random"] = {
                f: {"metric": str(g["metric"].iloc[0]), "splits": int(len(g)), "gradcam_better": int((g["difference"] > 0).sum()),
                    "random_better": int((g["difference"] < 0).sum()),
                    "mean_difference": _jsonable(g["difference"].mean()),
                    "median_difference": _jsonable(g["difference"].median())}
                for f, g in c.groupby("fraction", sort=False)}
        return doc


def analyze_accuracy(scenario: Scenario, tm: TracedModel, importance, data=None, *,
                     progress: bool = False) -> AccuracyAnalysis:
    """Measure ``bottleneck.measure`` (default: every registered bottleneck) at
    ``bottleneck.splits`` on the scenario's data, and validate the CUI predictor on it."""
    from .accuracy.measure import channel_comparison, measure_accuracy, predictor_report
    from .accuracy.bottlenecks import get_bottleneck, list_bottlenecks

    spec = scenario.bottleneck
    ds = data if data is not None else load_data(scenario, tm.input_shape, output_width(tm))
    if ds is None:
        raise UserError("accuracy under bottlenecks needs data (set data.source)", source=scenario.source,
                        field="data.source")
    names = list_bottlenecks() if spec.measure == "all" else list(spec.measure)
    bns = [get_bottleneck(n) for n in names]
    splits, _ = _measured_splits(scenario, tm, importance)
    calib = how = None
    if any(b.needs_fit for b in bns):
        calib, ds, how = load_calibration(scenario, tm.input_shape, ds)
    try:
        at = measure_accuracy(tm, ds, bns, splits, calibration=calib,
                              labelled=scenario.data.source != "synthetic", seed=scenario.seed,
                              batch_size=scenario.data.batch_size, options=spec.fit_options(), progress=progress)
    except UserError as e:
        raise e.at(source=scenario.source, field="bottleneck") from None
    curve = importance.curve["log10_cui"] if importance is not None else pd.Series(dtype=float)
    col = "accuracy" if at.full_accuracy is not None else "agreement"
    report = predictor_report(at, curve, column=col)
    return AccuracyAnalysis(measured=at, predictors=report, channels=channel_comparison(at),
                            calibration=None if calib is None else f"{how}, {len(calib)} samples")
