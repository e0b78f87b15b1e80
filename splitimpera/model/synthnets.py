"""Seeded random networks built from the blocks CNNs are made of, for fitting the compute model.

A node's time depends on more than its own shape: whether its input is still in cache, what
ran before it, how the allocator reuses memory. Fitted only on the few networks of the
default set, the per-kind model meets other widths, kernels, activations and block orders on
every new network. Like nn-Meter, which samples kernel configurations and fits each in the
context it runs in, ``calibrate`` adds a handful of random networks to its fit set: each
takes an activation by its seed (ReLU, ReLU6, Hardswish, SiLU, GELU, LeakyReLU, ELU in turn)
and draws from it, in place or not, widths, and per stage a block type — basic and bottleneck residual blocks (grouped or
not), inverted residuals with depthwise 3×3/5×5 convolutions and squeeze-excitation,
ShuffleNet units, inception-style branches joined by concatenation, DenseNet-style growth,
and ConvNeXt blocks (depthwise 7×7, channels-last LayerNorm, linear MLP, layer scale,
stochastic depth) — at the resolutions a 224×224 input passes through.

Names for the fit set: ``splitimpera.model.synthnets:net_<seed>`` (any non-negative seed).
These networks are for timing only: their weights are random and they classify nothing.
"""

from __future__ import annotations

import random
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import SqueezeExcitation, StochasticDepth

ACTIVATIONS = {
    "relu": lambda inplace: nn.ReLU(inplace=inplace),
    "relu6": lambda inplace: nn.ReLU6(inplace=inplace),
    "hardswish": lambda inplace: nn.Hardswish(inplace=inplace),
    "silu": lambda inplace: nn.SiLU(inplace=inplace),
    "gelu": lambda inplace: nn.GELU(),
    "leaky_relu": lambda inplace: nn.LeakyReLU(0.1, inplace=inplace),
    "elu": lambda inplace: nn.ELU(inplace=inplace),
}
BLOCKS = ("basic", "bottleneck", "mbconv", "shuffle", "inception", "dense", "convnext")


