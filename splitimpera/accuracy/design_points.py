"""The accuracy stage of a run: what is sent at every design point, and how accurate it is.

:func:`design_points` is the one contract between the bottleneck stage and the latency
engines: a :class:`DesignPoints` table indexed by ``(split, bottleneck)`` whose columns
(:data:`SENT_COLUMNS`) are the bytes on the wire under the chosen coder, the work the
bottleneck adds on the device and on the server, and the accuracy with where it came from.
Every bottleneck the scenario names is measured in one shared pass
(:func:`~splitimpera.accuracy.evaluate.measure_accuracy`).

Also here: :func:`analyze` (I-SPLIT's importance analysis of a scenario) and
:func:`analyze_accuracy` (the accuracy × bytes table ``analyze`` writes).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..config.scenario import Scenario
from ..data import batches, check_samples, class_names, label_count, load_data, load_dataset
from ..errors import UserError, first_line
from ..model.cost import extra_columns
from ..model.loading import load_traced
from ..model.splits import OUTPUT, PREDICTION_BYTES, TracedModel
from ..plain import jsonable
from .bottlenecks import Bottleneck, get_bottleneck, list_bottlenecks, resolve_bottlenecks
from .cui import cui
from .evaluate import (channel_comparison, linear_probe_accuracy, measure_accuracy, predictor_report,
                      read_user_accuracy)
from . import predictors
from .predictors import METHODS, MIN_POINTS, predict, predicted_source, resolve, split_features, validate

log = logging.getLogger(__name__)

EXTRA_COLUMNS = [*extra_columns("head"), *extra_columns("tail")]
SENT_COLUMNS = ["bytes_sent", *EXTRA_COLUMNS, "accuracy", "accuracy_band", "accuracy_source"]
POINT_LEVELS = ("split", "bottleneck")
EXIT_LEVELS = (*POINT_LEVELS, "exit")  # with an exit section, exit τ joins the key


@dataclass(frozen=True)
class DesignPoints:
    """What is sent at every design point: the bottleneck stage's output, the engines' input.

    ``table``: indexed by ``(split, bottleneck)`` (splits in topological order, bottlenecks in
    the scenario's order), columns :data:`SENT_COLUMNS`: ``bytes_sent`` (mean bytes per
    sample on the wire under the coder, float), ``head_extra_…``/``tail_extra_…`` (work the
    bottleneck adds on the device / the server, batch 1, see
    :func:`~splitimpera.model.cost.extra_columns`), ``accuracy`` (fraction, NaN when unknown)
    and ``accuracy_source`` (``full model``, ``measured``, ``predicted (<method>)``, ``user``,
    ``full model (bottleneck n/a)``, ``full model (nominal)`` or ``unknown``);
    ``accuracy_band``: for a predicted accuracy, its predictor's leave-one-split-out mean
    absolute error over the measured splits (fraction; NaN elsewhere). ``info``: per
    bottleneck, what its numbers came from. ``full_accuracy``: the whole model's accuracy on
    the samples the points were scored on.

    With an ``exit`` section the index is ``(split, bottleneck, exit)`` (:data:`EXIT_LEVELS`):
    ``exit`` is ``"none"`` for the points without an exit head (LC, RC, SC) and the
    threshold τ (:func:`~splitimpera.accuracy.early_exit.exit_label`) for the early-exit
    points, whose ``head_extra_…`` columns include the exit head's work, ``accuracy`` is the
    overall accuracy of exited and forwarded samples, and whose columns
    :data:`~splitimpera.accuracy.early_exit.EXIT_COLUMNS` say how many exit and how well;
    ``decisions`` maps each early-exit point to its per-sample exit decisions (N,) bool;
    ``outcomes`` is the per-sample record they come from
    (:class:`~splitimpera.accuracy.early_exit.ExitOutcomes`).
    """

    table: pd.DataFrame
    info: dict = field(default_factory=dict)
    full_accuracy: float | None = None
    decisions: dict = field(default_factory=dict)
    outcomes: object | None = None

    def __post_init__(self):
        t = self.table
        if list(t.index.names) not in (list(POINT_LEVELS), list(EXIT_LEVELS)):
            raise ValueError(f"design points must be indexed by {POINT_LEVELS} (or {EXIT_LEVELS}), "
                             f"got {t.index.names}")
        missing = [c for c in SENT_COLUMNS if c not in t.columns]
        if missing:
            raise ValueError(f"design points lack column(s) {', '.join(missing)}")

    def select(self, splits) -> "DesignPoints":
        """Only the points at ``splits`` (order kept)."""
        keep = self.table.index.get_level_values("split").isin(list(splits))
        t = self.table[keep]
        dec = {p: d for p, d in self.decisions.items() if p[0] in set(splits)}
        return DesignPoints(t, self.info, self.full_accuracy, dec, self.outcomes)


def evaluate_accuracy(model: torch.nn.Module, dataset, batch_size: int = 64) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (fraction in [0, 1])."""
    correct = total = 0
    with torch.no_grad():
        for x, y in batches(dataset, batch_size):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total if total else float("nan")


