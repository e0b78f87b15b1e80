"""The per-kind compute model: each graph node's time from its kind and its features.

The roofline (:mod:`splitimpera.latency.compute`) gives every convolution one efficiency: on
a CPU a depthwise convolution, a 1×1 convolution on a 7×7 map and a 3×3 one on a 56×56 map
run at rates that differ by 5× and more, and a concatenation or a normalisation costs far
more than its FLOPs say. Like nn-Meter, this model predicts per node with the node's own
features (:mod:`splitimpera.model.node_features`), in two stages:

1. **Per-kind base** — for each kind ``k`` (dense, depthwise and grouped convolution,
   linear, norm, activation, pooling, element-wise, concat, view, …)::

       base = o_k + work · a_k + bytes_moved · b_k          (o, a, b ≥ 0)

   (``work``: the MACs; for a pooling fvcore does not count, its window operations, see
   :func:`work`), fitted by least absolute *relative* deviation to the measured nodes of
   that kind (a linear program, so a few disturbed nodes do not drag it;
   :func:`splitimpera.calibrate.fit.fit_base`). Within a kind,
   each operator measured on enough nodes gets its own base (``act/silu``, ``act/relu_``,
   ``pool/max_pool2d``, ``linear/linear_gemv`` …): a SiLU costs several times a ReLU per
   element. An operator not measured enough uses its kind's base, a kind absent from the
   fit set the fit over all nodes. These coefficients are the readable part of the profile
   (``compute.kinds``: overhead µs, GMAC/s, GB/s per kind and operator).
2. **Residual** (per kind) — a gradient-boosted regressor (scikit-learn's
   ``HistGradientBoostingRegressor``, absolute loss, seeded, no early stopping) per kind on
   ``log(measured / base)`` with the features: log MACs, log bytes moved/in/out/params,
   log channels in and out, kernel, stride, log groups, log output pixels, module call or
   not, the node's cache context (log bytes moved since its oldest input was written, log
   MACs run since its operator last ran: the first pooling after a stage of convolutions
   finds its code and data cold) and the operator. It learns what the base misses (a 1×1
   convolution's lower rate, an input still in cache) and, being multiplicative on the
   base, falls back to the base outside the measured range. Only kinds whose residual
   beats their base in cross-validation over the fit models get one
   (:func:`splitimpera.calibrate.fit.choose_residual_kinds`; the profile lists them in ``compute.residual_kinds``);
   views never do. Trees are not YAML: the measured table the regressors are fitted from is
   kept beside the profile (``compute.residual_table``, CSV) and they are refitted from it
   when the profile is first used (deterministic, about 3 s for the default fit set on a
   2-core VM; cached per file).

This module holds what predicting needs (refitting the residual regressors from a profile's
table included); ``calibrate`` fits the base alone, base + residual and the roofline, and
writes the one with the smallest held-out error (:mod:`splitimpera.calibrate`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..model.node_features import FEATURE_COLUMNS

# Columns of a node table the model reads (profile_nodes, or profile_model's attrs["nodes"]).
MODEL_COLUMNS = FEATURE_COLUMNS
_TEXT = ("kind", "fn")  # the text columns
# Columns of a residual table (CSV): the features and the measured seconds.
TABLE_COLUMNS = (*MODEL_COLUMNS, "measured_s")
# Least absolute error in log space: the median ratio, which a few disturbed nodes do not
# move (chosen by held-out error over squared loss, more iterations and larger leaves).
RESIDUAL_PARAMS = dict(loss="absolute_error", max_iter=300, learning_rate=0.05, early_stopping=False, random_state=0)
# A kind gets its own residual regressor from this many measured nodes on; views get none (a
# view moves no data: its time is the dispatch its operator's base already holds).
RESIDUAL_MIN_NODES = 30
NO_RESIDUAL = ("view",)


def _col(nodes, c) -> np.ndarray:
    if c == "macs" and "macs" not in nodes:
        return sum(np.asarray(nodes[f"flops_{k}"], dtype=float) for k in ("conv", "linear", "other"))
    return np.asarray(nodes[c], dtype=float)


def work(nodes) -> np.ndarray:
    """Arithmetic per node: its multiply-adds, or for a pooling fvcore does not count (max
    pooling, ``mean``) one operation per output element and window position, at least one
    per input element."""
    macs = _col(nodes, "macs")
    pool = (np.asarray(nodes["kind"], dtype=object) == "pool") & (macs == 0)
    if not pool.any():
        return macs
    window = np.maximum(_col(nodes, "out_bytes") * np.maximum(_col(nodes, "kernel"), 1), _col(nodes, "in_bytes")) / 4
    return np.where(pool, window, macs)


def base_design(nodes) -> np.ndarray:
    """``[1, work, bytes_moved]`` per node (:func:`work`), shape ``(n, 3)``."""
    return np.column_stack([np.ones(len(nodes["kind"])), work(nodes), _col(nodes, "bytes_moved")])


def features(nodes, fns: tuple[str, ...] = ()) -> np.ndarray:
    """The residual model's feature matrix (see the module doc), shape ``(n, 14 + len(fns))``:
    one indicator per operator of ``fns``."""
    log1p = lambda c: np.log1p(np.maximum(_col(nodes, c), 0.0))  # noqa: E731
    cols = [log1p("macs"), log1p("bytes_moved"), log1p("in_bytes"), log1p("out_bytes"), log1p("param_bytes"),
            log1p("cin"), log1p("cout"), _col(nodes, "kernel"), _col(nodes, "stride"), log1p("groups"),
            log1p("out_hw"), _col(nodes, "module"), log1p("reuse_bytes"), log1p("since_macs")]
    fn = np.asarray(nodes["fn"], dtype=object)
    cols += [(fn == f).astype(float) for f in fns]
    return np.column_stack(cols)


def timed(nodes) -> np.ndarray:
    """Which nodes the model predicts: graph operations (kind other than ``none``)."""
    return np.asarray(nodes["kind"], dtype=object) != "none"


def usable(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a measured table a fit can use: timed nodes with a positive time."""
    return table[timed(table) & (table["measured_s"].to_numpy(dtype=float) > 0)]