def _cbn(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act=None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class Basic(nn.Module):
    def __init__(self, cin, cout, s, act, groups_width=0):
        super().__init__()
        self.a = _cbn(cin, cout, 3, s, act=act)
        self.b = _cbn(cout, cout, 3)
        self.short = _cbn(cin, cout, 1, s) if (s != 1 or cin != cout) else None
        self.out = act()

    def forward(self, x):
        y = self.b(self.a(x))
        y += x if self.short is None else self.short(x)
        return self.out(y)


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, s, act, groups_width=0):
        super().__init__()
        mid = max(8, cout // 4) if not groups_width else max(groups_width, (cout // groups_width) * groups_width)
        groups = mid // groups_width if groups_width else 1
        self.a = _cbn(cin, mid, 1, act=act)
        self.b = _cbn(mid, mid, 3, s, groups=groups, act=act)
        self.c = _cbn(mid, cout, 1)
        self.short = _cbn(cin, cout, 1, s) if (s != 1 or cin != cout) else None
        self.out = act()

    def forward(self, x):
        y = self.c(self.b(self.a(x)))
        return self.out(y + (x if self.short is None else self.short(x)))


class MBConv(nn.Module):
    def __init__(self, cin, cout, s, act, k=3, expand=4, se=True, scale_act=nn.Sigmoid, sd=0.0):
        super().__init__()
        mid = cin * expand
        layers = [_cbn(cin, mid, 1, act=act)] if expand != 1 else []
        layers.append(_cbn(mid, mid, k, s, groups=mid, act=act))
        if se:
            layers.append(SqueezeExcitation(mid, max(8, cin // 4), activation=act, scale_activation=scale_act))
        layers.append(_cbn(mid, cout, 1))
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout
        self.sd = StochasticDepth(sd, "row") if sd and self.res else None

    def forward(self, x):
        y = self.body(x)
        if self.res:
            y = (self.sd(y) if self.sd is not None else y) + x
        return y


class Shuffle(nn.Module):
    def __init__(self, cin, cout, s, act):
        super().__init__()
        self.s = s
        half = cout // 2
        bin_ = cin if s > 1 else cin // 2
        self.main = nn.Sequential(_cbn(bin_, half, 1, act=act), _cbn(half, half, 3, s, groups=half),
                                  _cbn(half, half, 1, act=act))
        self.side = (nn.Sequential(_cbn(cin, cin, 3, s, groups=cin), _cbn(cin, half, 1, act=act))
                     if s > 1 else None)

    def forward(self, x):
        if self.side is None:
            a, b = x.chunk(2, dim=1)
            y = torch.cat((a, self.main(b)), dim=1)
        else:
            y = torch.cat((self.side(x), self.main(x)), dim=1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class Inception(nn.Module):
    def __init__(self, cin, cout, s, act):
        super().__init__()
        q = max(8, cout // 4)
        self.b1 = _cbn(cin, cout - 3 * q, 1, act=act)
        self.b2 = nn.Sequential(_cbn(cin, q, 1, act=act), _cbn(q, q, 3, act=act))
        self.b3 = nn.Sequential(_cbn(cin, q // 2, 1, act=act), _cbn(q // 2, q, 5, act=act))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbn(cin, q, 1, act=act))
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True) if s > 1 else None

    def forward(self, x):
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)
        return self.pool(y) if self.pool is not None else y


class Dense(nn.Module):
    def __init__(self, cin, cout, s, act, layers=3):
        super().__init__()
        g = max(8, (cout - cin) // layers) if cout > cin else 16
        self.layers = nn.ModuleList()
        c = cin
        for _ in range(layers):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(c), act(), nn.Conv2d(c, 4 * g, 1, bias=False),
                                             nn.BatchNorm2d(4 * g), act(), nn.Conv2d(4 * g, g, 3, 1, 1, bias=False)))
            c += g
        self.trans = nn.Sequential(nn.BatchNorm2d(c), act(), nn.Conv2d(c, cout, 1, bias=False),
                                   nn.AvgPool2d(2, 2) if s > 1 else nn.Identity())

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return self.trans(torch.cat(feats, 1))


class ConvNeXt(nn.Module):
    def __init__(self, cin, cout, s, act, sd=0.1):
        super().__init__()
        self.down = (nn.Sequential(nn.GroupNorm(1, cin), nn.Conv2d(cin, cout, 2, 2)) if (s > 1 or cin != cout)
                     else None)
        if self.down is not None and s == 1:
            self.down[1] = nn.Conv2d(cin, cout, 1)
        self.dw = nn.Conv2d(cout, cout, 7, 1, 3, groups=cout)
        self.norm = nn.LayerNorm(cout)
        self.fc1, self.fc2 = nn.Linear(cout, 4 * cout), nn.Linear(4 * cout, cout)
        self.act = nn.GELU()
        self.gamma = nn.Parameter(torch.full((cout, 1, 1), 1e-6))
        self.sd = StochasticDepth(sd, "row")

    def forward(self, x):
        if self.down is not None:
            x = self.down(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.sd(self.gamma * y)


class SynthNet(nn.Module):
    """A random CNN drawn from ``seed`` (see the module doc)."""

    def __init__(self, seed: int, num_classes: int = 1000):
        super().__init__()
        rng = random.Random(seed)
        act_name = list(ACTIVATIONS)[seed % len(ACTIVATIONS)]  # seeds 0…6 meet every activation
        inplace = rng.random() < 0.5
        act = partial(ACTIVATIONS[act_name], inplace)
        self.description = {"seed": seed, "activation": act_name, "inplace": inplace, "blocks": []}
        c = rng.choice((16, 24, 32, 48, 64))
        stem = [_cbn(3, c, 3, 2, act=act)]
        if rng.random() < 0.4:
            stem.append(nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = list(stem)
        res = 112 if len(stem) == 1 else 56
        widths = {112: (16, 24, 32), 56: (24, 32, 48, 64, 96), 28: (40, 64, 96, 128, 192),
                  14: (80, 112, 160, 256, 320), 7: (192, 320, 512, 768)}
        while True:
            kind = rng.choice(BLOCKS)
            cout = rng.choice(widths[res])
            for _ in range(rng.randint(1, 2) if res >= 56 else rng.randint(1, 3)):
                layers.append(self._block(kind, c, cout, 1, act, rng, act_name))
                self.description["blocks"].append(f"{kind} {c}->{cout} @{res}")
                c = cout
            if res == 7:
                break
            cout = rng.choice(widths[res // 2])  # down to the next resolution
            kind = rng.choice(("basic", "bottleneck", "mbconv", "shuffle", "inception", "dense"))
            layers.append(self._block(kind, c, cout, 2, act, rng, act_name))
            self.description["blocks"].append(f"{kind} {c}->{cout} s2 @{res}")
            c, res = cout, res // 2
        self.features = nn.Sequential(*layers)
        head = rng.choice((1280, 1024, 0))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = (nn.Sequential(nn.Linear(c, head), act(), nn.Dropout(0.2), nn.Linear(head, num_classes))
                           if head else nn.Sequential(nn.Dropout(0.2), nn.Linear(c, num_classes)))

    @staticmethod
    def _block(kind, cin, cout, s, act, rng, act_name):
        if kind == "basic":
            return Basic(cin, cout, s, act)
        if kind == "bottleneck":
            return Bottleneck(cin, cout, s, act, groups_width=rng.choice((0, 0, 8, 16)))
        if kind == "mbconv":
            scale = nn.Hardsigmoid if act_name == "hardswish" else nn.Sigmoid
            return MBConv(cin, cout, s, act, k=rng.choice((3, 5)), expand=rng.choice((1, 3, 4, 6)),
                          se=rng.random() < 0.6, scale_act=scale, sd=rng.choice((0.0, 0.1)))
        if kind == "shuffle":
            cout = max(16, cout - cout % 4)
            if s == 1 and cin != cout:
                return Basic(cin, cout, s, act)
            return Shuffle(cin, cout, s, act)
        if kind == "inception":
            return Inception(cin, cout, s, act) if cout >= 64 else Basic(cin, cout, s, act)
        if kind == "dense":
            return Dense(cin, cout, s, act, layers=rng.randint(2, 4))
        return ConvNeXt(cin, cout, s, act)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def synth_net(seed: int = 0, num_classes: int | None = None) -> nn.Module:
    return SynthNet(seed, num_classes or 1000).eval()


def __getattr__(name: str):
    """``net_<seed>`` → a builder of :class:`SynthNet` (``seed`` a non-negative integer)."""
    if name.startswith("net_") and name[4:].isdigit():
        return partial(synth_net, int(name[4:]))
    raise AttributeError(name)
