"""Channel selection: send the most important (or random) channels, fill the rest."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ...errors import UserError
from .base import Bottleneck
from .coders import float_payload


class TopChannels(Bottleneck):
    """Send only ``fraction`` of the channels (fp32); the server fills the rest with their
    calibration mean. ``selection``: ``gradcam`` (largest mean Grad-CAM contribution
    ``α_c · mean_hw(A_c)``, I-SPLIT's important neurons) or ``random`` (seeded control)."""

    needs_fit = True

    def __init__(self, fraction: float, selection: str = "gradcam", name: str = ""):
        if not 0 < fraction <= 1:
            raise UserError(f"channel fraction must be in (0, 1], got {fraction}")
        if selection not in ("gradcam", "random"):
            raise UserError(f"channel selection must be gradcam or random, got {selection!r}")
        self.fraction, self.selection = fraction, selection
        self.needs_scores = selection == "gradcam"
        self.name = name or f"top{round(fraction * 100)}_{selection}"
        self.keep: torch.Tensor | None = None
        self.fill: torch.Tensor | None = None

    def describe(self) -> str:
        how = "by Grad-CAM contribution" if self.selection == "gradcam" else "drawn at random"
        return f"{self.fraction:.0%} of the channels, {how}; the rest filled with the calibration mean"

    def applicable(self, shape, split):
        from ...model.splits import INPUT

        if split == INPUT:
            return "no Grad-CAM channel importance at the input"
        if len(shape) not in (1, 3):
            return "needs a (C,) or (C, H, W) tensor"
        return None

    def count(self, channels: int) -> int:
        return max(1, round(self.fraction * channels))

    def fit(self, ctx):
        c = ctx.shape[0]
        k = self.count(c)
        if self.selection == "gradcam":
            if ctx.channel_scores is None:
                raise RuntimeError(f"no channel scores at {ctx.split}")
            # Stable: ties keep the lower channel index.
            keep = np.sort(np.argsort(-np.asarray(ctx.channel_scores), kind="stable")[:k])
        else:
            keep = np.sort(np.random.default_rng(ctx.seed).permutation(c)[:k])
        new = copy.copy(self)
        new.keep = torch.as_tensor(keep, dtype=torch.long)
        new.fill = ctx.mean.detach().float().clone() if ctx.mean is not None else torch.zeros(ctx.shape)
        return new

    def roundtrip(self, z):
        kept = z.detach().float().index_select(1, self.keep)
        out = self.fill.expand_as(z).clone()
        out[:, self.keep] = kept
        return out, float_payload(kept, torch.float32)

    def wire_format(self, shape):
        return 32, self.count(shape[0]) * math.prod(shape[1:]), 0

    def from_payload(self, words, side, shape):
        k = self.count(shape[0])
        kept = torch.from_numpy(np.ascontiguousarray(words, dtype="<u4").view(np.float32)).reshape(
            len(words), k, *shape[1:])
        out = self.fill.expand(len(words), *shape).clone()
        out[:, self.keep] = kept
        return out

    def nominal_bytes(self, shape):
        return 4 * self.count(shape[0]) * math.prod(shape[1:])
