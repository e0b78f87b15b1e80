"""Predicting a split's accuracy under a bottleneck from the splits measured so far, and
validating every such predictor by leave-one-split-out.

A *group* is one (model, task, bottleneck): its points are the splits where the accuracy
under that bottleneck was measured. A predictor fits accuracy on one feature of the split
over the other points of the group, and predicts the held-out one:

* ``cui``: I-SPLIT's CUI curve, an isotonic (monotone) fit on log10 CUI, its direction
  chosen from the data;
* ``cui_linear``: linear in log10 CUI;
* ``mean`` (baseline B0): the mean of the other splits;
* ``depth`` (B1): linear in the split's normalised depth (its position in the candidate
  list, 0 at the input, 1 at the output);
* ``log_size`` (B2): linear in log10 of the sent tensor's fp32 bytes, I-SPLIT's own
  layer-size comparison curve;
* ``probe`` (B3): linear in the accuracy of a linear probe on the frozen features at the
  split (a logistic regression on pooled activations; no tail is retrained).

Leave-one-out errors of the linear predictors and of the mean come in closed form (the
residual over one minus the leverage); the isotonic one is refitted per held-out split.

:func:`validate` scores every predictor per group and pooled: mean absolute error (MAE),
Spearman correlation of prediction and measurement, and *regret* (the accuracy lost by
taking the split with the best prediction instead of the best measured split), and runs a
paired bootstrap over splits. A predictor **predicts** when its pooled MAE is at most
:data:`BAR_RATIO` × the best baseline's (B0–B2) in at least :data:`BAR_WIN_RATE` of the
resamples, on at least :data:`BAR_MIN_POINTS` points from at least :data:`BAR_MIN_ARCHS`
architectures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

BAR_RATIO = 0.75
BAR_WIN_RATE = 0.95
BAR_MIN_POINTS = 30
BAR_MIN_ARCHS = 2
BASELINES = ("mean", "depth", "log_size")
MIN_POINTS = 3  # a group needs this many measured splits to be fitted with one held out


@dataclass(frozen=True)
class Method:
    """A predictor: ``feature`` is the split's column it reads (None: none), ``kind`` how
    it fits (``isotonic``, ``linear`` or ``mean``)."""

    name: str
    label: str
    feature: str | None
    kind: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("cui", "isotonic on log10 CUI (I-SPLIT)", "log10_cui", "isotonic"),
    Method("cui_linear", "linear on log10 CUI", "log10_cui", "linear"),
    Method("mean", "B0: mean of the other splits", None, "mean"),
    Method("depth", "B1: linear on normalised depth", "depth", "linear"),
    Method("log_size", "B2: linear on log10 sent bytes", "log10_tx_bytes", "linear"),
    Method("probe", "B3: linear on a linear probe's accuracy", "probe_accuracy", "linear"),
)}


def _isotonic(x, y):
    import warnings

    from sklearn.isotonic import IsotonicRegression

    with warnings.catch_warnings():  # "auto" warns when the direction is uncertain: the LOO error shows it
        warnings.simplefilter("ignore")
        return IsotonicRegression(increasing="auto", out_of_bounds="clip").fit(x, y)


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), x])


def fit_method(method: str | Method, x: np.ndarray, y: np.ndarray):
    """A callable ``predict(x) -> ndarray`` fitted on points ``(x, y)`` (``x`` ignored by ``mean``)."""
    m = METHODS[method] if isinstance(method, str) else method
    x, y = np.asarray(x, float), np.asarray(y, float)
    if m.kind == "mean":
        mu = float(y.mean())
        return lambda q: np.full(len(np.atleast_1d(q)), mu)
    if m.kind == "isotonic":
        iso = _isotonic(x, y)
        return lambda q: iso.predict(np.atleast_1d(np.asarray(q, float)))
    if np.ptp(x) == 0:  # one feature value: the line is the mean
        mu = float(y.mean())
        return lambda q: np.full(len(np.atleast_1d(q)), mu)
    beta = np.linalg.lstsq(_design(x), y, rcond=None)[0]
    return lambda q: _design(np.atleast_1d(np.asarray(q, float))) @ beta


def loo_predictions(method: str | Method, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each point predicted by ``method`` fitted on all the others (len ≥ :data:`MIN_POINTS`)."""
    m = METHODS[method] if isinstance(method, str) else method
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(y)
    if n < MIN_POINTS:
        raise ValueError(f"leave-one-out needs at least {MIN_POINTS} points, got {n}")
    if m.kind == "mean":
        return (y.sum() - y) / (n - 1)
    if m.kind == "linear":
        keep_out = [np.delete(x, i) for i in range(n)]
        if np.ptp(x) > 0 and all(np.ptp(k) > 0 for k in keep_out):
            # Closed form: the LOO residual is the residual over 1 - leverage.
            X = _design(x)
            beta, *_ = np.linalg.lstsq(X, y, rcond=None)
            h = np.einsum("ij,ji->i", X, np.linalg.pinv(X.T @ X) @ X.T)
            return y - (y - X @ beta) / (1.0 - h)
    keep = ~np.eye(n, dtype=bool)
    return np.array([fit_method(m, x[keep[i]], y[keep[i]])(x[i:i + 1])[0] for i in range(n)])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def regret(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Accuracy lost by taking the split with the highest prediction (ties: the earliest
    split) instead of the best measured one. Over leave-one-out predictions each split's
    comes from another fit; B0's is then highest where the accuracy is lowest, so B0's regret
    is its group's accuracy range by construction (and its Spearman −1)."""
    return float(np.max(measured) - measured[int(np.argmax(predicted))])


@dataclass(frozen=True)
class Validation:
    """Outcome of :func:`validate`.

    ``points``: one row per (group, split) with ``accuracy`` and ``loo_<method>``, the
    leave-one-split-out prediction of each method. ``groups``: per (group, method) ``points``,
    ``mae``, ``spearman``, ``regret``. ``pooled``: per method the MAE over every point, the
    mean Spearman and mean regret over groups, and ``win_rate``: the share of paired
    bootstrap resamples (splits drawn with replacement within each group) in which the
    method's MAE is at most :data:`BAR_RATIO` × the best baseline's. ``passes``: the
    methods that meet the bar; ``chosen``: the one the tool uses (the lowest pooled MAE
    among those that pass), or None: then accuracy is measured, not predicted.
    """

    points: pd.DataFrame
    groups: pd.DataFrame
    pooled: pd.DataFrame
    group_keys: tuple[str, ...]
    methods: tuple[str, ...]
    architectures: int
    bootstrap: int
    passes: tuple[str, ...] = ()
    chosen: str | None = None
    settings: dict = field(default_factory=dict)


def validate(points: pd.DataFrame, group_keys: Sequence[str], methods: Sequence[str] | None = None, *,
             architecture_key: str | None = "model", bootstrap: int = 2000, seed: int = 0) -> Validation:
    """Leave-one-split-out validation of ``methods`` (default: every method whose feature
    ``points`` has) on ``points``: one row per measured (group, split), columns
    ``group_keys``, ``split``, ``accuracy`` and the features. Groups with fewer than
    :data:`MIN_POINTS` points are left out. ``architecture_key`` names the column that
    counts architectures for the bar."""
    keys = list(group_keys)
    if methods is None:
        methods = [m for m, spec in METHODS.items() if spec.feature is None or spec.feature in points.columns]
    methods = list(methods)
    rows, gstats = [], []
    feats = [METHODS[m].feature for m in methods if METHODS[m].feature]
    for gk, g in points.groupby(keys, sort=False):
        # Every method scores the same splits: those where the accuracy and every feature are known.
        g = g.dropna(subset=["accuracy", *feats])
        g = g[np.isfinite(g[["accuracy", *feats]].to_numpy(float)).all(axis=1)]
        if len(g) < MIN_POINTS:
            continue
        y = g["accuracy"].to_numpy(float)
        out = g.copy()
        for m in methods:
            spec = METHODS[m]
            x = np.zeros(len(g)) if spec.feature is None else g[spec.feature].to_numpy(float)
            pred = np.clip(loo_predictions(spec, x, y), 0.0, 1.0)  # scored as the tool shows it
            out[f"loo_{m}"] = pred
            gstats.append({**dict(zip(keys, gk if isinstance(gk, tuple) else (gk,))), "method": m,
                           "points": len(g), "mae": float(np.mean(np.abs(pred - y))),
                           "spearman": _spearman(pred, y), "regret": regret(pred, y),
                           "accuracy_min": float(y.min()), "accuracy_max": float(y.max())})
        rows.append(out)
    pts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=[*keys, "split", "accuracy"])
    groups = pd.DataFrame(gstats)
    pooled = _pooled(pts, groups, keys, methods, bootstrap, seed)
    archs = int(pts[architecture_key].nunique()) if architecture_key and architecture_key in pts else 1
    base = [b for b in BASELINES if b in methods]
    passes = tuple(m for m in methods if m not in base and len(pts) >= BAR_MIN_POINTS
                   and archs >= BAR_MIN_ARCHS and pooled.at[m, "win_rate"] >= BAR_WIN_RATE)
    chosen = min(passes, key=lambda m: pooled.at[m, "mae"]) if passes else None
    return Validation(points=pts, groups=groups, pooled=pooled, group_keys=tuple(keys), methods=tuple(methods),
                      architectures=archs, bootstrap=bootstrap, passes=passes, chosen=chosen,
                      settings={"bar_ratio": BAR_RATIO, "bar_win_rate": BAR_WIN_RATE,
                                "bar_min_points": BAR_MIN_POINTS, "bar_min_architectures": BAR_MIN_ARCHS,
                                "baselines": base, "seed": seed})