@dataclass(frozen=True)
class KindCoef:
    """One kind's base: seconds per call, per multiply-add, per byte moved."""

    overhead_s: float
    s_per_mac: float
    s_per_byte: float

    def to_yaml(self) -> dict:
        return {"overhead_us": _sig(self.overhead_s * 1e6),
                "gmacs_per_s": _sig(1e-9 / self.s_per_mac) if self.s_per_mac > 0 else None,
                "gbytes_per_s": _sig(1e-9 / self.s_per_byte) if self.s_per_byte > 0 else None}

    @classmethod
    def from_yaml(cls, d: Mapping) -> "KindCoef":
        g, b = d.get("gmacs_per_s"), d.get("gbytes_per_s")
        return cls(float(d.get("overhead_us") or 0.0) * 1e-6, 1e-9 / g if g else 0.0, 1e-9 / b if b else 0.0)

    def vector(self) -> np.ndarray:
        return np.array([self.overhead_s, self.s_per_mac, self.s_per_byte])


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class KindModel:
    """Per-kind base coefficients (``coef[kind]``, ``"all"`` for unseen kinds) and an optional
    residual regressor (see the module doc)."""

    coef: Mapping[str, KindCoef]
    residual: Mapping[str, tuple[object, tuple[str, ...]]] | None = None

    def base_s(self, nodes) -> np.ndarray:
        keys = coef_keys(nodes)
        X = base_design(nodes)
        out = np.zeros(len(keys))
        for k in np.unique(keys):
            sel = keys == k
            kind, _, _ = k.partition("/")
            c = self.coef.get(k) or self.coef.get(kind) or self.coef["all"]
            out[sel] = X[sel] @ c.vector()
        return np.where(timed(nodes), np.maximum(out, 1e-9), 0.0)

    def predict_s(self, nodes) -> np.ndarray:
        """Seconds of each node (batch 1); 0 for placeholders and the output."""
        base = self.base_s(nodes)
        if not self.residual:
            return base
        out = base.copy()
        kind = np.asarray(nodes["kind"], dtype=object)
        for k, (reg, fns) in self.residual.items():
            sel = kind == k
            if sel.any():
                sub = {c: (np.asarray(nodes[c], dtype=object) if c in _TEXT else _col(nodes, c))[sel]
                       for c in MODEL_COLUMNS}
                out[sel] = base[sel] * np.exp(_limited(reg.predict, features(sub, fns)))
        return out


def coef_keys(nodes) -> np.ndarray:
    """``kind/fn`` of each node (``kind`` alone where the operator is unknown)."""
    kind = np.asarray(nodes["kind"], dtype=object)
    fn = np.asarray(nodes["fn"], dtype=object) if "fn" in nodes else np.full(len(kind), "", dtype=object)
    return np.array([f"{k}/{f}" if isinstance(f, str) and f else str(k) for k, f in zip(kind, fn)], dtype=object)


def residual_candidates(table: pd.DataFrame) -> list[str]:
    """Kinds with enough measured nodes for a residual regressor (views excepted)."""
    kind = usable(table)["kind"].to_numpy(dtype=object)
    return [k for k in sorted(set(kind) - set(NO_RESIDUAL)) if (kind == k).sum() >= RESIDUAL_MIN_NODES]