def full_model_accuracy(scenario: Scenario, model: torch.nn.Module, ds) -> float | None:
    """Top-1 accuracy of the whole model on labelled data (None without it)."""
    if ds is None or scenario.data.source == "synthetic":
        return None
    try:
        return evaluate_accuracy(model, ds, scenario.data.batch_size)
    except UserError:  # an image file that cannot be read, named by the loader
        raise
    except Exception as e:
        raise UserError(f"cannot evaluate the model on the data: {first_line(e)}", source=scenario.source,
                        field="data.path" if scenario.data.path else "data") from None


def analyze(scenario: Scenario, tm: TracedModel | None = None, data=None, *, progress: bool = False):
    """I-SPLIT importance analysis of the scenario: its :class:`~splitimpera.accuracy.cui.CUIResult`.

    Settings come from ``analysis.cui``; the curve covers ``analysis.cui.classes`` when set.
    """
    tm = tm if tm is not None else load_traced(scenario)
    ds = data if data is not None else load_data(scenario, tm.input_shape, tm.output_width)
    if ds is None:
        raise UserError("the importance analysis needs data (set data.source)", source=scenario.source,
                        field="data.source")
    c = scenario.analysis.cui
    try:
        res = cui(tm, ds, preset=c.preset, method=c.method, target=c.target, reduction=c.reduction,
                  aggregate=c.aggregate, splits=c.splits, trim=c.trim, prominence=c.prominence, top_k=c.top_k,
                  batch_size=scenario.data.batch_size, progress=progress)
        res = res.for_classes(c.classes) if c.classes else res
    except UserError as e:
        raise e.at(source=scenario.source, field="analysis.cui") from None
    names = class_names(ds)
    return dataclasses.replace(res, settings={**res.settings, "class_names": names}) if names else res


