"""Fitting compute models to timed nodes, and their errors on held-out models.

The per-kind model (:mod:`splitimpera.latency.kind_model`): :func:`fit_base` fits each
kind's (and operator's) base, :func:`choose_residual_kinds` picks the kinds whose residual
regressor beats their base in cross-validation.

The roofline (:func:`fit_roofline`) takes the per-node roofline of :mod:`splitimpera.latency.compute`::

    t_i = max(Σ_c F_ic · a_c,  B_i · β) + o          (layers only)

with ``a_c`` seconds per multiply-add of op class ``c``, ``β`` seconds per byte and ``o``
seconds per layer, all ≥ 0. It alternates two steps, as k-plane regression does: (1)
given which bound each layer is on, the model is linear in (a, β, o): a non-negative
least-absolute-deviations fit of the *relative* residuals (each row divided by its measured
time, so a 5 µs ReLU and a 5 ms convolution count alike; L1 so that the few layers a busy
machine slowed down do not drag the fit), solved as a linear program (SciPy's HiGHS); (2)
re-assign each layer to its larger term. It starts from "layers with FLOPs are compute
bound", stops when an assignment repeats, and keeps the iterate with the smallest mean
|relative residual|. Then ``efficiency_c = 2 / (a_c · peak)`` (``peak_gflops`` counts 2 FLOP
per multiply-add), ``bandwidth = 1/β``, ``layer_overhead = o``. A class that never binds in
the fit set (no compute-bound layer) gets efficiency 1 and an ``estimates`` line; a class
faster than the measured matmul peak raises ``peak_gflops`` to its rate (so efficiency ≤ 1).

The error check runs the fitted profile on models *held out* of the fit: median absolute
percentage error per layer and per whole model (against the plain forward time), beside
the same figures for the flop-only model (``Σ_c F_ic a_c + o``) fitted to the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..config.op_kinds import OP_CLASSES
from ..latency.kind_model import (TABLE_COLUMNS, KindCoef, KindModel, base_design, coef_keys, fit_residual,
                                  residual_candidates, timed, usable)
from .timing import TimedModel

# The least gain in cross-validated error for which a kind gets its residual: relative, and
# absolute (mean |log error| × 100, about half a percentage point).
MIN_GAIN = 0.02
MIN_ABS_GAIN = 0.5


def nnlad(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_x Σ_i |(A x − y)_i| subject to x ≥ 0, as a linear program (HiGHS)."""
    from scipy import sparse
    from scipy.optimize import linprog

    # Columns scaled to unit norm: raw ones span ~12 orders of magnitude (MACs vs layers).
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    As = sparse.csr_matrix(A / scale)
    m, k = As.shape
    eye = sparse.identity(m, format="csr")
    # Variables [x (k), u (m)]: minimise Σu subject to −u ≤ A x − y ≤ u.
    A_ub = sparse.vstack([sparse.hstack([As, -eye]), sparse.hstack([-As, -eye])], format="csr")
    res = linprog(np.concatenate([np.zeros(k), np.ones(m)]), A_ub=A_ub, b_ub=np.concatenate([y, -y]),
                  bounds=[(0, None)] * (k + m), method="highs")
    if not res.success:
        raise RuntimeError(f"least-absolute-deviation fit failed: {res.message}")
    return res.x[:k] / scale


def _nnlad_relative(X: np.ndarray, t: np.ndarray) -> np.ndarray:
    return nnlad(X / t[:, None], np.ones(len(t)))


def fit_base(table: pd.DataFrame, *, min_nodes: int = 6) -> dict[str, KindCoef]:
    """Per-kind base coefficients from a table with :data:`TABLE_COLUMNS` (see the module doc).
    Kinds with fewer than ``min_nodes`` timed nodes use the all-kinds fit (``"all"``)."""
    rows = usable(table)
    if len(rows) < 5:
        raise ValueError(f"need at least 5 timed nodes to fit, got {len(rows)}")
    coef = {"all": KindCoef(*_nnlad_relative(base_design(rows), rows["measured_s"].to_numpy(dtype=float)))}
    for k, g in rows.groupby("kind"):
        if len(g) >= min_nodes:
            coef[str(k)] = KindCoef(*_nnlad_relative(base_design(g), g["measured_s"].to_numpy(dtype=float)))
    keys = coef_keys(rows)
    for k in np.unique(keys):
        if "/" not in k:  # no operator named: the kind's own base
            continue
        g = rows[keys == k]
        kind = k.partition("/")[0]
        # an operator of its own when it is measured enough and its kind has more than one
        if len(g) >= min_nodes and kind in coef and len(set(keys[rows["kind"].to_numpy() == kind])) > 1:
            coef[str(k)] = KindCoef(*_nnlad_relative(base_design(g), g["measured_s"].to_numpy(dtype=float)))
    return coef