def _pooled(pts: pd.DataFrame, groups: pd.DataFrame, keys: list[str], methods: list[str], bootstrap: int,
            seed: int) -> pd.DataFrame:
    cols = ["points", "mae", "spearman", "regret", "win_rate"]
    if pts.empty:
        return pd.DataFrame(index=pd.Index(methods, name="method"), columns=cols, dtype=float)
    err = np.abs(pts[[f"loo_{m}" for m in methods]].to_numpy(float) - pts["accuracy"].to_numpy(float)[:, None])
    base = [methods.index(b) for b in BASELINES if b in methods]
    # Paired bootstrap: one draw of splits (with replacement, within each group) scores every method.
    rng = np.random.default_rng(seed)
    gid = pts.groupby(keys, sort=False).ngroup().to_numpy()
    members = [np.flatnonzero(gid == i) for i in range(gid.max() + 1)]
    wins = np.zeros(len(methods))
    for _ in range(bootstrap):
        idx = np.concatenate([rng.choice(mem, size=len(mem), replace=True) for mem in members])
        mae = err[idx].mean(axis=0)
        if base:
            wins += mae <= BAR_RATIO * mae[base].min()
    g = groups.groupby("method", sort=False)
    out = pd.DataFrame({
        "points": len(pts),
        "mae": err.mean(axis=0),
        "spearman": g["spearman"].mean().reindex(methods).to_numpy(),
        "regret": g["regret"].mean().reindex(methods).to_numpy(),
        "win_rate": wins / bootstrap if bootstrap and base else np.nan,
    }, index=pd.Index(methods, name="method"))
    for b in base:
        out.iloc[b, out.columns.get_loc("win_rate")] = np.nan  # a baseline is not scored against itself
    return out


