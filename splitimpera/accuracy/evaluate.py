"""Accuracy of the split pipeline under bottlenecks, bytes on the wire, and the CUI predictor.

:func:`measure_accuracy` runs every (split, bottleneck) on evaluation data and measures

* ``accuracy``: top-1 accuracy of ``tail(bottleneck(head(x)))`` (labelled data only),
* ``agreement``: how often it predicts what the full model predicts (any data),
* ``bytes_raw`` / ``bytes_zstd`` / ``bytes_rle``: mean bytes per sample of the payload
  under each lossless coder (:mod:`splitimpera.accuracy.bottlenecks`).

Work is shared across splits: each evaluation batch runs through the model once, and every
split's activation is handed, as the forward pass reaches it, to the tails of that split
(one per bottleneck); no head is re-run per split. Bottlenecks that learn (channel
selection, the autoencoder) are fitted on separate *calibration* data: the channel scores
and calibration means of every split come from one Grad-CAM forward+backward per batch.

:class:`CUIPredictor` predicts a bottleneck's accuracy at unmeasured splits from the CUI
curve: an isotonic (monotone) fit of accuracy on log10 CUI over the measured splits, with
its leave-one-out error reported beside the error of the no-CUI baseline (the mean of the
other splits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.fx as fx

from .. import cache
from .bottlenecks import CODERS, Bottleneck, FitContext, TopChannels, get_bottleneck
from ..data import batches
from ..errors import UserError, first_line
from ..stages import stage
from ..model.splits import OUTPUT, PREDICTION_BYTES, TracedModel, head_tail, eval_mode
from ..plain import jsonable
from .predictors import MIN_POINTS, fit_method, loo_predictions

log = logging.getLogger(__name__)

ACCURACY_VERSION = 4  # 4: the autoencoder keeps at least 8 hidden channels
RANDOM_DRAWS = 3  # random-channel controls are measured over this many seeded draws
MEASURE_COLUMNS = ["bottleneck", "applicable", "accuracy", "accuracy_std", "agreement", "bytes_raw", "bytes_zstd",
                   "bytes_rle", "tx_bytes_fp32", "samples", "note"]


@dataclass(frozen=True)
class AccuracyTable:
    """Measured accuracy and bytes per (split, bottleneck).

    ``table``: long format, indexed by split name (topological order, one row per
    bottleneck), columns :data:`MEASURE_COLUMNS`; ``accuracy`` is NaN without labels and
    where the bottleneck does not apply (``applicable`` false; ``note`` says why). ``accuracy_std`` is the spread
    over seeded draws (random channels), else 0. Bytes are means per sample.
    """

    table: pd.DataFrame
    full_accuracy: float | None
    samples: int
    calibration_samples: int
    settings: dict = field(default_factory=dict)
    exits: object | None = None  # ExitOutcomes when exit heads were scored in the pass
    # With ``keep_predictions``: the labels (N,) and, per (split, bottleneck), each seeded
    # draw's predicted classes (draws, N), in data order: accuracy over any class subset.
    labels: np.ndarray | None = None
    predictions: dict | None = None

    @property
    def bottlenecks(self) -> list[str]:
        return list(dict.fromkeys(self.table["bottleneck"]))

    def for_bottleneck(self, name: str) -> pd.DataFrame:
        t = self.table[self.table["bottleneck"] == name]
        if t.empty:
            raise UserError(f"bottleneck {name!r} was not measured (measured: {', '.join(self.bottlenecks)})")
        return t.drop(columns="bottleneck")

    def pivot(self, column: str = "accuracy") -> pd.DataFrame:
        """Splits × bottlenecks table of one column, splits in topological order."""
        order = list(dict.fromkeys(self.table.index))
        p = self.table.reset_index().pivot(index="split", columns="bottleneck", values=column)
        return p.loc[order, self.bottlenecks]


# --------------------------------------------------------------------------------------------
# Measurement


class _SplitRunner(fx.Interpreter):
    """One forward pass; at each wanted split node, calls ``hook(split, value)``."""

    def __init__(self, gm: fx.GraphModule, wanted: dict[str, str], hook):
        super().__init__(gm)
        self.wanted, self.hook = wanted, hook

    def run_node(self, n):
        out = super().run_node(n)
        split = self.wanted.get(n.name)
        if split is not None:
            self.hook(split, out)
        return out


def _seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def _channel_statistics(tm: TracedModel, data, splits: list[str], batch_size: int):
    """Per split: mean |Grad-CAM contribution| per channel (C,) and the mean activation, on
    ``data`` with labels as targets; one forward+backward per batch."""
    from .gradcam import MapEngine

    engine = MapEngine(tm, splits=splits, method="gradcam", collect_channels=True)
    scores: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for x, y in batches(data, batch_size):
        engine(x, y)
        n += len(x)
        for s in splits:
            if s in engine.last_channels:
                # Evidence for and against the target both make a channel matter: magnitude.
                scores[s] = scores.get(s, 0) + engine.last_channels[s].abs().sum(0)
                sums[s] = sums.get(s, 0) + engine.last_sums[s]
    out_scores = {s: (scores[s] / n).numpy() for s in scores}
    out_means = {s: (sums[s] / n).float().reshape(tm.split(s).shape) for s in sums}
    return out_scores, out_means


def _calibration_activations(head, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    zs, ys = [], []
    with torch.no_grad():
        for x, y in batches(data, batch_size):
            zs.append(head(x).detach().clone())
            ys.append(y)
    return torch.cat(zs), torch.cat(ys)


def measure_accuracy(tm: TracedModel, data, bottlenecks: Sequence[str | Bottleneck], splits: Sequence[str] | None = None,
                     *, calibration=None, labelled: bool = True, seed: int = 0, batch_size: int = 64,
                     options: dict | None = None, coders: Sequence[str] = CODERS, progress: bool = False,
                     use_cache: bool = True, exits: dict | None = None,
                     keep_predictions: bool = False) -> AccuracyTable:
    """Measure every (split, bottleneck) on ``data`` (a Dataset of (image, label)).

    ``splits``: split names (default: every candidate). ``calibration``: the Dataset that
    learning bottlenecks fit on (required when one is asked for; keep it apart from
    ``data``). ``labelled``: False for data whose labels mean nothing (synthetic): only
    agreement and bytes are measured. ``options``: per-bottleneck fit options, e.g.
    ``{"autoencoder": {"epochs": 5}}``. ``coders``: the lossless coders whose bytes are
    measured (the others' columns are NaN; zstd and RLE cost time). ``exits``: early exit,
    ``{"splits": [...], "head": "linear"|"conv", "epochs": int, "lr": float}``: an exit head
    per split, fitted on ``calibration`` (backbone frozen) and scored in the same pass, with
    every bottleneck's per-sample outcomes at those splits
    (:class:`~splitimpera.accuracy.early_exit.ExitOutcomes` in ``.exits``; the splits must
    be among ``splits``). ``keep_predictions``: also return every sample's predicted class
    per (split, bottleneck) (``.labels``, ``.predictions``; not cached). Results are cached
    on disk.
    """
    from .cui import data_fingerprint, weights_hash

    bns = [get_bottleneck(b) if isinstance(b, str) else b for b in bottlenecks]
    names = [b.name for b in bns]
    if len(set(names)) != len(names):
        raise UserError(f"bottleneck listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    cand = [sp.name for sp in tm.candidates]
    if splits is not None:
        unknown = [s for s in splits if s not in set(cand)]
        if unknown or not splits:
            raise UserError(f"unknown split(s) {', '.join(unknown)}" if unknown else "no split to measure",
                            field="bottleneck.splits")
    splits = cand if splits is None else [s for s in cand if s in set(splits)]
    options = options or {}
    unknown = [c for c in coders if c not in CODERS]
    if unknown:
        raise UserError(f"unknown coder(s) {', '.join(unknown)} (known: {', '.join(CODERS)})")
    coders = [c for c in CODERS if c in set(coders)]
    fitting = [b for b in bns if b.needs_fit]
    if fitting and calibration is None:
        raise UserError(f"{', '.join(b.name for b in fitting)} must be fitted on calibration data, and none is given")
    if exits is not None:
        if calibration is None:
            raise UserError("exit heads must be fitted on calibration data, and none is given")
        if not labelled:
            raise UserError("exit heads are trained and scored on labelled data")
        missing = [s for s in exits["splits"] if s not in set(splits) or s == OUTPUT]
        if missing:
            raise UserError(f"exit split(s) {', '.join(missing)} are not measured splits", field="exit.splits")
        fitting = fitting or [None]  # the calibration data's fingerprint enters the key

    key = fit_key = None
    if use_cache:
        fp = data_fingerprint(data)
        cfp = data_fingerprint(calibration) if fitting else "-"
        if cfp is not None and fitting:
            # Each fit is kept on its own: another list of bottlenecks, coders or evaluation
            # data over the same model, calibration data and split reuses it.
            fit_key = (weights_hash(tm.model), tm.structure_key(), cfp, batch_size)
        if fp is not None and cfp is not None and not keep_predictions:
            key = cache.key("accuracy", ACCURACY_VERSION, weights_hash(tm.model), tm.structure_key(), fp, cfp,
                            [(b.name, type(b).__qualname__, b.describe(), _settings(b), options.get(b.name, {}))
                             for b in bns], splits, seed, labelled,
                            batch_size if fitting else None, coders,
                            *([("exits", exits)] if exits is not None else []))
            hit = cache.load("accuracy", key)
            if hit is not None:
                return _from_cache(hit)

    with eval_mode(tm.gm):
        tails = {s: head_tail(tm, tm.split(s)) for s in splits if s != OUTPUT}
        fitted, notes = _fit_all(tm, bns, splits, tails, calibration, seed, batch_size, options, progress, fit_key)
        heads = _fit_exit_heads(tm, exits, tails, calibration, seed, batch_size) if exits is not None else {}
        res = _evaluate(tm, data, bns, splits, tails, fitted, notes, labelled, batch_size, coders, progress, heads,
                        keep_predictions)
    outcomes = None
    if exits is not None:
        from .early_exit import ExitOutcomes, exit_head_work

        outcomes = ExitOutcomes(confidence=res[3]["confidence"], exit_correct=res[3]["exit_correct"],
                                server_correct=res[3]["server_correct"],
                                work={s: exit_head_work(h) for s, h in heads.items()},
                                settings={**exits, "seed": seed, "calibration_samples": len(calibration)})
    res = AccuracyTable(table=res[0], full_accuracy=res[1], samples=res[2],
                        calibration_samples=0 if not fitting else len(calibration),
                        settings={"bottlenecks": names, "seed": seed, "options": options,
                                  "random_draws": RANDOM_DRAWS, "labelled": labelled}, exits=outcomes,
                        labels=res[4].get("labels"), predictions=res[4].get("predictions"))
    if key is not None:
        cache.store("accuracy", key, _to_cache(res))
    return res


def _settings(b: Bottleneck) -> dict:
    """A bottleneck's plain settings (constructor arguments), for cache keys."""
    return {k: v for k, v in sorted(vars(b).items()) if isinstance(v, (bool, int, float, str, type(None)))}


FIT_VERSION = 2  # 2: the autoencoder keeps at least 8 hidden channels


def _fit_cache_key(fit_key, split: str, b: Bottleneck, options: dict, seed: int) -> str | None:
    """The cache key of one fit (None: not cached): the model, the calibration data, the
    split, the bottleneck's settings and the fit's seed, nothing else of the run."""
    if fit_key is None or type(b).fit_state is Bottleneck.fit_state:
        return None
    return cache.key("fit", FIT_VERSION, *fit_key, split, b.name, type(b).__qualname__, b.describe(), _settings(b),
                     options.get(b.name, {}), seed)


def _fit_all(tm, bns, splits, tails, calibration, seed, batch_size, options, progress, fit_key=None):
    """Fitted instances per (split, bottleneck name) (a list: one per draw), and notes for
    pairs that do not apply. ``fit_key``: what identifies the model and calibration data in
    the cache key of each fit (None: fits are not cached)."""
    fitted: dict[tuple[str, str], list[Bottleneck]] = {}
    notes: dict[tuple[str, str], str] = {}
    for s in splits:
        if s == OUTPUT:
            continue
        shape = tm.split(s).shape
        for b in bns:
            why = b.applicable(shape, s)
            if why:
                notes[(s, b.name)] = why
            elif not b.needs_fit:
                fitted[(s, b.name)] = [b]
    todo = [(s, b) for s in splits for b in bns if b.needs_fit and (s, b.name) not in notes and s != OUTPUT]
    order = {name: i for i, name in enumerate(sp.name for sp in tm.candidates)}
    draws_of = {b.name: RANDOM_DRAWS if getattr(b, "selection", None) == "random" else 1 for _, b in todo}
    keys = {(s, b.name, d): _fit_cache_key(fit_key, s, b, options, _seed(seed, order[s], d))
            for s, b in todo for d in range(draws_of[b.name])}
    reused = 0
    for s, b in todo:  # fits an earlier run kept
        hits = [cache.load("fit", keys[(s, b.name, d)]) if keys[(s, b.name, d)] else None
                for d in range(draws_of[b.name])]
        if all(h is not None for h in hits):
            fitted[(s, b.name)] = [b.from_fit_state(h, tm.split(s).shape) for h in hits]
            reused += 1
    if reused:
        log.info("%d bottleneck fit%s reused from the cache", reused, "s" if reused > 1 else "")
    todo = [(s, b) for s, b in todo if (s, b.name) not in fitted]
    if not todo:
        return fitted, notes
    from .gradcam import mappable_splits

    scores, means = {}, {}
    need_stats = sorted({s for s, b in todo if isinstance(b, TopChannels)} & mappable_splits(tm),
                        key=[sp.name for sp in tm.candidates].index)
    if need_stats:
        with stage(f"channel statistics (Grad-CAM) at {len(need_stats)} splits on {len(calibration)} calibration "
                   "samples"):
            scores, means = _channel_statistics(tm, calibration, need_stats, batch_size)
    calib_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    names = ", ".join(dict.fromkeys(b.name for _, b in todo))
    nsplits = len({s for s, _ in todo})
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc="fitting bottlenecks", unit="fit")
    with stage(f"fitting {names} at {nsplits} split{'s' if nsplits > 1 else ''}", total=len(todo),
               unit="fit") as step:
        for s, b in it:
            head, tail = tails[s]

            def calib(s=s, head=head):
                if s not in calib_cache:
                    calib_cache.clear()  # one split's activations at a time
                    calib_cache[s] = _calibration_activations(head, calibration, batch_size)
                return calib_cache[s]

            fitted[(s, b.name)] = [
                b.fit(FitContext(split=s, shape=tm.split(s).shape, tail=tail, calibration=calib,
                                 channel_scores=scores.get(s), mean=means.get(s),
                                 seed=_seed(seed, order[s], d), options=options.get(b.name, {})))
                for d in range(draws_of[b.name])]
            for d, inst in enumerate(fitted[(s, b.name)]):
                k = keys[(s, b.name, d)]
                state = inst.fit_state() if k is not None else None
                if state is not None:
                    cache.store("fit", k, state)
            step()
    return fitted, notes