def load_calibration(scenario: Scenario, shape: tuple[int, ...], ds):
    """``(calibration data, evaluation data, how)`` for bottlenecks that learn.

    ``bottleneck.calibration: auto`` takes the train split of digits (or letters) when the
    evaluation data is its test split, else a seeded half of the data (the other half evaluates, so
    nothing is fitted on what it is scored on); a data section names other data.
    """
    from torch.utils.data import Subset

    from ..data import digits, letters

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
        if scenario.data.source == "letters" and scenario.data.split == "test":
            return cap(letters("train", size=shape[-1])), ds, "letters train split"
        if len(ds) < 4:
            raise UserError("too few samples to set half aside for calibration", source=src, field="data")
        perm = rng.permutation(len(ds))
        half = len(ds) // 2
        calib = Subset(ds, np.sort(perm[:half]).tolist())
        return cap(calib), Subset(ds, np.sort(perm[half:]).tolist()), "a seeded half of the data"

    field_ = "bottleneck.calibration.path" if spec.calibration.path else "bottleneck.calibration"
    try:
        calib = load_dataset(spec.calibration, shape, scenario.model.num_classes, seed=scenario.seed, source=src,
                             field=field_)
        if calib is None or len(calib) == 0:
            raise UserError("the calibration data set is empty", source=src, field="bottleneck.calibration")
        calib = cap(calib)
        # Decode every sample now: a broken file must be a one-line error, not a crash mid-fit.
        samples = [calib[i] for i in range(len(calib))]
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot read the calibration data: {first_line(e)}", source=src, field=field_) from None
    width = scenario.model.num_classes or (label_count(ds) if ds is not None else None)
    check_samples("the calibration data", tuple(samples[0][0].shape), shape, max(int(y) for _, y in samples) + 1,
                  width, src, field_, field_)
    return calib, ds, f"bottleneck.calibration ({spec.calibration.source})"


def measured_splits(scenario: Scenario, tm: TracedModel, importance, data=None) -> tuple[list[str], object]:
    """The splits ``bottleneck.splits`` names (topological order), and the importance
    analysis when it had to be run to nominate them (on ``data``, else the scenario's)."""
    spec = scenario.bottleneck
    names = [sp.name for sp in tm.candidates]
    if spec.splits == "all":
        return names, importance
    if spec.splits == "nominated":
        if importance is None:
            importance = analyze(scenario, tm, data)
        nominated = set(importance.nominated["split"])
        return [n for n in names if n in nominated], importance
    unknown = [s for s in spec.splits if s not in names]
    if unknown:
        raise UserError(f"unknown split(s) {', '.join(unknown)}", source=scenario.source, field="bottleneck.splits")
    return [n for n in names if n in set(spec.splits)], importance


def _needs_measurement(scenario: Scenario, bn: Bottleneck) -> bool:
    """Whether ``bn``'s bytes or accuracy must be measured on data: not when its sizes are
    nominal, nor for the plain fp32 tensor sent uncoded (it computes the full model exactly)."""
    spec = scenario.bottleneck
    return not spec.nominal and not (bn.is_identity and spec.coder == "raw")