def split_features(names: Sequence[str], candidates: Sequence[str], tx_bytes: pd.Series,
                   log10_cui: pd.Series | None = None) -> pd.DataFrame:
    """Per split in ``names``: ``depth`` (position among ``candidates``, 0 at the first, 1 at
    the last), ``log10_tx_bytes`` (fp32 bytes of the sent tensor) and, when given,
    ``log10_cui``."""
    pos = {n: i for i, n in enumerate(candidates)}
    last = max(len(candidates) - 1, 1)
    df = pd.DataFrame(index=pd.Index(list(names), name="split"))
    df["depth"] = [pos[n] / last for n in names]
    df["log10_tx_bytes"] = [math.log10(max(float(tx_bytes[n]), 1.0)) for n in names]
    if log10_cui is not None:
        df["log10_cui"] = log10_cui.reindex(list(names)).to_numpy(float)
    return df


# The predictor ``bottleneck.predictor: auto`` uses: the one that passed the bar on the
# bundled study (benchmarks/bench_accuracy_prediction.py), or None when none did: then the
# tool measures every split instead of predicting.
VALIDATED: str | None = None


def resolve(name: str) -> str | None:
    """The method a scenario's ``bottleneck.predictor`` names (None: measure, do not predict)."""
    if name == "auto":
        return VALIDATED
    if name == "none":
        return None
    if name not in METHODS:
        raise ValueError(f"unknown predictor {name!r} (known: auto, none, {', '.join(METHODS)})")
    return name