def _fit_exit_heads(tm, exits, tails, calibration, seed, batch_size) -> dict:
    """An exit head per exit split, fitted on the calibration data's activations there (the
    backbone frozen: only its outputs are read), seeded per split. One forward pass over the
    calibration data reaches every exit split; linear heads keep only the pooled features."""
    from .early_exit import exit_features, fit_exit_head

    kind = exits.get("head", "linear")
    order = {name: i for i, name in enumerate(sp.name for sp in tm.candidates)}
    wanted = {tm.nodes[tm.split(s).index].name: s for s in exits["splits"]}
    feats: dict[str, list] = {s: [] for s in exits["splits"]}
    runner = _SplitRunner(tm.gm, wanted, lambda s, z: feats[s].append(
        exit_features(z, tm.split(s).shape, kind).detach().clone()))
    ys = []
    with torch.no_grad():
        for x, y in batches(calibration, batch_size):
            runner.run(x)
            ys.append(y)
    y = torch.cat(ys)
    return {s: fit_exit_head(torch.cat(feats[s]), y, tm.split(s).shape, tm.output_width, kind,
                             seed=_seed(seed, order[s], 0xE1), epochs=int(exits.get("epochs", 30)),
                             lr=float(exits.get("lr", 0.01)))
            for s in exits["splits"]}