def design_points(scenario: Scenario, tm: TracedModel, profile: pd.DataFrame, ds, full_accuracy: float | None,
                  importance=None) -> DesignPoints:
    """Every design point ``(split, bottleneck)`` of the scenario: bytes sent, extra work and
    accuracy (see :class:`DesignPoints`), from one shared measurement pass.

    Accuracy is measured at ``bottleneck.splits``; elsewhere it is predicted by
    ``bottleneck.predictor`` fitted on the measured splits of the same bottleneck, with its
    leave-one-split-out error as ``accuracy_band``; when no predictor is to be used, every
    split is measured. A split a bottleneck
    cannot apply to is sent as plain fp32. Accuracies from ``bottleneck.accuracy_csv`` take
    precedence. With ``bottleneck.nominal`` nothing is measured: bytes are each bottleneck's
    nominal payload and accuracy is the full model's (marked ``full model (nominal)``).
    When a bottleneck learns from calibration data taken out of the evaluation data, every
    bottleneck is scored on the same remaining samples, so points compare on equal terms.
    """
    spec = scenario.bottleneck
    try:
        bns = [get_bottleneck(n) for n in resolve_bottlenecks(spec.name)]
    except UserError as e:
        raise e.at(source=scenario.source, field="bottleneck.name") from None
    labelled = ds is not None and scenario.data.source != "synthetic"
    all_data = ds  # the importance analysis covers all of it, also when a half calibrates
    todo = [b for b in bns if _needs_measurement(scenario, b)]
    at, info = None, {}
    measured = []
    ex = scenario.exit
    if todo or ex is not None:
        if todo:
            measured, importance = measured_splits(scenario, tm, importance, all_data)
            if len(measured) < len(tm.candidates) and labelled and resolve(spec.predictor) is None:
                # No predictor to fill the others in: measure every split rather than guess.
                why = ("no accuracy predictor has passed validation" if spec.predictor == "auto"
                       else "no prediction was asked for")
                log.warning("%s: bottleneck.predictor is %s and %s: measuring every split instead of %d",
                            scenario.source, spec.predictor, why, len(measured))
                info["prediction"] = f"none (bottleneck.predictor: {spec.predictor}; {why}): every split measured"
                measured = [sp.name for sp in tm.candidates]
        exit_splits = _exit_splits(scenario, tm) if ex is not None else []
        splits = [n for n in (sp.name for sp in tm.candidates) if n in set(measured) | set(exit_splits)]
        # The server path of a point sent unchanged is the plain tensor's: measured as "none".
        scored = todo + ([get_bottleneck("none")] if ex is not None and "none" not in {b.name for b in todo} else [])
        calib = None
        if any(b.needs_fit for b in todo) or ex is not None:
            calib, ds, how = load_calibration(scenario, tm.input_shape, ds)
            info["calibration"] = f"{how}, {len(calib)} samples"
        exits = None if ex is None else {"splits": exit_splits, "head": ex.head, "epochs": ex.epochs, "lr": ex.lr}
        try:
            at = measure_accuracy(tm, ds, scored, splits, calibration=calib, labelled=labelled, seed=scenario.seed,
                                  batch_size=scenario.data.batch_size, options=spec.fit_options(),
                                  coders=[spec.coder], exits=exits)
        except UserError as e:
            raise e.at(source=scenario.source, field="exit" if e.field and e.field.startswith("exit")
                       else "bottleneck") from None
        if labelled and at.full_accuracy is not None:
            # Splits sent unchanged compare with the measured ones on the same samples (the
            # evaluation half when the other half calibrates).
            full_accuracy = at.full_accuracy
        info["evaluation_samples"] = at.samples
    parts, per = [], {}
    made: dict = {}

    def features(method: str) -> pd.DataFrame:
        """The splits' features a predictor reads, each computed once and only when needed."""
        nonlocal importance
        cands = [sp.name for sp in tm.candidates]
        if "base" not in made:
            made["base"] = split_features(cands, cands, profile["tx_bytes"])
        df = made["base"]
        need = METHODS[method].feature
        if need == "log10_cui" and need not in df:
            if importance is None:
                importance = analyze(scenario, tm, all_data)
            df[need] = importance.curve["log10_cui"].reindex(cands).to_numpy(float)
        if need == "probe_accuracy" and need not in df:
            pc, pe, _ = load_calibration(scenario, tm.input_shape, all_data)
            df[need] = linear_probe_accuracy(tm, pc, pe, cands, batch_size=scenario.data.batch_size,
                                             seed=scenario.seed).reindex(cands).to_numpy(float)
        return df

    for bn in bns:
        got = at if bn in todo else None
        part, binfo = _points_of(scenario, tm, profile, bn, got, labelled, full_accuracy, features)
        parts.append(part.assign(bottleneck=bn.name).set_index("bottleneck", append=True))
        per[bn.name] = binfo
    # Topological order of splits, then the scenario's order of bottlenecks.
    order = pd.MultiIndex.from_product([list(profile.index), [b.name for b in bns]], names=POINT_LEVELS)
    table = pd.concat(parts).reindex(order)[SENT_COLUMNS]
    if len(bns) == 1:
        info.update(per[bns[0].name])
    else:
        info["per_bottleneck"] = per
    if ex is None:
        return DesignPoints(table=table, info=info, full_accuracy=full_accuracy)
    table, decisions, info["exit"] = _with_exits(scenario, table, at.exits)
    return DesignPoints(table=table, info=info, full_accuracy=full_accuracy, decisions=decisions, outcomes=at.exits)