@dataclass(frozen=True)
class Prediction:
    """Accuracy predicted at unmeasured splits by ``method`` fitted on ``measured`` splits.

    ``accuracy``: per predicted split. ``loo_mae``: the method's leave-one-split-out mean
    absolute error over the measured splits, the band a predicted accuracy travels with;
    ``baseline_loo_mae``: the same for the mean of the others (B0); ``spearman`` of the LOO
    predictions against the measurements."""

    method: str
    accuracy: pd.Series
    measured: int
    loo_mae: float
    baseline_loo_mae: float
    spearman: float

    @property
    def label(self) -> str:
        return METHODS[self.method].label

    def summary(self) -> dict:
        from ..plain import jsonable

        return {"method": self.method, "label": self.label, "measured_splits": self.measured,
                "loo_mae": jsonable(self.loo_mae), "baseline_loo_mae": jsonable(self.baseline_loo_mae),
                "spearman": jsonable(self.spearman)}


def predict(method: str, features: pd.DataFrame, measured: pd.Series, targets: Sequence[str]) -> Prediction | None:
    """``method`` fitted on the ``measured`` accuracies (index: split) and the splits'
    ``features`` (index: split), evaluated at ``targets``; None with fewer than
    :data:`MIN_POINTS` usable measured splits. Splits whose feature is unknown are neither
    used nor predicted."""
    spec = METHODS[method]
    col = spec.feature
    f = features[col] if col else pd.Series(0.0, index=features.index)
    f = f[np.isfinite(f.astype(float))]
    both = measured.dropna()
    both = both[both.index.isin(f.index)]
    if len(both) < MIN_POINTS:
        return None
    x, y = f.loc[both.index].to_numpy(float), both.to_numpy(float)
    loo = np.clip(loo_predictions(spec, x, y), 0.0, 1.0)  # scored as shown: an accuracy is in [0, 1]
    base = loo_predictions(METHODS["mean"], x, y)
    fitted = fit_method(spec, x, y)
    can = [t for t in targets if t in f.index]
    acc = pd.Series(np.clip(fitted(f.loc[can].to_numpy(float)), 0.0, 1.0) if can else [], index=can, dtype=float)
    return Prediction(method=method, accuracy=acc, measured=len(both), loo_mae=float(np.mean(np.abs(loo - y))),
                      baseline_loo_mae=float(np.mean(np.abs(base - y))), spearman=_spearman(loo, y))


PREDICTED_PREFIX = "predicted ("


def predicted_source(method: str) -> str:
    """The ``accuracy_source`` of an accuracy ``method`` predicted: ``predicted (cui)``."""
    return f"{PREDICTED_PREFIX}{method})"


def is_predicted(source) -> bool:
    return isinstance(source, str) and source.startswith(PREDICTED_PREFIX)
