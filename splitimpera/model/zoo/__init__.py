"""Bundled models (the zoo), registered by name like torchvision's model registry.

Each entry has a builder, its input shape (C, H, W), its number of classes and, optionally,
bundled weights (package data, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    weights_file: str | None = None
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.weights_file if self.weights_file else None


_ZOO: dict[str, ZooEntry] = {}


def register_zoo_model(entry: ZooEntry) -> None:
    if entry.name in _ZOO:
        raise ValueError(f"a zoo model named {entry.name!r} is already registered")
    _ZOO[entry.name] = entry


def get_zoo_entry(name: str) -> ZooEntry:
    try:
        return _ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r} (known: {', '.join(sorted(_ZOO))})") from None


def list_zoo_models(include: str | None = None) -> list[str]:
    names = sorted(_ZOO)
    return [n for n in names if include is None or fnmatch.fnmatch(n, include)]


from . import digits as _digits  # noqa: E402  (registers its entries)

_digits.register()
