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

from .coders import Payload, float_payload, decode_words


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

    def fit_state(self) -> dict | None:
        """What this fitted copy learnt, as plain JSON data for the on-disk cache; None (the
        default) when a fit is cheap enough to redo."""
        return None

    def from_fit_state(self, state: dict, shape: tuple[int, ...]) -> "Bottleneck":
        """The fitted copy that :meth:`fit_state` described, for a tensor of per-sample ``shape``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no fit state")

    def roundtrip(self, z: torch.Tensor) -> tuple[torch.Tensor, Payload]:
        """``(tensor the tail receives, payload sent)`` for a batch ``z`` (B, *shape)."""
        return z, float_payload(z, torch.float32)

    # ---- the wire: what `splitimpera serve`/`device` send, the bytes :meth:`roundtrip` counts

    def wire_format(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(bits per symbol, symbols per sample, float32 side values per sample)`` of the
        payload for a tensor of per-sample ``shape``."""
        return 32, math.prod(shape), 0

    def from_payload(self, words: np.ndarray, side: np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor:
        """The tensor the tail receives (B, *shape) from payload ``words`` (B, n) and ``side``
        (B, k) float32: the second half of :meth:`roundtrip`, bit for bit."""
        return torch.from_numpy(np.ascontiguousarray(words, dtype="<u4").view(np.float32)).reshape(len(words), *shape)

    def encode(self, z: torch.Tensor, coder: str = "raw") -> list[bytes]:
        """Each sample of ``z`` (B, *shape) as bytes on the wire under ``coder`` (the payload
        :meth:`roundtrip` measures, so ``len`` equals its :meth:`Payload.sizes`).

        It runs the whole :meth:`roundtrip`, the reconstruction included, which a device
        would not need: one code path for the bytes counted and the bytes sent. For the
        element-wise bottlenecks the extra work is a multiply-add per element."""
        return self.roundtrip(z)[1].encoded(coder)

    def decode(self, blobs: list[bytes], coder: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Inverse of :meth:`encode`: the tail's input (B, *shape), equal to ``roundtrip(z)[0]``.
        Raises ValueError on a payload that does not decode to this shape."""
        bits, n, k = self.wire_format(tuple(shape))
        words, sides = [], []
        for blob in blobs:
            w, sd = decode_words(blob, coder, bits, n, k)
            words.append(w)
            sides.append(sd)
        side = np.stack(sides) if k else None
        return self.from_payload(np.stack(words), side, tuple(shape))

    def nominal_bytes(self, shape: tuple[int, ...]) -> int:
        """Raw payload bytes per sample without looking at data (for unmeasured splits)."""
        return 4 * math.prod(shape)

    def extra_work(self, shape: tuple[int, ...]) -> dict[str, dict[str, float]]:
        """Compute the bottleneck adds per sample: ``{"head": {...}, "tail": {...}}`` with
        ``flops_conv``/``flops_linear``/``flops_other`` (multiply-adds), ``bytes_moved`` and
        ``layers``; the device runs the head side, the server the tail side. Element-wise
        casts and quantisation are negligible beside the model and count as nothing here."""
        return {}