def choose_residual_kinds(table: pd.DataFrame, folds: int = 5) -> tuple[list[str], pd.DataFrame]:
    """The kinds whose residual regressor predicts nodes of models it was not fitted on better
    than their base alone, by cross-validation over the table's models (``model`` column):
    the models are dealt into ``folds`` groups; each group is predicted by a base and a
    residual fitted to the others. A kind gets its residual when that lowers the mean
    |log(predicted / measured)| of its held-out nodes by more than :data:`MIN_GAIN` of it
    and more than :data:`MIN_ABS_GAIN` (the mean, not the median: a residual that fixes a
    third of the nodes must count). Returns the kinds, and per candidate kind that mean ×
    100 (about a percentage) for ``base`` and ``residual``, and ``nodes``."""
    rows = usable(table)
    models = sorted(set(rows["model"].astype(str)))
    cands = residual_candidates(rows)
    if len(models) < 2 or not cands:
        return [], pd.DataFrame(columns=["base", "residual", "nodes"])
    group = {m: i % min(folds, len(models)) for i, m in enumerate(models)}
    g = rows["model"].astype(str).map(group).to_numpy()
    t = rows["measured_s"].to_numpy(dtype=float)
    err_base, err_res = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for f in sorted(set(g)):
        train, test = rows[g != f], rows[g == f]
        coef = fit_base(train)
        m = KindModel(coef, fit_residual(train, coef, kinds=[k for k in cands if k in residual_candidates(train)]))
        err_base[g == f] = np.abs(np.log(KindModel(coef).predict_s(test) / t[g == f]))
        err_res[g == f] = np.abs(np.log(m.predict_s(test) / t[g == f]))
    kind = rows["kind"].to_numpy(dtype=object)
    score = pd.DataFrame([{"kind": k, "base": float(np.mean(err_base[kind == k]) * 100),
                           "residual": float(np.mean(err_res[kind == k]) * 100), "nodes": int((kind == k).sum())}
                          for k in cands]).set_index("kind")
    gain = score["base"] - score["residual"]
    return [k for k in cands if gain[k] > MIN_GAIN * score.loc[k, "base"] and gain[k] > MIN_ABS_GAIN], score


@dataclass(frozen=True)
class RooflineFit:
    """Fitted per-node model: seconds per multiply-add per op class, per byte moved, per layer.

    A class (or ``memory``) that no layer of the fit set is bound by cannot be measured: its
    coefficient is 0 and it is listed in ``unidentified``. ``fit_error`` is the mean
    |relative residual| over the fitted layers. ``memory_bound`` is False for the flop-only
    model (``Σ_c F_c a_c + o``).
    """

    s_per_mac: dict[str, float]
    s_per_byte: float
    overhead_s: float
    unidentified: tuple[str, ...]
    layers: int
    iterations: int
    fit_error: float
    memory_bound: bool = True

    def predict_s(self, nodes) -> np.ndarray:
        """Seconds per node of a :func:`profile_nodes` table, shape ``(n_nodes,)``."""
        comp = sum(np.asarray(nodes[f"flops_{c}"], dtype=float) * self.s_per_mac[c] for c in OP_CLASSES)
        layer = np.asarray(nodes["is_layer"], dtype=float)
        if not self.memory_bound:
            return comp + layer * self.overhead_s
        mem = np.asarray(nodes["bytes_moved"], dtype=float) * self.s_per_byte
        return np.maximum(comp, mem) + layer * self.overhead_s


