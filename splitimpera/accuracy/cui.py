"""I-SPLIT's Cumulative Unit Importance (CUI) curve and split nominations.

Per image and split, the CUI value is the spatial mean of the raw Grad-CAM map at that
split (:mod:`splitimpera.accuracy.gradcam`). Values are aggregated over images (mean, median or
trimmed mean) and plotted as log10: the CUI curve. I-SPLIT puts the best split at the
curve's global maximum and also looks at local maxima; which split is best depends on the
classes the application must tell apart, so curves are also computed per class and for
class subsets.

Presets:

- ``default``: target = the true label (the paper's "correct class"), channel reduction
  ``sum`` (standard Grad-CAM), mean over images, every candidate split.
- ``reference``: the choices of I-SPLIT's released code: target = the predicted class,
  channel reduction ``mean``, mean over images, its candidate layers (conv and pool outputs,
  residual-block outputs; see :func:`~splitimpera.accuracy.gradcam.reference_splits`). The
  released code also leaves the model in train mode (dropout and batch-norm statistics
  active), which makes its curve depend on the batch and the random state: that is a bug,
  not a choice, and it is not reproduced here: maps are always computed in eval mode.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch.nn as nn

from .. import cache
from ..errors import UserError
from ..stages import stage
from .gradcam import MapEngine, default_map_splits, reference_splits
from ..model.splits import TracedModel, trace

log = logging.getLogger(__name__)

CUI_VERSION = 2

PRESETS = {
    "default": {"method": "gradcam", "target": "label", "reduction": "sum", "aggregate": "mean",
                "splits": "all"},
    "reference": {"method": "gradcam", "target": "predicted", "reduction": "mean", "aggregate": "mean",
                  "splits": "reference"},
}


def class_name(c, names: Sequence[str] | None) -> str:
    """Class ``c`` (a label index) by its name when the data names its classes, else its index."""
    return str(names[int(c)]) if names and 0 <= int(c) < len(names) else str(c)


@dataclass(frozen=True)
class CUIResult:
    """Outcome of :func:`cui`.

    ``curve``: index split (topological order); ``cui`` (aggregated spatial mean of the raw
    map), ``log10_cui``, ``n_images``, ``nominated`` (bool).
    ``per_image``: one row per image: ``label``, ``target``, ``predicted``, then one column
    per split (spatial mean of that image's map).
    ``per_class``: index class, one column per split: log10 CUI over that class's images.
    ``nominated``: ``rank``, ``split``, ``log10_cui``, ``prominence``, ``kind``
    (``global`` / ``local``), best first.
    """

    curve: pd.DataFrame
    per_image: pd.DataFrame
    per_class: pd.DataFrame
    nominated: pd.DataFrame
    settings: dict = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.curve.index)

    @property
    def best(self) -> str:
        return str(self.nominated["split"].iloc[0])

    def best_per_class(self) -> pd.DataFrame:
        """Per class: the best split (global maximum of the class's curve) and its value; with
        ``name`` (the class's folder name) when the data named its classes (ImageFolder)."""
        pc = self.per_class
        names = self.settings.get("class_names")
        rows = []
        for c, row in pc.iterrows():
            nom = nominate(row, self.settings["prominence"], 1)
            rows.append({"class": c, **({"name": class_name(c, names)} if names else {}),
                         "n_images": int((self.per_image["label"] == c).sum()),
                         "best_split": nom["split"].iloc[0] if len(nom) else None,  # every map all zero
                         "log10_cui": nom["log10_cui"].iloc[0] if len(nom) else np.nan})
        return pd.DataFrame(rows).set_index("class")

    def for_classes(self, classes: Sequence[int]) -> "CUIResult":
        """The curve and nominations over the images of ``classes`` only (by true label)."""
        classes = [int(c) for c in classes]
        known = set(self.per_image["label"].unique().tolist())
        missing = [c for c in classes if c not in known]
        if missing:
            raise UserError(f"no image of class(es) {missing} in the data (classes present: {sorted(known)})",
                            field="analysis.cui.classes")
        sub = self.per_image[self.per_image["label"].isin(classes)]
        return _assemble(sub, self.splits, {**self.settings, "classes": classes})


def resolve_settings(preset: str = "default", **over) -> dict:
    if preset not in PRESETS:
        raise UserError(f"unknown CUI preset {preset!r} (known: {', '.join(PRESETS)})")
    s = dict(PRESETS[preset])
    s.update({k: v for k, v in over.items() if v is not None})
    s.setdefault("trim", 0.1)
    s.setdefault("prominence", 0.1)
    s.setdefault("top_k", 3)
    s["preset"] = preset
    if s["aggregate"] not in ("mean", "median", "trimmed"):
        raise UserError(f"aggregate must be mean, median or trimmed, got {s['aggregate']!r}")
    if s["target"] not in ("label", "predicted"):
        raise UserError(f"target must be label or predicted, got {s['target']!r}")
    return s


def aggregate(values: np.ndarray, how: str, trim: float = 0.1) -> np.ndarray:
    """Aggregate (n_images, n_splits) over images."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    if how == "mean":
        return values.mean(axis=0)
    if how == "median":
        return np.median(values, axis=0)
    from scipy.stats import trim_mean

    return trim_mean(values, trim, axis=0)


def log10(v) -> np.ndarray:
    """log10 of CUI values; NaN (undefined, not a number to rank or measure prominence
    against) where the value is 0: an all-zero map, e.g. a ReLU that killed everything."""
    v = np.asarray(v, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def nominate(curve: pd.Series, prominence: float = 0.1, top_k: int = 3) -> pd.DataFrame:
    """Global maximum and local maxima of a log10 curve (index: splits in order), best first.

    A local maximum must stand out by ``prominence`` (log10 units) from the deepest valley
    it must cross to reach higher ground (scipy's topographic prominence). Endpoints count:
    the curve is padded below its minimum, so the first or last split can be a maximum, and
    nothing outside the curve (such as the raw input) can create one. The global maximum is
    always nominated. Undefined (NaN) values are left out: their neighbours meet across them.
    """
    from scipy.signal import find_peaks

    curve = curve.dropna()  # undefined values (all-zero maps) are neither peaks nor valleys
    y = curve.to_numpy(dtype=float)
    names = list(curve.index)
    if len(y) == 0:
        return pd.DataFrame(columns=["rank", "split", "log10_cui", "prominence", "kind"])
    pad = y.min() - 1.0
    padded = np.concatenate([[pad], y, [pad]])
    # scipy finds the maxima and plateaus; on a plateau (ops that leave the map unchanged,
    # e.g. ReLU then Dropout) the earliest split stands for it: it keeps the least on the device.
    _, props = find_peaks(padded, plateau_size=(1, None))
    pos = [int(i) - 1 for i in props["left_edges"]]
    prom = {i: _prominence(y, i, pos, pad) for i in pos}
    g = min(pos, key=lambda i: (-y[i], i))  # leftmost highest
    keep = [i for i in pos if i == g or prom[i] >= prominence]
    rows = [{"split": names[i], "log10_cui": float(y[i]), "prominence": float(prom[i]),
             "kind": "global" if i == g else "local", "pos": i} for i in keep]
    df = pd.DataFrame(rows).sort_values(["log10_cui", "pos"], ascending=[False, True], kind="stable")
    df = df.head(max(1, top_k)).drop(columns="pos").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def _prominence(y: np.ndarray, i: int, peaks: list[int], pad: float) -> float:
    """Height of peak ``i`` above the higher of the two valleys separating it from ground at
    least as high (an equal peak counts, so ties keep only the earliest), or from the ends."""
    left = [j for j in peaks if j < i and y[j] >= y[i]]
    right = [j for j in peaks if j > i and y[j] > y[i]]
    # To the right only strictly higher ground counts: of equal peaks the earliest stands.
    lb = y[max(left):i + 1].min() if left else pad
    rb = y[i:min(right) + 1].min() if right else pad
    return float(y[i] - max(lb, rb))


def _assemble(per_image: pd.DataFrame, splits: list[str], settings: dict) -> CUIResult:
    vals = per_image[splits].to_numpy(dtype=float)
    agg = aggregate(vals, settings["aggregate"], settings["trim"])
    curve = pd.DataFrame({"cui": agg, "log10_cui": log10(agg), "n_images": len(per_image)},
                         index=pd.Index(splits, name="split"))
    nom = nominate(curve["log10_cui"], settings["prominence"], settings["top_k"])
    curve["nominated"] = curve.index.isin(nom["split"])
    pcs = {}
    for c, grp in per_image.groupby("label", sort=True):
        pcs[int(c)] = log10(aggregate(grp[splits].to_numpy(dtype=float), settings["aggregate"], settings["trim"]))
    per_class = pd.DataFrame.from_dict(pcs, orient="index", columns=splits)
    per_class.index.name = "class"
    return CUIResult(curve=curve, per_image=per_image, per_class=per_class, nominated=nom, settings=settings)


def weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def data_fingerprint(dataset) -> str | None:
    """A content fingerprint for TensorDatasets and ImageFolders (and Subsets of them)."""
    from torch.utils.data import Subset, TensorDataset

    idx = None
    while isinstance(dataset, Subset):  # Subsets of Subsets: compose the indices
        inner = list(dataset.indices)
        idx = inner if idx is None else [inner[i] for i in idx]
        dataset = dataset.dataset
    h = hashlib.sha256()
    if isinstance(dataset, TensorDataset):
        for t in dataset.tensors:
            h.update(t.contiguous().numpy().tobytes())
    elif hasattr(dataset, "samples") and hasattr(dataset, "root"):  # torchvision ImageFolder
        for path, cls in dataset.samples:
            st = Path(path).stat()
            h.update(f"{Path(path).relative_to(dataset.root)}|{cls}|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update(repr(getattr(dataset, "transform", None)).encode())
    else:
        return None
    h.update(repr(idx).encode())
    return h.hexdigest()[:32]


def cui(model: nn.Module | TracedModel, data, *, input_shape=None, preset: str = "default",
        method: str | None = None, target: str | None = None, reduction: str | None = None,
        aggregate: str | None = None, splits: str | Sequence[str] | None = None, trim: float | None = None,
        prominence: float | None = None, top_k: int | None = None, classes: Sequence[int] | None = None,
        batch_size: int = 32, progress: bool = False, use_cache: bool = True) -> CUIResult:
    """The CUI curve of ``model`` over ``data`` (a Dataset of (image, label)).

    ``splits``: ``"all"`` (every candidate with a map), ``"reference"`` (I-SPLIT's layers) or
    a list of split names. ``classes``: restrict the curve and nominations to these labels
    (per-class curves always cover every class). Results are cached on disk, keyed by the
    weights, the data's content and the settings.
    """
    from ..data import batches

    s = resolve_settings(preset, method=method, target=target, reduction=reduction, aggregate=aggregate,
                         splits=splits if isinstance(splits, str) or splits is None else list(splits),
                         trim=trim, prominence=prominence, top_k=top_k)
    if input_shape is None:
        input_shape = tuple(data[0][0].shape)
    tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
    if s["splits"] == "all":
        names = default_map_splits(tm)
    elif s["splits"] == "reference":
        names = reference_splits(tm)
        if not names:
            raise UserError("the model has no I-SPLIT reference layers (conv/pool/residual outputs)",
                            field="analysis.cui.splits")
    else:
        names = list(s["splits"])
    fp = data_fingerprint(data) if use_cache else None
    key = None
    if fp is not None:
        compute = {k: s[k] for k in ("method", "target", "reduction")}
        key = cache.key("cui", CUI_VERSION, weights_hash(tm.model), tm.structure_key(), fp, compute, names)
        hit = cache.load("cui", key)
        if hit is not None:
            per_image = pd.DataFrame(hit["rows"], columns=hit["columns"])
            per_image = per_image.astype({c: np.int64 for c in ("label", "target", "predicted")})
            per_image.index.name = "image"
            res = _assemble(per_image, names, s)
            return res.for_classes(classes) if classes else res
    engine = MapEngine(tm, splits=names, method=s["method"], reduction=s["reduction"])
    loader = batches(data, batch_size)
    rows_lab, rows_tgt, rows_pred, rows_val = [], [], [], []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    it = loader
    if progress and tqdm is not None:
        it = tqdm(loader, desc=f"Grad-CAM ({s['method']}) at {len(names)} splits", unit="batch")
    with stage(f"importance (Grad-CAM, {s['method']}) at {len(names)} splits",
               total=-(-len(data) // batch_size) if hasattr(data, "__len__") else None, unit="batch") as step:
        for x, y in it:
            targets = y if s["target"] == "label" else None
            maps, logits = engine(x, targets)
            pred = logits.argmax(1)
            rows_lab.append(y.numpy())
            rows_pred.append(pred.numpy())
            rows_tgt.append((y if s["target"] == "label" else pred).numpy())
            rows_val.append(np.stack([maps[n].flatten(1).mean(1).double().numpy() for n in names], axis=1))
            step()
    if not rows_val:
        raise UserError("the data set is empty", field="data")
    per_image = pd.DataFrame(np.concatenate(rows_val), columns=names)
    per_image.insert(0, "predicted", np.concatenate(rows_pred).astype(np.int64))
    per_image.insert(0, "target", np.concatenate(rows_tgt).astype(np.int64))
    per_image.insert(0, "label", np.concatenate(rows_lab).astype(np.int64))
    per_image.index.name = "image"
    if key is not None:
        cache.store("cui", key, {"columns": list(per_image.columns), "rows": per_image.to_numpy().tolist()})
    res = _assemble(per_image, names, s)
    return res.for_classes(classes) if classes else res