def _evaluate(tm, data, bns, splits, tails, fitted, notes, labelled, batch_size, coders, progress, heads=None,
              keep_predictions=False):
    from .early_exit import confidences

    heads = heads or {}
    wanted = {tm.nodes[tm.split(s).index].name: s for s in splits if s != OUTPUT}
    per: dict = {"confidence": {}, "exit_correct": {}, "server_correct": {}}  # per-sample lists at exit splits
    correct: dict[tuple[str, str, int], int] = {}
    agree: dict[tuple[str, str, int], int] = {}
    nbytes: dict[tuple[str, str, str], float] = {}
    state = {}

    def hook(split, z):
        y = state["y"]
        if split in heads:  # the exit head reads the activation before any bottleneck, on the device
            logits = heads[split](z)
            for kind, v in confidences(logits).items():
                per["confidence"].setdefault(split, {}).setdefault(kind, []).append(v)
            per["exit_correct"].setdefault(split, []).append((logits.argmax(1) == y).numpy())
        for b in bns:
            for d, inst in enumerate(fitted.get((split, b.name), [])):
                zh, payload = inst.roundtrip(z)
                if zh.untyped_storage().data_ptr() == z.untyped_storage().data_ptr():
                    zh = zh.clone()  # the tail may work in place: never hand it the live value (or a view)
                pred = tails[split][1](zh).argmax(1)
                k = (split, b.name, d)
                state.setdefault("preds", {})[k] = pred
                correct[k] = correct.get(k, 0) + int((pred == y).sum())
                if d == 0 and split in heads:
                    per["server_correct"].setdefault((split, b.name), []).append((pred == y).numpy())
                for coder in coders:  # integers per draw; averaged over draws and samples at the end
                    kb = (split, b.name, coder)
                    nbytes[kb] = nbytes.get(kb, 0) + int(payload.sizes(coder).sum())

    runner = _SplitRunner(tm.gm, wanted, hook)
    total = full_correct = 0
    kept: dict = {}
    it = batches(data, batch_size)
    what = f"accuracy at {len(splits)} splits × {len(bns)} bottlenecks"
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=what, unit="batch")
    with torch.no_grad(), stage(f"measuring {what}", total=-(-len(data) // batch_size) if hasattr(data, "__len__") else None,
                                 unit="batch") as step:
        for x, y in it:
            state.clear()
            state["y"] = y
            full = runner.run(x).argmax(1)
            for k, pred in state.get("preds", {}).items():
                agree[k] = agree.get(k, 0) + int((pred == full).sum())
            full_correct += int((full == y).sum())
            total += len(y)
            if keep_predictions:
                kept.setdefault("labels", []).append(y.numpy())
                for k, pred in state.get("preds", {}).items():
                    kept.setdefault(k, []).append(pred.numpy())
            step()
    if total == 0:
        raise UserError("the data set is empty", field="data")
    full_acc = full_correct / total if labelled else None
    rows = []
    for s in splits:
        sp = tm.split(s)
        for b in bns:
            row = {"split": s, "bottleneck": b.name, "applicable": (s, b.name) not in notes,
                   "tx_bytes_fp32": sp.tx_bytes, "samples": total, "note": ""}
            if s == OUTPUT:  # the prediction itself is sent, losslessly
                row.update(accuracy=full_acc, accuracy_std=0.0, agreement=1.0, note="prediction sent",
                           **{f"bytes_{c}": float(PREDICTION_BYTES) if c in coders else np.nan for c in CODERS})
            elif (s, b.name) in notes:
                row.update(accuracy=np.nan, accuracy_std=np.nan, agreement=np.nan, note=notes[(s, b.name)],
                           **{f"bytes_{c}": np.nan for c in CODERS})
            else:
                draws = len(fitted[(s, b.name)])
                accs = np.array([correct[(s, b.name, d)] / total for d in range(draws)])
                agr = np.array([agree[(s, b.name, d)] / total for d in range(draws)])
                row.update(accuracy=float(accs.mean()) if labelled else np.nan,
                           accuracy_std=float(accs.std()) if labelled else np.nan,
                           agreement=float(agr.mean()),
                           note=f"mean of {draws} seeded draws" if draws > 1 else "",
                           **{f"bytes_{c}": nbytes[(s, b.name, c)] / (total * draws) if c in coders else np.nan
                              for c in CODERS})
            rows.append(row)
    table = pd.DataFrame(rows).set_index("split")[MEASURE_COLUMNS]
    table["accuracy"] = table["accuracy"].astype(float)
    cat = np.concatenate
    exits = {"confidence": {s: {k: cat(v) for k, v in d.items()} for s, d in per["confidence"].items()},
             "exit_correct": {s: cat(v) for s, v in per["exit_correct"].items()},
             "server_correct": {k: cat(v) for k, v in per["server_correct"].items()}}
    extra = {}
    if keep_predictions and kept:
        extra["labels"] = np.concatenate(kept.pop("labels"))
        by_pair: dict = {}
        for (s, b, d), v in sorted(kept.items(), key=lambda kv: kv[0][2]):
            by_pair.setdefault((s, b), []).append(np.concatenate(v))
        extra["predictions"] = {k: np.stack(v) for k, v in by_pair.items()}
    return table, full_acc, total, exits, extra


PROBE_POOL = 2  # the probe reads each channel's mean over a PROBE_POOL × PROBE_POOL grid


def _probe_features(z: torch.Tensor) -> np.ndarray:
    if z.dim() == 4:
        z = torch.nn.functional.adaptive_avg_pool2d(z, PROBE_POOL)
    return z.flatten(1).float().numpy()


def linear_probe_accuracy(tm: TracedModel, calibration, data, splits: Sequence[str], *, batch_size: int = 64,
                          seed: int = 0) -> pd.Series:
    """Per split: the test accuracy on ``data`` of a linear probe (multinomial logistic
    regression on standardised features) fitted on ``calibration``'s frozen activations at
    that split, each channel averaged over a 2×2 grid. No tail is retrained: the probe says
    how linearly separable the classes already are where the tensor is cut."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    wanted = {tm.nodes[tm.split(s).index].name: s for s in splits if s != OUTPUT}

    def features(ds):
        feats: dict[str, list] = {s: [] for s in wanted.values()}
        runner = _SplitRunner(tm.gm, wanted, lambda s, z: feats[s].append(_probe_features(z)))
        ys = []
        with torch.no_grad(), eval_mode(tm.gm):
            for x, y in batches(ds, batch_size):
                runner.run(x)
                ys.append(y.numpy())
        return {s: np.concatenate(v) for s, v in feats.items()}, np.concatenate(ys)

    (ftr, ytr), (fte, yte) = features(calibration), features(data)
    out = {}
    for s in (s for s in splits if s in ftr):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        clf.fit(ftr[s], ytr)
        out[s] = float((clf.predict(fte[s]) == yte).mean())
    return pd.Series(out, name="probe_accuracy", dtype=float)


def _to_cache(res: AccuracyTable) -> dict:
    t = res.table.reset_index()
    return {"columns": list(t.columns), "rows": t.astype(object).where(t.notna(), None).to_numpy().tolist(),
            "full_accuracy": res.full_accuracy, "samples": res.samples,
            "calibration_samples": res.calibration_samples, "settings": res.settings,
            **({"exits": res.exits.to_plain()} if res.exits is not None else {})}


def _from_cache(hit: dict) -> AccuracyTable:
    t = pd.DataFrame(hit["rows"], columns=hit["columns"]).set_index("split")
    t["applicable"] = t["applicable"].astype(bool)
    for c in MEASURE_COLUMNS:
        if c not in ("bottleneck", "note", "applicable"):
            t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    t["samples"] = t["samples"].astype(np.int64)
    t["tx_bytes_fp32"] = t["tx_bytes_fp32"].astype(np.int64)
    return AccuracyTable(table=t, full_accuracy=hit["full_accuracy"], samples=hit["samples"],
                         calibration_samples=hit["calibration_samples"], settings=hit["settings"],
                         exits=_exits_from_cache(hit.get("exits")))


def _exits_from_cache(plain):
    if plain is None:
        return None
    from .early_exit import ExitOutcomes

    return ExitOutcomes.from_plain(plain)


# --------------------------------------------------------------------------------------------
# Predictor


@dataclass(frozen=True)
class CUIPredictor:
    """Accuracy of one bottleneck as a monotone function of log10 CUI.

    Fitted with isotonic regression over the measured splits; the direction (increasing
    or decreasing) is chosen from the data, as scikit-learn's ``increasing="auto"`` does.
    ``loo_mae`` is the leave-one-out mean absolute error over those splits (each split
    predicted by a fit on the others), ``baseline_loo_mae`` the same for predicting the
    mean of the others, ``spearman`` the rank correlation of CUI and accuracy.
    """

    x: np.ndarray
    y: np.ndarray
    splits: tuple[str, ...]
    loo_errors: np.ndarray
    baseline_errors: np.ndarray
    spearman: float

    @property
    def loo_mae(self) -> float:
        return float(np.mean(np.abs(self.loo_errors))) if len(self.loo_errors) else float("nan")

    @property
    def baseline_loo_mae(self) -> float:
        return float(np.mean(np.abs(self.baseline_errors))) if len(self.baseline_errors) else float("nan")

    def predict(self, log10_cui) -> np.ndarray:
        return fit_method("cui", self.x, self.y)(np.asarray(log10_cui, dtype=float))

    def summary(self) -> dict:
        return {"measured_splits": len(self.splits), "spearman": jsonable(self.spearman),
                "loo_mae": jsonable(self.loo_mae), "baseline_loo_mae": jsonable(self.baseline_loo_mae)}


MIN_PREDICTOR_POINTS = MIN_POINTS


def fit_predictor(log10_cui: pd.Series, accuracy: pd.Series) -> CUIPredictor | None:
    """Predictor from the splits that have both a CUI value and a measured accuracy (None
    with fewer than :data:`MIN_PREDICTOR_POINTS`)."""
    from scipy.stats import spearmanr

    both = pd.concat([log10_cui.rename("x"), accuracy.rename("y")], axis=1, join="inner").dropna()
    both = both[np.isfinite(both["x"])]
    if len(both) < MIN_PREDICTOR_POINTS:
        return None
    x, y = both["x"].to_numpy(float), both["y"].to_numpy(float)
    loo, base = loo_predictions("cui", x, y) - y, loo_predictions("mean", x, y) - y
    rho = float(spearmanr(x, y).statistic) if np.ptp(y) > 0 and np.ptp(x) > 0 else float("nan")
    return CUIPredictor(x=x, y=y, splits=tuple(both.index), loo_errors=loo, baseline_errors=base, spearman=rho)


def predictor_report(acc: AccuracyTable, log10_cui: pd.Series, column: str = "accuracy") -> pd.DataFrame:
    """Per bottleneck: Spearman(CUI, accuracy), predictor LOO MAE and baseline LOO MAE,
    accuracy range over the splits with a CUI value (``column="agreement"`` without labels)."""
    rows = []
    for b in acc.bottlenecks:
        a = acc.for_bottleneck(b)[column]
        p = fit_predictor(log10_cui, a)
        common = a.reindex(log10_cui.index).dropna()
        rows.append({"bottleneck": b, "splits": int(len(common)),
                     "accuracy_min": float(common.min()) if len(common) else np.nan,
                     "accuracy_max": float(common.max()) if len(common) else np.nan,
                     "spearman": np.nan if p is None else p.spearman,
                     "loo_mae": np.nan if p is None else p.loo_mae,
                     "baseline_loo_mae": np.nan if p is None else p.baseline_loo_mae})
    return pd.DataFrame(rows).set_index("bottleneck")


def channel_comparison(acc: AccuracyTable) -> pd.DataFrame:
    """Grad-CAM-selected vs random channels at the same channel counts (so equal bytes), per
    split and fraction: accuracy and agreement of each, random's spread over draws, and the
    ``difference`` in ``metric`` (accuracy with labels, else agreement with the full model)."""
    metric = "accuracy" if acc.full_accuracy is not None else "agreement"
    rows = []
    for b in acc.bottlenecks:
        if not b.endswith("_gradcam"):
            continue
        ctrl = b[: -len("_gradcam")] + "_random"
        if ctrl not in acc.bottlenecks:
            continue
        g, r = acc.for_bottleneck(b), acc.for_bottleneck(ctrl)
        for s in g.index:
            if s == OUTPUT or not g.at[s, "applicable"]:
                continue
            rows.append({"split": s, "fraction": b[3:-len("_gradcam")] + " %",
                         "bytes_raw": g.at[s, "bytes_raw"], "gradcam_accuracy": g.at[s, "accuracy"],
                         "random_accuracy": r.at[s, "accuracy"], "random_std": r.at[s, "accuracy_std"],
                         "gradcam_agreement": g.at[s, "agreement"], "random_agreement": r.at[s, "agreement"]})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["metric"] = metric
        out["difference"] = out[f"gradcam_{metric}"] - out[f"random_{metric}"]
        out = out.set_index("split")
    return out


# --------------------------------------------------------------------------------------------
# User-supplied accuracies


def read_user_accuracy(path: str | Path, bottleneck: str, splits: Sequence[str], source: str,
                       field_name: str = "bottleneck.accuracy_csv") -> pd.Series:
    """Accuracies per split from a CSV with columns ``split``, ``accuracy`` (a fraction in
    [0, 1]) and optionally ``bottleneck`` (rows for other bottlenecks are ignored)."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}", source=source, field=field_name) from None
    except Exception as e:
        raise UserError(f"cannot read {path} as CSV: {first_line(e)}", source=source, field=field_name) from None
    missing = [c for c in ("split", "accuracy") if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (needs split, accuracy[, bottleneck])",
                        source=source, field=field_name)
    if "bottleneck" in df.columns:
        df = df[df["bottleneck"].astype(str) == bottleneck]
    known = set(splits)
    unknown = [s for s in df["split"].astype(str) if s not in known]
    if unknown:
        raise UserError(f"{path} names split(s) the model does not have: {', '.join(unknown[:5])}",
                        source=source, field=field_name)
    acc = pd.to_numeric(df["accuracy"], errors="coerce")
    bad = df.loc[~acc.between(0, 1), "split"].astype(str).tolist()
    if bad:
        raise UserError(f"{path}: accuracy must be a fraction in [0, 1] (split {bad[0]})", source=source,
                        field=field_name)
    s = pd.Series(acc.to_numpy(float), index=df["split"].astype(str).to_numpy(), name="accuracy")
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()][0]
        raise UserError(f"{path}: split {dup} is listed twice", source=source, field=field_name)
    return s