def _layer_rows(nodes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FLOPs per class (n, 3), bytes moved (n,), measured seconds (n,)) of the timed layers."""
    lay = nodes[nodes["is_layer"].astype(bool) & (nodes["measured_s"] > 0)]
    F = lay[[f"flops_{c}" for c in OP_CLASSES]].to_numpy(dtype=float)
    B = lay["bytes_moved"].to_numpy(dtype=float)
    t = lay["measured_s"].to_numpy(dtype=float)
    return F, B, t


def fit_roofline(nodes: pd.DataFrame, *, max_iter: int = 50) -> RooflineFit:
    """Fit the per-node roofline to measured layer times (see the module doc).

    ``nodes``: :func:`profile_nodes` rows (any number of models, concatenated) with a
    ``measured_s`` column; only layers (``is_layer``) with a positive time are used.
    """
    F, B, t = _layer_rows(nodes)
    if len(t) < 5:
        raise ValueError(f"need at least 5 timed layers to fit, got {len(t)}")
    w = 1.0 / t  # relative residuals: a 5 µs ReLU counts as much as a 5 ms convolution
    ones = np.ones(len(t))
    mem = F.sum(axis=1) == 0  # start: layers with FLOPs are compute bound
    best, seen = None, set()
    for it in range(1, max_iter + 1):
        x = nnlad(np.column_stack([F * ~mem[:, None], B * mem, ones]) * w[:, None], ones)
        # A class with no row on its side of the max is not measured by this assignment.
        a = np.where((F * ~mem[:, None]).any(axis=0), x[:3], 0.0)
        beta = x[3] if mem.any() else 0.0
        o = x[4]
        comp, memt = F @ a, B * beta
        err = float(np.mean(np.abs((np.maximum(comp, memt) + o - t) * w)))
        if best is None or err < best[0] - 1e-12:
            best = (err, a, beta, o, mem.copy(), it)
        seen.add(mem.tobytes())
        mem = memt > comp
        if mem.tobytes() in seen:  # converged, or cycling: keep the best iterate
            break
    err, a, beta, o, mem, at = best
    unident = tuple(c for j, c in enumerate(OP_CLASSES) if a[j] <= 0)
    if beta <= 0:
        unident += ("memory",)
    return RooflineFit(s_per_mac=dict(zip(OP_CLASSES, map(float, a))), s_per_byte=float(beta), overhead_s=float(o),
                       unidentified=unident, layers=len(t), iterations=at, fit_error=err)


def fit_flop_only(nodes: pd.DataFrame) -> RooflineFit:
    """The flop-only model ``Σ_c F_c a_c + o``, fitted like :func:`fit_roofline` (relative L1, a, o ≥ 0)."""
    F, _, t = _layer_rows(nodes)
    if len(t) < 5:
        raise ValueError(f"need at least 5 timed layers to fit, got {len(t)}")
    w = 1.0 / t
    x = nnlad(np.column_stack([F, np.ones(len(t))]) * w[:, None], np.ones(len(t)))
    err = float(np.mean(np.abs((F @ x[:3] + x[3] - t) * w)))
    unident = tuple(c for j, c in enumerate(OP_CLASSES) if x[j] <= 0)
    return RooflineFit(s_per_mac=dict(zip(OP_CLASSES, map(float, x[:3]))), s_per_byte=0.0, overhead_s=float(x[3]),
                       unidentified=unident, layers=len(t), iterations=1, fit_error=err, memory_bound=False)


def prediction_errors(measurements: Sequence[TimedModel], predict: Callable) -> pd.DataFrame:
    """One row per model: ``layers``, ``layer_mdape`` (median |pred − measured| / measured over
    its layers, %), ``measured_s`` (plain forward), ``predicted_s`` (sum of node predictions),
    ``model_ape`` (%), and ``_ape`` (the per-layer errors, %, as an array).
    ``predict(nodes) -> seconds per node``."""
    rows = []
    for m in measurements:
        pred = np.asarray(predict(m.nodes), dtype=float)
        lay = m.nodes["is_layer"].to_numpy(dtype=bool) & (m.nodes["measured_s"].to_numpy() > 0)
        meas = m.nodes["measured_s"].to_numpy()[lay]
        ape = np.abs(pred[lay] - meas) / meas * 100
        total = float(pred.sum())
        rows.append({"model": m.model, "layers": int(lay.sum()), "layer_mdape": float(np.median(ape)),
                     "measured_s": m.total_s, "predicted_s": total,
                     "model_err": (total - m.total_s) / m.total_s * 100,
                     "model_ape": abs(total - m.total_s) / m.total_s * 100, "_ape": ape})
    cols = ["model", "layers", "layer_mdape", "measured_s", "predicted_s", "model_err", "model_ape", "_ape"]
    return pd.DataFrame(rows, columns=cols).set_index("model")


def summarize_errors(errors: pd.DataFrame) -> dict[str, float]:
    """Pooled per-layer median APE, median per-model APE and the share of models within 10 %, %."""
    pooled = np.concatenate(list(errors["_ape"])) if len(errors) else np.zeros(0)
    return {"layer_mdape": float(np.median(pooled)) if len(pooled) else float("nan"),
            "model_mdape": float(np.median(errors["model_ape"])) if len(errors) else float("nan"),
            "within_10": float(np.mean(errors["model_ape"] <= 10) * 100) if len(errors) else float("nan")}


def node_table(measurements: Sequence[TimedModel]) -> pd.DataFrame:
    """The residual table (:data:`splitimpera.latency.kind_model.TABLE_COLUMNS` plus ``model``, ``node``)
    of measured models: every timed graph operation."""
    parts = []
    for m in measurements:
        n = m.nodes
        sel = timed(n) & (n["measured_s"].to_numpy(dtype=float) > 0)
        part = n.loc[sel, [*TABLE_COLUMNS, *(["noise"] if "noise" in n.columns else [])]].copy()
        part.insert(0, "node", part.index)
        part.insert(0, "model", m.model)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
