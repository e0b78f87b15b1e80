"""Bottlenecks on the sent tensor, and the lossless coders that put it on the wire.

A bottleneck transforms the activation ``z`` (B, *shape) at a split into a *payload* (what
the device sends) and back into the tensor the tail receives. Bottlenecks come from a
registry (torchvision style: :func:`register_bottleneck`, :func:`get_bottleneck`,
:func:`list_bottlenecks`); besides the registered names, parametric names are parsed:

    none                     fp32, unchanged
    fp16                     half precision
    int<b>[_channel][_pct]   uniform quantisation to b bits (1..8): per tensor or per
                             channel (``_channel``); range from each sample's min and max,
                             or clipped at its 0.1 / 99.9 percentiles (``_pct``). The range
                             is sent beside the codes (two fp32 per tensor or per channel).
    top<p>_gradcam           keep the p % channels with the largest Grad-CAM contribution
                             (I-SPLIT's important neurons), measured on calibration data;
                             the server fills the others with their calibration mean
    top<p>_random            the same number of channels drawn at random (the control)
    autoencoder              I-SPLIT's undercomplete autoencoder: two stride-2 convolutions
                             down to C/4 channels (1/64 of the elements), a mirrored decoder,
                             trained with the backbone frozen

Bytes on the wire are measured per sample from the payload under a lossless coder:
``raw`` (codes bit-packed, floats as is), ``zstd`` (Zstandard on the packed bytes) or
``rle`` (run-length coding of the code sequence, as Carra & Neglia 2023 do after
quantisation). Side information (quantisation ranges) is counted uncompressed.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ...errors import UserError

log = logging.getLogger(__name__)

CODERS = ("raw", "zstd", "rle")
ZSTD_LEVEL = 3


# --------------------------------------------------------------------------------------------
# Payloads and coders


@dataclass
class Payload:
    """What one batch sends: ``words`` (B, n) unsigned integers holding one symbol each
    (``bits`` significant bits per symbol) plus ``side_bytes`` of side information per sample."""

    words: np.ndarray
    bits: int
    side_bytes: int = 0

    def packed(self) -> list[bytes]:
        """Each sample's symbols as bytes: codes under 8 bits are bit-packed, wider words
        are written little-endian as they are."""
        w = self.words
        if self.bits in (8, 16, 32):
            return [bytes(row) for row in np.ascontiguousarray(w).astype(f"<u{self.bits // 8}").view(np.uint8)]
        if self.bits in (1, 2, 4):  # whole codes per byte: shift and add, first code in the high bits
            per = 8 // self.bits
            n = w.shape[1]
            padded = np.zeros((len(w), -(-n // per) * per), dtype=np.uint8)
            padded[:, :n] = w
            groups = padded.reshape(len(w), -1, per)
            shifts = (8 - self.bits * (np.arange(per) + 1)).astype(np.uint8)
            packed = np.bitwise_or.reduce(groups << shifts, axis=-1).astype(np.uint8)
            return [bytes(row) for row in packed]
        bits = np.unpackbits(w.astype(np.uint8)[..., None], axis=-1)[..., 8 - self.bits:]
        return [bytes(np.packbits(row.reshape(-1))) for row in bits]

    def sizes(self, coder: str) -> np.ndarray:
        """Bytes per sample under ``coder`` (side information included)."""
        if coder == "raw":
            n = self.words.shape[1]
            return np.full(len(self.words), math.ceil(n * self.bits / 8) + self.side_bytes, dtype=np.int64)
        if coder == "zstd":
            import zstandard

            c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            return np.array([len(c.compress(b)) + self.side_bytes for b in self.packed()], dtype=np.int64)
        if coder == "rle":
            return rle_sizes(self.words, self.bits) + self.side_bytes
        raise UserError(f"unknown coder {coder!r} (known: {', '.join(CODERS)})")


def _symbol_bytes(bits: int) -> int:
    return max(1, math.ceil(bits / 8))


def _varint_bytes(n: np.ndarray) -> np.ndarray:
    """LEB128 length of each positive integer: 7 bits per byte (integer comparisons, exact)."""
    n = np.asarray(n)
    out = np.ones(n.shape, dtype=np.int64)
    for k in range(1, 10):
        out += n >= (1 << (7 * k))
    return out


def rle_sizes(words: np.ndarray, bits: int) -> np.ndarray:
    """Bytes of :func:`rle_encode` for each row of ``words`` (B, n), without encoding."""
    B, n = words.shape
    if n == 0:
        return np.zeros(B, dtype=np.int64)
    starts = np.empty((B, n), dtype=bool)
    starts[:, 0] = True
    np.not_equal(words[:, 1:], words[:, :-1], out=starts[:, 1:])
    idx = np.flatnonzero(starts)  # run starts, row-major, in flat positions
    rows = idx // n
    ends = np.empty_like(idx)
    ends[:-1] = idx[1:]
    ends[-1] = B * n
    lengths = np.minimum(ends, (rows + 1) * n) - idx  # a run ends at the next start or its row's end
    return np.bincount(rows, weights=_symbol_bytes(bits) + _varint_bytes(lengths), minlength=B).astype(np.int64)


def rle_encode(symbols: np.ndarray, bits: int) -> bytes:
    """Run-length code of a 1-D symbol sequence: per run, the symbol (little-endian,
    ``ceil(bits/8)`` bytes) then the run length as an LEB128 varint."""
    s = np.asarray(symbols).reshape(-1)
    out = bytearray()
    width = _symbol_bytes(bits)
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out += int(s[i]).to_bytes(width, "little")
        n = j - i
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
        i = j
    return bytes(out)


def rle_decode(buf: bytes, bits: int) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    width, out, i = _symbol_bytes(bits), [], 0
    while i < len(buf):
        sym = int.from_bytes(buf[i:i + width], "little")
        i += width
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.extend([sym] * n)
    return np.array(out, dtype=np.int64)


def _float_words(z: torch.Tensor, dtype: torch.dtype) -> Payload:
    bits = torch.finfo(dtype).bits
    v = z.detach().to(dtype).reshape(len(z), -1).contiguous().numpy()
    return Payload(words=v.view(np.uint16 if bits == 16 else np.uint32), bits=bits)


# --------------------------------------------------------------------------------------------
# Bottlenecks


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


class Fp16(Bottleneck):
    name = "fp16"

    def describe(self) -> str:
        return "half precision"

    def roundtrip(self, z):
        return z.half().float(), _float_words(z, torch.float16)

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
        side = 8 * g.shape[1]  # lo and scale, fp32, per group
        return out, Payload(words=q.reshape(len(z), -1).to(torch.uint8).numpy(), bits=self.bits, side_bytes=side)

    def nominal_bytes(self, shape):
        groups = shape[0] if self.per_channel else 1
        return math.ceil(math.prod(shape) * self.bits / 8) + 8 * groups


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
        return out, _float_words(kept, torch.float32)

    def nominal_bytes(self, shape):
        return 4 * self.count(shape[0]) * math.prod(shape[1:])


def _ae_geometry(shape: tuple[int, int, int]) -> tuple[int, int, int, int, int, int]:
    """``(C/2, C/4, H1, W1, H2, W2)`` of the autoencoder for a (C, H, W) tensor: channels of
    the hidden layer and the code, and the sizes after the first and second stride-2 conv."""
    c, h, w = shape
    h1, w1 = (h + 1) // 2, (w + 1) // 2
    return max(1, c // 2), max(1, c // 4), h1, w1, (h1 + 1) // 2, (w1 + 1) // 2


class _AENet(nn.Module):
    """I-SPLIT's undercomplete autoencoder for a (C, H, W) tensor: (C/2, C/4) stride-2
    convolutions down, mirrored transposed convolutions up, in standardised units."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = shape
        c2, c4, h1, w1, h2, w2 = _ae_geometry(shape)
        self.encoder = nn.Sequential(nn.Conv2d(c, c2, 3, 2, 1), nn.ReLU(), nn.Conv2d(c2, c4, 3, 2, 1))
        # output_padding makes each transposed convolution land exactly on the encoder's input size.
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c4, c2, 3, 2, 1, output_padding=(h1 - (2 * h2 - 1), w1 - (2 * w2 - 1))), nn.ReLU(),
            nn.ConvTranspose2d(c2, c, 3, 2, 1, output_padding=(h - (2 * h1 - 1), w - (2 * w1 - 1))))
        self.register_buffer("mu", torch.zeros(1, c, 1, 1))
        self.register_buffer("sigma", torch.ones(1, c, 1, 1))
        self.code_shape = (c4, h2, w2)

    def encode(self, z):
        return self.encoder((z - self.mu) / self.sigma)

    def decode(self, code):
        return self.decoder(code) * self.sigma + self.mu