def fit_residual(table: pd.DataFrame, coef: Mapping[str, KindCoef],
                 kinds=None) -> dict[str, tuple[object, tuple[str, ...]]]:
    """Per kind of ``kinds`` (default :func:`residual_candidates`), the regressor on
    ``log(measured / base)`` and the operators it tells apart (see the module doc)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rows = usable(table)
    base = KindModel(coef).base_s(rows)
    y = np.log(rows["measured_s"].to_numpy(dtype=float)) - np.log(base)
    kind = rows["kind"].to_numpy(dtype=object)
    out = {}
    for k in (residual_candidates(table) if kinds is None else kinds):
        sel = kind == k
        if sel.sum() >= 5:
            fns = tuple(sorted(set(rows["fn"].to_numpy(dtype=object)[sel])))
            # leaves of at least 5 nodes, up to 20 for the common kinds
            params = dict(RESIDUAL_PARAMS, min_samples_leaf=int(np.clip(sel.sum() // 20, 5, 20)))
            reg = _limited(HistGradientBoostingRegressor(**params).fit, features(rows[sel], fns), y[sel])
            out[k] = (reg, fns)
    return out


# --------------------------------------------------------------------------------------------
# From and to a device profile

_cache: dict[tuple, KindModel] = {}
_lock = threading.Lock()


# The text columns are read as written ("" stays "", an operator named "null" stays "null").
_CSV_TEXT = dict(dtype={"kind": str, "fn": str, "model": str, "node": str}, keep_default_na=False)


def read_table(path: str | Path, field: str = "compute.residual_table") -> pd.DataFrame:
    """A residual table (CSV with :data:`TABLE_COLUMNS`), checked: numbers where numbers
    belong, finite, non-negative times, at least 5 timed nodes. Bad input is one
    :class:`UserError` naming the file and the column."""
    from ..errors import UserError

    path = Path(path)
    try:
        df = pd.read_csv(path, **_CSV_TEXT)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the residual table: {e}", source=str(path), field=field) from None
    return _checked(df, str(path), field)


def read_table_text(text: str, source: str = "calibrate") -> pd.DataFrame:
    """A residual table from its CSV text, read and checked as :func:`read_table` does a file."""
    import io

    return _checked(pd.read_csv(io.StringIO(text), **_CSV_TEXT), source, "residual table")


def _checked(df: pd.DataFrame, path: str, field: str) -> pd.DataFrame:
    from ..errors import UserError

    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"residual table lacks column(s) {', '.join(missing)} (written by an older splitimpera? "
                        "run calibrate again)", source=str(path), field=field)
    for c in TABLE_COLUMNS:
        if c in _TEXT:
            continue
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"residual table column {c!r} has {df[c].iloc[row]!r} in row {row + 2} (a finite number "
                            "≥ 0 is needed)", source=str(path), field=field)
        df[c] = v
    df["kind"] = df["kind"].astype(str)
    df["fn"] = df["fn"].fillna("").astype(str)
    if len(usable(df)) < 5:
        raise UserError("residual table has fewer than 5 timed nodes", source=str(path), field=field)
    return df


def _limited(fn, *args):
    """``fn(*args)`` on one BLAS/OpenMP thread: the regressor's result and its time do not
    depend on how many threads the machine has or how busy it is."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):  # the trees use OpenMP only; BLAS is left alone
        return fn(*args)


def model_for(device) -> KindModel | None:
    """The per-kind model of a device profile, or None when it has none (``compute.kinds`` unset).
    Cached per coefficients and residual file (path, size, modification time, inode)."""
    kinds = device.compute.kinds
    if not kinds:
        return None
    coef = {k: KindCoef.from_yaml(v if isinstance(v, Mapping) else v.model_dump()) for k, v in kinds.items()}
    table = device.compute.residual_table
    if not table:
        key = tuple(sorted((k, tuple(c.vector())) for k, c in coef.items()))
        with _lock:
            return _cache.setdefault(key, KindModel(coef))
    try:
        st = Path(table).stat()
    except OSError as e:
        from ..errors import UserError

        raise UserError(f"cannot read the residual table: {e.strerror or e}", source=str(table),
                        field=f"{device.name}: compute.residual_table") from None
    chosen = device.compute.residual_kinds
    key = (tuple(sorted((k, tuple(c.vector())) for k, c in coef.items())), str(Path(table).resolve()),
           st.st_size, st.st_mtime_ns, st.st_ino, None if chosen is None else tuple(chosen))
    with _lock:
        model = _cache.get(key)
    if model is None:
        df = read_table(table, field=f"{device.name}: compute.residual_table")
        model = KindModel(coef, fit_residual(df, coef, kinds=chosen))
        with _lock:
            _cache[key] = model
    return model