def _exit_splits(scenario: Scenario, tm: TracedModel) -> list[str]:
    """``exit.splits`` in topological order (a UserError names an unknown one)."""
    names = [sp.name for sp in tm.candidates]
    wanted = scenario.exit.splits
    unknown = [s for s in wanted if s not in names]
    if unknown:
        raise UserError(f"unknown split(s) {', '.join(unknown)}; the model's splits are {', '.join(names)}",
                        source=scenario.source, field="exit.splits")
    return [n for n in names if n in set(wanted)]


def _with_exits(scenario: Scenario, table: pd.DataFrame, outcomes) -> tuple[pd.DataFrame, dict, dict]:
    """``table`` (index ``(split, bottleneck)``) with the exit level: every point as it is
    (exit ``none``), and at each exit split, per bottleneck and τ, the early-exit point: the
    split computing point plus the exit head's work on the device, with the measured exit
    behaviour (:func:`~splitimpera.accuracy.early_exit.exit_behaviour`) and overall accuracy.
    A bottleneck that was not measured (sent unchanged, nominal, or not applicable there)
    forwards the plain tensor: its server path is the plain one's."""
    from .early_exit import EXIT_COLUMNS, NO_EXIT, exit_behaviour, exit_label

    ex = scenario.exit
    behaviour, decided = exit_behaviour(outcomes, ex.thresholds, ex.confidence)
    base = table.copy()
    base["exit_threshold"], base["exit_rate"] = np.nan, 0.0
    base["exit_accuracy"], base["rest_accuracy"] = np.nan, np.nan
    rows, index, decisions = [], [], {}
    labels = [exit_label(t) for t in ex.thresholds]
    for (split, bn), row in base.iterrows():
        rows.append(row)
        index.append((split, bn, NO_EXIT))
        if split not in outcomes.exit_correct:
            continue
        src = bn if (split, bn) in outcomes.server_correct else "none"
        for lab in labels:
            b = behaviour.loc[(split, src, lab)]
            r = row.copy()
            for key, v in outcomes.work[split].items():
                r[f"head_extra_{key}"] = float(r[f"head_extra_{key}"]) + float(v)
            for c in EXIT_COLUMNS:
                r[c] = b[c]
            r["accuracy"], r["accuracy_source"] = b["accuracy"], "measured (early exit)"
            rows.append(r)
            index.append((split, bn, lab))
            decisions[(split, bn, lab)] = decided[(split, src, lab)]
    out = pd.DataFrame(rows, columns=base.columns)
    out.index = pd.MultiIndex.from_tuples(index, names=EXIT_LEVELS)
    for c in [c for c in base.columns if c != "accuracy_source"]:
        out[c] = pd.to_numeric(out[c])
    info = {"head": ex.head, "confidence": ex.confidence, "splits": list(outcomes.exit_correct),
            "thresholds": list(ex.thresholds), "evaluation_samples": outcomes.samples,
            "fit": {k: v for k, v in outcomes.settings.items() if k != "splits"},
            "head_flops": {s: float(sum(v for k, v in w.items() if k.startswith("flops_")))
                           for s, w in outcomes.work.items()}}
    return out, decisions, info