class Autoencoder(Bottleneck):
    """I-SPLIT's autoencoder at the cut, trained per split with the backbone frozen.

    Loss: cross-entropy of the frozen tail's output on the decoded tensor plus the
    reconstruction MSE in standardised units; Adam, ``epochs`` passes over the calibration
    activations, seeded. The code is sent at fp32.
    """

    name = "autoencoder"
    needs_fit = True

    def __init__(self, epochs: int = 5, lr: float = 2e-3, batch_size: int = 64, recon_weight: float = 1.0):
        self.epochs, self.lr, self.batch_size, self.recon_weight = epochs, lr, batch_size, recon_weight
        self.net: _AENet | None = None
        self.history: list[float] = []

    def describe(self) -> str:
        return f"I-SPLIT autoencoder (2 stride-2 convs to C/4 channels), {self.epochs} epochs, backbone frozen"

    def applicable(self, shape, split):
        if len(shape) != 3 or shape[1] < 4 or shape[2] < 4:
            return "needs a (C, H, W) tensor of at least 4×4"
        return None

    def fit(self, ctx):
        opts = ctx.options
        epochs = int(opts.get("epochs", self.epochs))
        z, y = ctx.calibration()
        new = copy.copy(self)
        with torch.random.fork_rng():
            torch.manual_seed(ctx.seed)
            net = _AENet(tuple(ctx.shape))
        net.mu.copy_(z.mean((0, 2, 3), keepdim=True))
        net.sigma.copy_(z.std((0, 2, 3), keepdim=True).clamp_min(1e-6))
        tail = ctx.tail
        tail_params = list(tail.parameters())
        saved = [p.requires_grad for p in tail_params]
        modes = [(m, m.training) for m in tail.modules()]
        opt = torch.optim.Adam(net.parameters(), lr=float(opts.get("lr", self.lr)))
        gen = torch.Generator().manual_seed(ctx.seed)
        bs = int(opts.get("batch_size", self.batch_size))
        w_rec = float(opts.get("recon_weight", self.recon_weight))
        loss_fn = nn.CrossEntropyLoss()
        history = []
        try:
            for p in tail_params:
                p.requires_grad_(False)
            tail.eval()
            net.train()
            with torch.enable_grad():  # also when the caller runs under no_grad
                for _ in range(epochs):
                    total, seen = 0.0, 0
                    for idx in torch.randperm(len(z), generator=gen).split(bs):
                        zb, yb = z[idx], y[idx]
                        rec = net.decode(net.encode(zb))
                        loss = loss_fn(tail(rec.clone()), yb)
                        if w_rec:
                            loss = loss + w_rec * ((rec - zb) / net.sigma).pow(2).mean()
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        total += float(loss.detach()) * len(idx)
                        seen += len(idx)
                    history.append(total / max(seen, 1))
        finally:
            for p, r in zip(tail_params, saved):
                p.requires_grad_(r)
            for m, mode in modes:
                m.training = mode
        net.eval()
        new.net, new.history = net, history
        return new

    def roundtrip(self, z):
        with torch.no_grad():
            code = self.net.encode(z.detach().float())
            return self.net.decode(code), _float_words(code, torch.float32)

    def nominal_bytes(self, shape):
        _, c4, _, _, h2, w2 = _ae_geometry(shape)
        return 4 * c4 * h2 * w2

    def extra_work(self, shape):
        """The encoder runs on the device, the decoder on the server: 3×3 convolutions
        (transposed on the way up), multiply-adds Cin·Cout·9 per output (encoder) or input
        (decoder) position, plus fp32 activations and weights moved."""
        c, h, w = shape
        c2, c4, h1, w1, h2, w2 = _ae_geometry(shape)
        macs = c2 * c * 9 * h1 * w1 + c4 * c2 * 9 * h2 * w2
        weights = 4 * (c * c2 * 9 + c2 + c2 * c4 * 9 + c4)
        acts = 4 * (c * h * w + 2 * c2 * h1 * w1 + c4 * h2 * w2)  # in, hidden (written and read), code
        side = {"flops_conv": float(macs), "flops_linear": 0.0, "flops_other": float(c2 * h1 * w1),  # the ReLU
                "bytes_moved": float(weights + acts), "layers": 3.0}
        return {"head": side, "tail": dict(side)}


