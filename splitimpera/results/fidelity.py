"""Reading a ``splitimpera measure`` folder: ``fidelity.csv`` (one row per split, bottleneck
and mode), ``fidelity.json`` (setup, timings, summary) and ``scenario.yaml``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..errors import UserError, first_line

FIDELITY_FILES = ("fidelity.csv", "fidelity.json", "scenario.yaml")


@dataclass(frozen=True)
class FidelityDir:
    path: Path
    table: pd.DataFrame
    doc: dict
    scenario: dict

    @property
    def name(self) -> str:
        return str(self.scenario.get("name", self.path.name))


def is_fidelity_dir(path: Path) -> bool:
    return (path / "fidelity.csv").is_file() and not (path / "splits.csv").is_file()


def load_fidelity_dir(path: str | Path) -> FidelityDir:
    path = Path(path)
    missing = [n for n in FIDELITY_FILES if not (path / n).is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}: not a measure result folder", source=str(path))
    try:
        table = pd.read_csv(path / "fidelity.csv")
        doc = json.loads((path / "fidelity.json").read_text())
        scenario = yaml.safe_load((path / "scenario.yaml").read_text())
        table["split"]  # noqa: B018  (a KeyError here is an unreadable folder)
    except (ValueError, KeyError, OSError, yaml.YAMLError) as e:
        raise UserError(f"unreadable measure folder: {first_line(e)}", source=str(path)) from None
    return FidelityDir(path, table, doc, scenario)
