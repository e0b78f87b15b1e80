"""Precision bottlenecks: half precision and uniform quantisation to 1..8 bits."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import UserError
from .base import Bottleneck
from .coders import Payload, float_payload


class Fp16(Bottleneck):
    name = "fp16"

    def describe(self) -> str:
        return "half precision"

    def roundtrip(self, z):
        return z.half().float(), float_payload(z, torch.float16)

    def wire_format(self, shape):
        return 16, math.prod(shape), 0

    def from_payload(self, words, side, shape):
        half = np.ascontiguousarray(words, dtype="<u2").view(np.float16)
        return torch.from_numpy(half).reshape(len(words), *shape).float()

    def nominal_bytes(self, shape):
        return 2 * math.prod(shape)


class Quantize(Bottleneck):
    """Uniform asymmetric quantisation to ``bits`` bits, range per sample (and per channel)."""

    def __init__(self, bits: int, per_channel: bool = False, percentile: float | None = None, name: str = ""):
        if not 1 <= bits <= 8:
            raise UserError(f"quantisation needs 1 to 8 bits, got {bits}")
        self.bits, self.per_channel, self.percentile = bits, per_channel, percentile
        self.name = name or f"int{bits}" + ("_channel" if per_channel else "") + ("_pct" if percentile else "")

    def describe(self) -> str:
        clip = f"clipped at the {100 - self.percentile:g}/{self.percentile:g} percentiles" if self.percentile \
            else "min-max range"
        return f"{self.bits}-bit uniform, per {'channel' if self.per_channel else 'tensor'}, {clip}"

    def applicable(self, shape, split):
        if self.per_channel and len(shape) < 2:
            return "per-channel quantisation needs a (C, …) tensor with positions per channel"
        return None

    def _groups(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(len(z), z.shape[1], -1) if self.per_channel else z.reshape(len(z), 1, -1)

    def roundtrip(self, z):
        g = self._groups(z.detach().float())
        if self.percentile:
            n = g.shape[-1]
            # Rank arithmetic in integers (per mille): 0.999 × 1000 must be 999, not 999.0000000001.
            pm = round(self.percentile * 10)
            k_hi = max(1, min(n, -(-pm * n // 1000)))
            k_lo = max(1, min(n, (1000 - pm) * n // 1000 + 1))
            hi = g.kthvalue(k_hi, dim=-1, keepdim=True).values
            lo = g.kthvalue(k_lo, dim=-1, keepdim=True).values
        else:
            lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        levels = 2 ** self.bits - 1
        # The range travels as fp32: use the values the server will see.
        lo, hi = lo.float(), hi.float()
        scale = (hi - lo) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round((g - lo) / scale), 0, levels)
        out = (q * scale + lo).reshape(z.shape)
        side = torch.cat([lo.reshape(len(z), -1), scale.reshape(len(z), -1)], dim=1)  # lo and scale, fp32, per group
        return out, Payload(words=q.reshape(len(z), -1).to(torch.uint8).numpy(), bits=self.bits,
                            side_bytes=4 * side.shape[1], side=side.numpy())

    def _group_count(self, shape) -> int:
        return shape[0] if self.per_channel else 1

    def wire_format(self, shape):
        return self.bits, math.prod(shape), 2 * self._group_count(shape)

    def from_payload(self, words, side, shape):
        groups = self._group_count(shape)
        side = torch.from_numpy(np.ascontiguousarray(side, dtype=np.float32)).reshape(len(words), 2, groups, 1)
        lo, scale = side[:, 0], side[:, 1]
        q = torch.from_numpy(np.asarray(words, dtype=np.uint8)).reshape(len(words), groups, -1).float()
        return (q * scale + lo).reshape(len(words), *shape)

    def nominal_bytes(self, shape):
        groups = self._group_count(shape)
        return math.ceil(math.prod(shape) * self.bits / 8) + 8 * groups
