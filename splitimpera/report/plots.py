"""Figures (matplotlib, no global state): the CUI curve and accuracy against bytes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def new_axes(figsize):
    """A figure and its one axes on matplotlib's object API: no pyplot, no global backend
    switch (which would break a notebook's inline backend), nothing left open."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def png_bytes(fig, dpi: int = 110) -> bytes:
    """``fig`` laid out and rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


MAX_CLASS_LEGEND = 12  # more classes than this: one grey "per class" entry, not one colour each


def draw_cui(ax, curve: pd.DataFrame, nominated, per_class: pd.DataFrame | None = None,
             class_names=None) -> None:
    """Draw the log10 CUI curve on ``ax``, nominated splits starred, per-class curves thin, each
    in its colour and named in the legend (by ``class_names`` when given; up to
    :data:`MAX_CLASS_LEGEND` classes, else all grey).

    ``curve``: indexed by split with ``log10_cui``; ``nominated``: records with ``rank``,
    ``split``, ``log10_cui``, ``kind``. An all-zero map has no log10 (NaN): the line breaks
    there and an × on the axis's floor marks it.
    """
    per_class = per_class if per_class is not None else pd.DataFrame()
    x = np.arange(len(curve))
    vals = np.concatenate([curve["log10_cui"].to_numpy(dtype=float), per_class.to_numpy(dtype=float).ravel()])
    real = vals[np.isfinite(vals)]
    lo, hi = (real.min(), real.max()) if len(real) else (-1.0, 1.0)
    margin = 0.08 * max(hi - lo, 0.5)
    bottom = lo - margin
    each = 0 < len(per_class) <= MAX_CLASS_LEGEND
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(per_class) <= 10 else "tab20"]
    colours = [cmap(i % cmap.N) for i in range(len(per_class))]
    for k, (c, row) in enumerate(per_class.iterrows()):
        if each:
            name = str(class_names[int(c)]) if class_names and 0 <= int(c) < len(class_names) else str(c)
            ax.plot(x, row.to_numpy(dtype=float), color=colours[k], lw=0.8, alpha=0.7, zorder=1,
                    label=f"class {name}")
        else:
            ax.plot(x, row.to_numpy(dtype=float), color="0.8", lw=0.8, zorder=1)
    undefined = ~np.isfinite(curve["log10_cui"].to_numpy(dtype=float))
    if undefined.any():
        ax.plot(x[undefined], np.full(undefined.sum(), bottom), "x", color="tab:blue", ms=6, clip_on=False,
                label="all-zero map (undefined)")
    ax.plot(x, curve["log10_cui"], "o-", color="tab:blue", lw=1.8, ms=4, zorder=2, label="CUI (all images)")
    pos = {s: i for i, s in enumerate(curve.index)}
    for r in nominated:
        i = pos.get(r["split"])
        if i is None:
            continue
        ax.plot([i], [r["log10_cui"]], marker="*", ms=16, color="tab:red" if r["kind"] == "global" else "tab:orange",
                zorder=3)
        right = i > 0.75 * (len(curve) - 1)  # labels near the right edge point left: none leaves the axes
        ax.annotate(f"#{r['rank']} {r['split']}", (i, r["log10_cui"]), textcoords="offset points",
                    xytext=(-4 if right else 4, 8), ha="right" if right else "left", fontsize=8)
    if len(per_class) and not each:
        ax.plot([], [], color="0.8", lw=0.8, label="per class")
    ax.plot([], [], "*", color="tab:red", ms=10, label="nominated (global / local)")
    ax.set_xticks(list(x), list(curve.index), rotation=70, ha="right", fontsize=7)
    ax.set_ylim(bottom, hi + 3 * margin)
    ax.set_ylabel("log10 CUI")
    ax.grid(alpha=0.3)
    # Beside the axes: a legend of ten classes inside would hide the curve.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_cui(curve: pd.DataFrame, nominated, title: str, per_class: pd.DataFrame | None = None,
             class_names=None) -> bytes:
    """PNG bytes of the CUI curve (:func:`draw_cui`: ``curve`` indexed by split with
    ``log10_cui``, ``nominated`` records, optional per-class curves) titled ``title``."""
    fig, ax = new_axes(figsize=(max(6.0, 0.32 * len(curve) + 2), 4.2))
    draw_cui(ax, curve, nominated, per_class, class_names)
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)


def cui_title(res) -> str:
    """The CUI plot's default title: how a :class:`~splitimpera.accuracy.cui.CUIResult` was computed."""
    s = res.settings
    return (f"CUI curve: {s['method']}, target {s['target']}, channel {s['reduction']}, "
            f"{s['aggregate']} over {int(res.curve['n_images'].iloc[0])} images")


def draw_accuracy(ax, table: pd.DataFrame, full_accuracy: float | None, coder: str = "raw") -> None:
    """Accuracy (agreement without labels) against bytes per sample under ``coder`` on
    ``ax``: one series per bottleneck of the long ``accuracy.csv`` table, one point per split."""
    import matplotlib

    col = "accuracy" if full_accuracy is not None else "agreement"
    cmap = matplotlib.colormaps["tab20"]
    markers = "osD^v<>pXh*"
    for i, b in enumerate(dict.fromkeys(table["bottleneck"])):
        t = table[table["bottleneck"] == b]
        t = t[np.isfinite(t[f"bytes_{coder}"].astype(float)) & np.isfinite(t[col].astype(float))]
        ax.scatter(t[f"bytes_{coder}"], t[col] * 100, s=16, color=cmap(i % 20), marker=markers[i % len(markers)],
                   label=b, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel(f"bytes per sample on the wire ({coder} coder)")
    ax.set_ylabel(f"{col} (%)")
    if full_accuracy is not None:
        ax.axhline(full_accuracy * 100, color="0.5", lw=0.8, ls="--", label="full model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def plot_accuracy(table: pd.DataFrame, full_accuracy: float | None, coder: str, title: str) -> bytes:
    """PNG bytes of :func:`draw_accuracy` (``table``: the long ``accuracy.csv`` table)."""
    fig, ax = new_axes(figsize=(9.5, 5.0))
    draw_accuracy(ax, table, full_accuracy, coder)
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)
