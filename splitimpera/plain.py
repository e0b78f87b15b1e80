"""Plain values: JSON values from numpy and pandas scalars (NaN, inf and NA become None), and
numbers formatted for people (:func:`num`, :func:`human`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def jsonable(v):
    """``v`` as a plain JSON value: numpy scalars unwrapped, non-finite floats and NA as None."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is pd.NA or v is None:
        return None
    return v


def row_dict(row: pd.Series) -> dict:
    """A table row as a dict of plain JSON values."""
    return {k: jsonable(v) for k, v in row.items()}


# --------------------------------------------------------------------------------------------
# Numbers for people: the one formatter every front end (terminal, HTML, dashboard) uses.

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def num(v: float, digits: int = 3) -> str:
    """``v`` with ``digits`` significant digits, never in exponent notation: ``1090``, ``36.5``,
    ``0.0123``; trailing zeros dropped; ``—`` for NaN/None, ``∞`` for infinity. Digits beyond
    ``digits`` left of the point are kept (``7544000``): a number, not ``7.54e+06``."""
    if v is None or v is pd.NA:
        return "—"
    v = float(v)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{round(v, decimals):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def human(v: float, unit: str, digits: int = 3) -> str:
    """``v`` (in the SI base ``unit``: s, J, B, FLOP, bit/s …) with an SI prefix and ``digits``
    significant digits: ``human(1.09, "J")`` → ``1.09 J``, ``human(0.0365, "s")`` → ``36.5 ms``,
    ``human(4100, "B")`` → ``4.1 kB``. Seconds take no prefix above 1 (``7544 s``, not ``7.54 ks``);
    bytes none below 1."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    if math.isinf(v) or v == 0:
        return f"{num(v)} {unit}"
    a = abs(v)
    for scale, p in _PREFIXES:
        if unit == "s" and scale > 1 or unit == "B" and scale < 1:
            continue
        # 999.96 rounds to 1000 at 4 digits: the next prefix up takes it
        if round(a / scale, max(0, digits - 1 - math.floor(math.log10(a / scale)))) >= 1 or scale == 1e-9 \
                or unit == "B" and scale == 1:
            return f"{num(v / scale, digits)} {p}{unit}"
    return f"{num(v, digits)} {unit}"  # not reached


def ms(v: float | None, digits: int = 3, missing: str = "—", zero: str | None = None) -> str:
    """Seconds as milliseconds with ``digits`` significant digits (no unit): ``36.5``; ``∞``
    for an unbounded time, ``missing`` for None/NaN, ``zero`` (when given) for 0 (e.g. "—":
    nothing to wait for)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return missing
    if zero is not None and v == 0:
        return zero
    return num(float(v) * 1e3, digits)


def signed_pct(v: float | None) -> str:
    """A relative error (a fraction) as a signed percentage, ``+4.2%``; ``—`` when unknown."""
    return "—" if v is None or pd.isna(v) else f"{v * 100:+.1f}%"


def human_bytes(n: float) -> str:
    """Bytes with an SI prefix from 1 kB up (``4.1 kB``), whole bytes below (``40 B``)."""
    return human(n, "B") if n >= 1e3 else f"{int(n)} B"


def flops_text(v: float) -> str:
    """A FLOP (or parameter) count with a G, M or k suffix: ``9.72M``; whole below 1000."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{num(v / scale)}{unit}"
    return f"{int(v)}"
