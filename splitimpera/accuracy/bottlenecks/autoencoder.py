"""I-SPLIT's undercomplete autoencoder at the cut, trained per split with the backbone frozen."""

from __future__ import annotations

import base64
import copy

import numpy as np
import torch
import torch.nn as nn

from .base import Bottleneck
from .coders import float_payload


# The hidden layer has at least this many channels. I-SPLIT's C/2 leaves one ReLU channel at
# a 1-channel input: it dies in most seeds and the code carries nothing (digits input split,
# 6 seeds: 10-89 % accuracy with one channel, 97.5-98.3 % with eight). The code, and so the
# bytes sent, stays C/4 channels.
MIN_HIDDEN_CHANNELS = 8


def autoencoder_geometry(shape: tuple[int, int, int]) -> tuple[int, int, int, int, int, int]:
    """``(max(C/2, 8), C/4, H1, W1, H2, W2)`` of the autoencoder for a (C, H, W) tensor:
    channels of the hidden layer and the code, and the sizes after the first and second
    stride-2 conv."""
    c, h, w = shape
    h1, w1 = (h + 1) // 2, (w + 1) // 2
    return max(MIN_HIDDEN_CHANNELS, c // 2), max(1, c // 4), h1, w1, (h1 + 1) // 2, (w1 + 1) // 2


class AutoencoderNet(nn.Module):
    """I-SPLIT's undercomplete autoencoder for a (C, H, W) tensor: (C/2 but at least 8, C/4)
    stride-2 convolutions down, mirrored transposed convolutions up, in standardised units."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = shape
        c2, c4, h1, w1, h2, w2 = autoencoder_geometry(shape)
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
        self.net: AutoencoderNet | None = None
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
            net = AutoencoderNet(tuple(ctx.shape))
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

    def fit_state(self):
        """The trained weights (float32, base64) and the loss history: minutes of training
        that every scenario with the same model, calibration data, split and settings reuses."""
        return {"history": list(self.history),
                "tensors": {k: {"shape": list(v.shape), "f32": base64.b64encode(
                    v.detach().numpy().astype("<f4").tobytes()).decode("ascii")}
                    for k, v in self.net.state_dict().items()}}

    def from_fit_state(self, state, shape):
        new = copy.copy(self)
        net = AutoencoderNet(tuple(shape))
        net.load_state_dict({k: torch.from_numpy(np.frombuffer(base64.b64decode(v["f32"]), dtype="<f4").copy()
                                                 ).reshape(v["shape"]) for k, v in state["tensors"].items()})
        net.eval()
        new.net, new.history = net, list(state["history"])
        return new

    def roundtrip(self, z):
        with torch.no_grad():
            code = self.net.encode(z.detach().float())
            return self.net.decode(code), float_payload(code, torch.float32)

    def wire_format(self, shape):
        _, c4, _, _, h2, w2 = autoencoder_geometry(shape)
        return 32, c4 * h2 * w2, 0

    def from_payload(self, words, side, shape):
        _, c4, _, _, h2, w2 = autoencoder_geometry(shape)
        code = torch.from_numpy(np.ascontiguousarray(words, dtype="<u4").view(np.float32)).reshape(len(words), c4, h2, w2)
        with torch.no_grad():
            return self.net.decode(code)

    def nominal_bytes(self, shape):
        _, c4, _, _, h2, w2 = autoencoder_geometry(shape)
        return 4 * c4 * h2 * w2

    def extra_work(self, shape):
        """The encoder runs on the device, the decoder on the server: 3×3 convolutions
        (transposed on the way up), multiply-adds Cin·Cout·9 per output (encoder) or input
        (decoder) position, plus fp32 activations and weights moved."""
        c, h, w = shape
        c2, c4, h1, w1, h2, w2 = autoencoder_geometry(shape)
        macs = c2 * c * 9 * h1 * w1 + c4 * c2 * 9 * h2 * w2
        weights = 4 * (c * c2 * 9 + c2 + c2 * c4 * 9 + c4)
        acts = 4 * (c * h * w + 2 * c2 * h1 * w1 + c4 * h2 * w2)  # in, hidden (written and read), code
        side = {"flops_conv": float(macs), "flops_linear": 0.0, "flops_other": float(c2 * h1 * w1),  # the ReLU
                "bytes_moved": float(weights + acts), "layers": 3.0}
        return {"head": side, "tail": dict(side)}