# --------------------------------------------------------------------------------------------
# Registry


_REGISTRY: dict[str, Callable[[], Bottleneck]] = {}
_PARAMETRIC = [
    (re.compile(r"^int([1-8])(_channel)?(_pct)?$"),
     lambda m, name: Quantize(int(m[1]), per_channel=bool(m[2]), percentile=99.9 if m[3] else None, name=name)),
    (re.compile(r"^top(100|[1-9][0-9]?)_(gradcam|random)$"),
     lambda m, name: TopChannels(int(m[1]) / 100, m[2], name=name)),
]


def _parse(name: str) -> Bottleneck | None:
    for pattern, make in _PARAMETRIC:
        m = pattern.match(name)
        if m:
            return make(m, name)
    return None


def register_bottleneck(name: str, factory: Callable[[], Bottleneck], *, overwrite: bool = False) -> None:
    """Register a bottleneck factory (a callable returning a fresh :class:`Bottleneck`)."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a bottleneck named {name!r} is already registered")
    _REGISTRY[name] = factory


def list_bottlenecks(include: str | None = None) -> list[str]:
    """Registered names in a stable order (registration order), optionally filtered by a glob."""
    return [n for n in _REGISTRY if include is None or fnmatch.fnmatch(n, include)]


def get_bottleneck(name: str) -> Bottleneck:
    """A fresh bottleneck by registered or parametric name (see the module docstring)."""
    if name in _REGISTRY:
        b = _REGISTRY[name]()
        b.name = name
        return b
    b = _parse(name)
    if b is not None:
        return b
    raise UserError(f"unknown bottleneck {name!r} (known: {', '.join(list_bottlenecks())}; "
                    "also int<bits>[_channel][_pct] and top<percent>_gradcam|random)")


def _register_defaults() -> None:
    register_bottleneck("none", Bottleneck)
    register_bottleneck("fp16", Fp16)
    for suffix in ("", "_channel", "_pct"):
        for bits in (8, 4, 2):
            name = f"int{bits}{suffix}"
            register_bottleneck(name, lambda n=name: _parse(n))
    for pct in (50, 25):
        for sel in ("gradcam", "random"):
            name = f"top{pct}_{sel}"
            register_bottleneck(name, lambda n=name: _parse(n))
    register_bottleneck("autoencoder", Autoencoder)


_register_defaults()
