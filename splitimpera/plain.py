"""Plain JSON values from numpy and pandas scalars (NaN, inf and NA become None)."""

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
