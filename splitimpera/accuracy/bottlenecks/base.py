"""The bottleneck base class (identity at fp32) and what a bottleneck may learn from.

Subclasses override :meth:`Bottleneck.roundtrip` (and :meth:`Bottleneck.fit` when they
learn something at each split); bytes, applicability and extra work have defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .coders import Payload, _float_words


@dataclass
class FitContext:
    """What a bottleneck may learn from at one split (see :meth:`Bottleneck.fit`).

    ``calibration()`` returns the calibration activations (N, *shape) and labels (N,),
    computed on first use; ``tail`` is the frozen rest of the model; ``channel_scores`` (C,)
    the mean Grad-CAM contribution per channel; ``mean`` (*shape) the calibration mean.
    """

    split: str
    shape: tuple[int, ...]
    tail: nn.Module
    calibration: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    channel_scores: np.ndarray | None = None
    mean: torch.Tensor | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)


class Bottleneck:
    """Base class: identity at fp32. Subclasses override :meth:`roundtrip` (and
    :meth:`fit` when they learn something at each split); everything else follows."""

    name = "none"
    needs_fit = False  # fit() learns per split (needs a FitContext)
    needs_scores = False  # fit() reads Grad-CAM channel scores

    @property
    def is_identity(self) -> bool:
        """True only for the plain fp32 bottleneck (``none``): the tensor is sent unchanged,
        so bytes and accuracy are the model's own. Any subclass, even one that happens to
        change nothing, answers False."""
        return type(self) is Bottleneck

    def describe(self) -> str:
        return "fp32, unchanged"

    def applicable(self, shape: tuple[int, ...], split: str) -> str | None:
        """None when the bottleneck applies to a tensor of per-sample ``shape``, else why not."""
        return None

    def fit(self, ctx: FitContext) -> "Bottleneck":
        """A copy fitted at ``ctx.split`` (this base class learns nothing)."""
        return self

    def roundtrip(self, z: torch.Tensor) -> tuple[torch.Tensor, Payload]:
        """``(tensor the tail receives, payload sent)`` for a batch ``z`` (B, *shape)."""
        return z, _float_words(z, torch.float32)

    def nominal_bytes(self, shape: tuple[int, ...]) -> int:
        """Raw payload bytes per sample without looking at data (for unmeasured splits)."""
        return 4 * math.prod(shape)

    def extra_work(self, shape: tuple[int, ...]) -> dict[str, dict[str, float]]:
        """Compute the bottleneck adds per sample: ``{"head": {...}, "tail": {...}}`` with
        ``flops_conv``/``flops_linear``/``flops_other`` (multiply-adds), ``bytes_moved`` and
        ``layers``; the device runs the head side, the server the tail side. Element-wise
        casts and quantisation are negligible beside the model and count as nothing here."""
        return {}