def _points_of(scenario: Scenario, tm: TracedModel, profile: pd.DataFrame, bn: Bottleneck, at, labelled: bool,
               full_accuracy: float | None, features) -> tuple[pd.DataFrame, dict]:
    """One bottleneck's rows (index: split) of :func:`design_points`, and what they came from.
    ``features(method)`` gives the splits' features that predictor reads (computed on first
    call), for predicting unmeasured splits."""
    spec = scenario.bottleneck
    names = list(profile.index)
    out = pd.DataFrame(index=pd.Index(names, name="split"))
    out["accuracy"] = np.nan
    out["accuracy_band"] = np.nan
    out["accuracy_source"] = "unknown"
    out["bytes_sent"] = profile["tx_bytes"].astype(float)
    info: dict = {"measured_splits": 0}
    full_known = full_accuracy is not None
    if spec.nominal:
        for n in names:
            if n != OUTPUT and bn.applicable(tm.split(n).shape, n) is None:
                out.at[n, "bytes_sent"] = float(bn.nominal_bytes(tm.split(n).shape))
        if full_known:
            out["accuracy"], out["accuracy_source"] = full_accuracy, "full model (nominal)"
        info["nominal"] = True
    elif at is None:
        # Nothing changes the tensor: every split computes exactly the full model.
        if full_known:
            out["accuracy"], out["accuracy_source"] = full_accuracy, "full model"
    else:
        t = at.for_bottleneck(bn.name)
        info["measured_splits"] = int(t["accuracy"].notna().sum() if labelled else len(t))
        applies = t["applicable"].astype(bool)
        ok = t.index[applies]
        out.loc[ok, "bytes_sent"] = t.loc[ok, f"bytes_{spec.coder}"]
        if labelled:
            out.loc[ok, "accuracy"] = t.loc[ok, "accuracy"]
            out.loc[ok, "accuracy_source"] = "measured"
        na = t.index[~applies]
        if full_known:
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
                out.at[n, "accuracy"] = full_accuracy if full_known else np.nan
                out.at[n, "accuracy_source"] = "full model (bottleneck n/a)"
        if estimated:
            info["estimated_bytes"] = {"splits": estimated, "coder_ratio_to_raw": round(ratio, 4)}
        unknown = [n for n in rest if out.at[n, "accuracy_source"] == "unknown"]
        method = resolve(spec.predictor)
        if unknown and labelled and method is not None:
            known = out.loc[(out["accuracy_source"] == "measured") & (out.index != OUTPUT), "accuracy"]
            pred = predict(method, features(method), known, unknown)  # fitted as validated: without the output
            if pred is None:
                log.warning("%s: %s: fewer than %d measured splits to fit bottleneck.predictor %s on: the other "
                            "splits' accuracy stays unknown", scenario.source, bn.name, MIN_POINTS, method)
            else:
                info["predictor"] = pred.summary()
                can = list(pred.accuracy.index)
                if can:
                    out.loc[can, "accuracy"] = pred.accuracy
                    out.loc[can, "accuracy_band"] = pred.loo_mae
                    out.loc[can, "accuracy_source"] = predicted_source(method)
    # Work the bottleneck adds where it is applied (the autoencoder's encoder and decoder).
    for col in EXTRA_COLUMNS:
        out[col] = 0.0
    if not bn.is_identity:
        for n in names:
            if n == OUTPUT or bn.applicable(tm.split(n).shape, n) is not None:
                continue
            for side, work in bn.extra_work(tm.split(n).shape).items():
                for key, v in work.items():
                    out.at[n, f"{side}_extra_{key}"] = float(v)
    if OUTPUT in out.index:  # the prediction itself is sent, whatever the bottleneck
        out.at[OUTPUT, "bytes_sent"] = float(PREDICTION_BYTES)
        out.at[OUTPUT, "accuracy"] = full_accuracy if full_known else np.nan
        out.at[OUTPUT, "accuracy_source"] = "full model" if full_known else "unknown"
    if spec.accuracy_csv is not None:
        user = read_user_accuracy(spec.accuracy_csv, bn.name, names, scenario.source)
        out.loc[user.index, "accuracy"] = user
        out.loc[user.index, "accuracy_band"] = np.nan
        out.loc[user.index, "accuracy_source"] = "user"
        info["user_splits"] = int(len(user))
    return out, info


