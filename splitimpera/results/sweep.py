"""Reading a sweep folder (``splitimpera sweep``): :func:`load_sweep_dir`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UserError, first_line

SWEEP_META = "sweep.json"  # marks a sweep folder


@dataclass(frozen=True)
class SweepDir:
    """A sweep folder, read: the table, the summary (one row per point), the meta (sweep.json)."""

    path: Path
    table: pd.DataFrame
    summary: pd.DataFrame
    meta: dict

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def axes(self) -> list[str]:
        return list(self.meta.get("axes", []))


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_META).is_file()


def load_sweep_dir(path: str | Path) -> SweepDir:
    """Read a sweep folder; a missing or unreadable file is a one-line UserError."""
    path = Path(path)
    try:
        meta = json.loads((path / SWEEP_META).read_text())
        table = pd.read_parquet(path / "points.parquet")
        summary = pd.read_parquet(path / "summary.parquet")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"unreadable sweep folder: {first_line(e)}", source=str(path)) from None
    return SweepDir(path, table, summary, meta)
