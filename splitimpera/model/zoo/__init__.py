"""Bundled models (the zoo), registered by name like torchvision's model registry.

Each entry has a builder, its input shape (C, H, W), its number of classes and, optionally,
bundled weights (package data, loaded with ``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

from ...config.registry import Registry

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


def _register_defaults(reg: "Registry[ZooEntry]") -> None:
    from . import digits, letters  # their modules import this one: imported when first needed

    digits.register()
    letters.register()


ZOO: Registry[ZooEntry] = Registry("zoo model", loader=_register_defaults)


def register_zoo_model(entry: ZooEntry, *, overwrite: bool = False) -> None:
    """Add a zoo entry under ``entry.name``; a name already taken raises ValueError."""
    ZOO.register(entry.name, entry, overwrite=overwrite)


def get_zoo_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; an unknown name is a UserError naming the known ones."""
    return ZOO.get(name)


def list_zoo_models(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Zoo model names, sorted, filtered by fnmatch globs."""
    return ZOO.list(include, exclude)