@dataclass(frozen=True)
class AccuracyAnalysis:
    """What ``analyze`` measures under bottlenecks: the accuracy × bytes table
    (:class:`~splitimpera.accuracy.evaluate.AccuracyTable`), per bottleneck the CUI predictor's
    validation (``predictors``: Spearman, leave-one-out MAE, baseline MAE), and Grad-CAM
    vs random channels at equal channel counts (``channels``)."""

    measured: object
    predictors: pd.DataFrame
    channels: pd.DataFrame
    calibration: str | None = None
    validation: object | None = None  # predictors.Validation: every predictor, leave-one-split-out

    def summary(self) -> dict:
        m = self.measured
        doc = {
            "evaluation_samples": m.samples, "calibration": self.calibration,
            "calibration_samples": m.calibration_samples, "full_model_accuracy": m.full_accuracy,
            "settings": m.settings,
            "predictor": {"method": "isotonic regression of accuracy on log10 CUI (direction from the data)",
                          "per_bottleneck": {b: {k: jsonable(v) for k, v in r.items()}
                                             for b, r in self.predictors.iterrows()}},
        }
        v = self.validation
        if v is not None and not v.groups.empty:
            doc["predictors_loo"] = {
                "methods": {m: METHODS[m].label for m in v.methods},
                "auto": predictors.VALIDATED,
                "per_bottleneck": {b: {r["method"]: {k: jsonable(r[k]) for k in ("points", "mae", "spearman", "regret")}
                                       for _, r in g.iterrows()}
                                   for b, g in v.groups.groupby("bottleneck", sort=False)}}
        if not self.channels.empty:
            c = self.channels
            doc["channels_gradcam_vs_random"] = {
                f: {"metric": str(g["metric"].iloc[0]), "splits": int(len(g)),
                    "gradcam_better": int((g["difference"] > 0).sum()),
                    "random_better": int((g["difference"] < 0).sum()),
                    "mean_difference": jsonable(g["difference"].mean()),
                    "median_difference": jsonable(g["difference"].median())}
                for f, g in c.groupby("fraction", sort=False)}
        return doc


def analyze_accuracy(scenario: Scenario, tm: TracedModel, importance, data=None, *,
                     progress: bool = False) -> AccuracyAnalysis:
    """Measure ``bottleneck.measure`` (default: every registered bottleneck) at
    ``bottleneck.splits`` on the scenario's data, and validate the CUI predictor on it."""
    spec = scenario.bottleneck
    ds = data if data is not None else load_data(scenario, tm.input_shape, tm.output_width)
    if ds is None:
        raise UserError("accuracy under bottlenecks needs data (set data.source)", source=scenario.source,
                        field="data.source")
    names = list_bottlenecks() if spec.measure == "all" else list(spec.measure)
    bns = [get_bottleneck(n) for n in names]
    splits, _ = measured_splits(scenario, tm, importance, ds)
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
    cands = [sp.name for sp in tm.candidates]
    feats = split_features(cands, cands, pd.Series({sp.name: sp.tx_bytes for sp in tm.candidates}),
                           curve if len(curve) else None)
    if calib is not None:
        feats["probe_accuracy"] = linear_probe_accuracy(tm, calib, ds, cands, batch_size=scenario.data.batch_size,
                                                        seed=scenario.seed).reindex(cands).to_numpy(float)
    rows = []
    for b in at.bottlenecks:
        t = at.for_bottleneck(b)
        t = t[t["applicable"].astype(bool) & (t.index != OUTPUT)]
        rows += [{"bottleneck": b, "split": s, "accuracy": float(t.at[s, col]), **feats.loc[s].to_dict()}
                 for s in t.index]
    pts = pd.DataFrame(rows)
    methods = [m for m, spec in METHODS.items() if spec.feature is None or spec.feature in feats]
    validation = (validate(pts.dropna(subset=[METHODS[m].feature for m in methods if METHODS[m].feature]),
                           ["bottleneck"], methods, architecture_key=None, bootstrap=0) if len(pts) else None)
    return AccuracyAnalysis(measured=at, predictors=report, channels=channel_comparison(at),
                            calibration=None if calib is None else f"{how}, {len(calib)} samples",
                            validation=validation)
