"""Bottlenecks on the sent tensor, and the lossless coders that put it on the wire.

A bottleneck transforms the activation ``z`` (B, *shape) at a split into a *payload* (what
the device sends) and back into the tensor the tail receives. Bottlenecks come from a
registry (torchvision style: :func:`register_bottleneck`, :func:`get_bottleneck`,
:func:`list_bottlenecks`, :func:`resolve_bottlenecks`); besides the registered names,
parametric names are parsed:

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

One file per family: :mod:`.coders` (payloads, ``raw``/``zstd``/``rle`` byte counting),
:mod:`.base` (:class:`Bottleneck`, :class:`FitContext`), :mod:`.quantize`, :mod:`.channels`,
:mod:`.autoencoder`. This module holds the registry, the parametric parser and the defaults.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

from ...config.checks import register_check
from ...config.registry import Registry
from ...errors import UserError
from .autoencoder import Autoencoder
from .base import Bottleneck, FitContext
from .channels import TopChannels
from .coders import CODERS, ZSTD_LEVEL, Payload, rle_decode, rle_encode, rle_sizes  # noqa: F401  (re-exported)
from .quantize import Fp16, Quantize

__all__ = [
    "CODERS", "ZSTD_LEVEL", "Payload", "rle_decode", "rle_encode", "rle_sizes",
    "Bottleneck", "FitContext", "Fp16", "Quantize", "TopChannels", "Autoencoder",
    "BOTTLENECKS", "register_bottleneck", "get_bottleneck", "list_bottlenecks", "resolve_bottlenecks",
]

Factory = Callable[[], Bottleneck]

_PARAMETRIC = [
    (re.compile(r"^int([1-8])(_channel)?(_pct)?$"),
     lambda m, name: Quantize(int(m[1]), per_channel=bool(m[2]), percentile=99.9 if m[3] else None, name=name)),
    (re.compile(r"^top(100|[1-9][0-9]?)_(gradcam|random)$"),
     lambda m, name: TopChannels(int(m[1]) / 100, m[2], name=name)),
]
_GRAMMAR = "also int<bits>[_channel][_pct] and top<percent>_gradcam|random"


def _parse(name: str) -> Bottleneck | None:
    for pattern, make in _PARAMETRIC:
        m = pattern.match(name)
        if m:
            return make(m, name)
    return None


def _parametric_factory(name: str) -> Factory | None:
    """The registry's fallback: a factory for a parametric name, None for anything else."""
    return functools.partial(_parse, name) if any(p.match(name) for p, _ in _PARAMETRIC) else None


def _register_defaults(reg: Registry[Factory]) -> None:
    reg.register("none", Bottleneck)
    reg.register("fp16", Fp16)
    for suffix in ("", "_channel", "_pct"):
        for bits in (8, 4, 2):
            name = f"int{bits}{suffix}"
            reg.register(name, functools.partial(_parse, name))
    for pct in (50, 25):
        for sel in ("gradcam", "random"):
            name = f"top{pct}_{sel}"
            reg.register(name, functools.partial(_parse, name))
    reg.register("autoencoder", Autoencoder)


# Factories, not instances: every get returns a fresh (unfitted) bottleneck. Listed in
# registration order, which reads from no compression to the most.
BOTTLENECKS: Registry[Factory] = Registry(
    "bottleneck", loader=_register_defaults, fallback=_parametric_factory, sort=False, hint=_GRAMMAR)
_REGISTRY = BOTTLENECKS  # the name tests reach for


def register_bottleneck(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Register a bottleneck factory (a callable returning a fresh :class:`Bottleneck`)."""
    BOTTLENECKS.register(name, factory, overwrite=overwrite)


def list_bottlenecks(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Registered names in a stable order (registration order), filtered by fnmatch globs."""
    return BOTTLENECKS.list(include, exclude)


def get_bottleneck(name: str) -> Bottleneck:
    """A fresh bottleneck by registered or parametric name (see the module docstring)."""
    b = BOTTLENECKS.get(name)()
    b.name = name
    return b


def resolve_bottlenecks(name: str | list[str]) -> list[str]:
    """Bottleneck names from a name, a glob (``"int*"``) or a list of names and globs.

    Globs expand to registered names in :func:`list_bottlenecks` order; a parametric name
    (``int5_channel``) given literally is kept even though it is not registered. Duplicates
    are dropped, the first occurrence kept. An unknown name, or a glob that matches nothing,
    is a UserError naming it.
    """
    return BOTTLENECKS.match(name)


def _check_scenario_bottlenecks(sc, src_for) -> None:
    """Scenario hook (``bottleneck`` section): ``bottleneck.name`` (a name, a glob or a list
    of them) resolves, and every name in ``bottleneck.measure`` is a bottleneck."""
    bn = sc.bottleneck
    try:
        if not resolve_bottlenecks(bn.name):
            raise UserError("name at least one bottleneck")
    except UserError as e:
        raise UserError(e.message, source=src_for("bottleneck.name"), field="bottleneck.name") from None
    for name in [] if bn.measure == "all" else bn.measure:
        try:
            get_bottleneck(name)
        except UserError as e:
            raise UserError(e.message, source=src_for("bottleneck.measure"), field="bottleneck.measure") from None


register_check(_check_scenario_bottlenecks, section="bottleneck")
