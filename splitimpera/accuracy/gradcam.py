"""I-SPLIT importance: per-layer Grad-CAM maps in one forward and one backward pass.

Every candidate split node gets a *tap* (a custom autograd function) that keeps the node's
activation and, during the single backward pass, receives the gradient of the target logit
with respect to it; the map is computed right there and the activation is released, so
memory stays close to a plain forward+backward. Channel weights come from
pytorch-grad-cam's own classes (``get_cam_image`` of GradCAM, GradCAM++, XGradCAM,
HiResCAM, LayerCAM, GradCAMElementWise), chosen by name; only the display-oriented per-image
min-max scaling of that library is left out, because its magnitude is what the CUI curve
measures.

Raw map of a layer with activation ``A`` (B, C, h, w) and gradient ``G``::

    map = ReLU(Σ_c w_c · A_c)            reduction "sum" (standard Grad-CAM, the library's)
    map = ReLU(Σ_c w_c · A_c / C)        reduction "mean" (I-SPLIT's reference code)

Vector activations (B, C) are treated as (B, C, 1, 1).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..config.checks import register_check
from ..config.registry import Registry
from ..errors import UserError
from ..model.splits import INPUT, OUTPUT, TracedModel, eval_mode, trace

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Method registry (torchvision-style): name → pytorch-grad-cam class


def _grad_cam_classes() -> dict[str, type]:
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "gradcam-elementwise": pgc.GradCAMElementWise,
    }


def _register_defaults(reg: "Registry[type]") -> None:
    for name, cls in _grad_cam_classes().items():
        reg.register(name, cls)


# Loaded on first use: importing pytorch-grad-cam costs time the other stages need not pay.
METHODS: Registry[type] = Registry("importance method", loader=_register_defaults)


def register_method(name: str, cam_class: type, *, overwrite: bool = False) -> None:
    """Register a pytorch-grad-cam ``BaseCAM`` subclass under ``name``."""
    METHODS.register(name, cam_class, overwrite=overwrite)


def list_methods(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Importance method names, sorted, filtered by fnmatch globs."""
    return METHODS.list(include, exclude)


def get_method(name: str) -> type:
    """The pytorch-grad-cam class registered as ``name``."""
    return METHODS.get(name)


def _check_scenario_method(sc, src_for) -> None:
    """Scenario hook (``analysis`` section): ``analysis.cui.method`` names a method."""
    if sc.analysis.cui.method is not None:
        try:
            get_method(sc.analysis.cui.method)
        except UserError as e:
            raise UserError(e.message, source=src_for("analysis.cui.method"), field="analysis.cui.method") from None


register_check(_check_scenario_method, section="analysis")


def _cam_engine(name: str):
    """An instance of the method's class used only for its per-layer rule (``get_cam_image``).

    The class's ``__init__`` would hook a model; its per-layer rule needs no state, so the
    instance is created without it.
    """
    cls = get_method(name)
    engine = cls.__new__(cls)
    engine.activations_and_grads = _NoHooks()  # BaseCAM.__del__ releases hooks it would have set
    return engine


class _NoHooks:
    def release(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Taps


class _Taps:
    """Per-call state shared by the taps of one forward+backward."""

    def __init__(self, engine, reduction: str, x: torch.Tensor, collect: bool = False):
        self.engine, self.reduction, self.x, self.collect = engine, reduction, x, collect
        self.activations: dict[str, torch.Tensor] = {}
        self.maps: dict[str, torch.Tensor] = {}
        self.channels: dict[str, torch.Tensor] = {}  # collect: (B, C) Grad-CAM contributions
        self.sums: dict[str, torch.Tensor] = {}  # collect: activations summed over the batch

    def cam(self, name: str, grad: torch.Tensor) -> None:
        act = self.activations.pop(name)
        a = act.reshape(*act.shape[:2], 1, 1) if act.dim() == 2 else act
        g = grad.reshape(a.shape)
        if self.collect:
            # Channel c's term of the Grad-CAM map, α_c · mean_hw(A_c), α_c = mean_hw(∂y/∂A_c).
            self.channels[name] = (g.mean((2, 3)) * a.mean((2, 3))).detach().double()
            self.sums[name] = act.detach().double().sum(0)
        a_np = a.detach().float().numpy()
        g_np = g.detach().float().numpy()
        # The library's own rule: weights per channel, weighted sum over channels.
        cam = self.engine.get_cam_image(self.x, None, None, a_np, g_np, False)
        if self.reduction == "mean":
            cam = cam / a.shape[1]
        self.maps[name] = torch.from_numpy(np.maximum(cam, 0).astype(np.float32, copy=False))


class _Tap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, taps, name):
        # The activation is kept as is and the graph continues on a copy, so in-place ops
        # downstream (ReLU(inplace=True), +=) cannot overwrite what the map needs.
        taps.activations[name] = x.detach()
        ctx.taps, ctx.name = taps, name
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        ctx.taps.cam(ctx.name, grad)
        return grad, None, None


class _TapModule(nn.Module):
    """Identity on values; hands the activation and its gradient to the current ``_Taps``."""

    def __init__(self, state: dict, name: str):
        super().__init__()
        self.state, self.split = state, name

    def forward(self, x):
        return _Tap.apply(x, self.state["taps"], self.split)


def _tapped_module(tm: TracedModel, names: Sequence[str]) -> tuple[fx.GraphModule, dict]:
    """A copy of the traced graph with a tap module after each named split node."""
    wanted = set(names)
    state: dict = {"taps": None}
    root = nn.Module()
    root.base = tm.gm
    g, env = fx.Graph(), {}
    for n in tm.nodes:
        if n.op == "output":
            g.output(fx.map_arg(n.args[0], lambda a: env[a]))
            continue
        new = g.node_copy(n, lambda a: env[a])
        if n.op in ("call_module", "get_attr"):
            new.target = f"base.{n.target}"
        if n.name in wanted:
            tap = f"si_tap_{len(root._modules)}"
            root.add_module(tap, _TapModule(state, n.name))
            new = g.call_module(tap, (new,))
        env[n] = new
    return fx.GraphModule(root, g), state


def default_map_splits(tm: TracedModel) -> list[str]:
    """Candidate splits with spatial maps: per-sample outputs (C, h, w), not ``input``/``output``.

    Vector outputs (C,) get a map too when named explicitly (as a 1×1 map), but are left out
    by default: a spatial mean over one pixel is not comparable with one over h×w pixels and
    would dominate the curve.
    """
    return [sp.name for sp in tm.candidates if sp.name not in (INPUT, OUTPUT) and len(sp.shape) == 3]


def mappable_splits(tm: TracedModel) -> set[str]:
    """Splits a Grad-CAM map can be taken at when named: (C, H, W) and (C,) outputs, not ``input``/``output``."""
    return {sp.name for sp in tm.candidates if sp.name not in (INPUT, OUTPUT) and len(sp.shape) in (1, 3)}


def reference_splits(tm: TracedModel) -> list[str]:
    """I-SPLIT's candidate layers: convolution and pooling outputs, and residual-block outputs.

    VGG16 gives its 13 conv and 5 pool outputs of ``features``; ResNet-50 gives ``conv1``,
    ``maxpool`` and the 16 bottleneck outputs.
    """
    kinds = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    out = []
    for sp in tm.candidates:
        if sp.name in (INPUT, OUTPUT) or len(sp.shape) != 3:
            continue
        n = tm.node(sp.name)
        if n.op == "call_module" and isinstance(tm.gm.get_submodule(n.target), kinds):
            out.append(sp.name)
        elif n.op == "call_module" and isinstance(tm.gm.get_submodule(n.target), nn.ReLU):
            src = n.args[0] if n.args else None
            if isinstance(src, fx.Node) and src.op == "call_function" and getattr(src.target, "__name__", "") in (
                    "add", "iadd"):
                out.append(sp.name)  # ReLU after the residual addition: a block output
    return out


@contextmanager
def _frozen_parameters(module: nn.Module):
    """Parameters need no gradients here (only activations do): skip that work, then restore."""
    params = list(module.parameters())
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(params, saved):
            p.requires_grad_(r)


class MapEngine:
    """Reusable one-pass Grad-CAM engine for one model, input shape and set of splits."""

    def __init__(self, model: nn.Module | TracedModel, input_shape=None, splits: Iterable[str] | None = None,
                 method: str = "gradcam", reduction: str = "sum", collect_channels: bool = False):
        if reduction not in ("sum", "mean"):
            raise UserError(f"channel reduction must be 'sum' or 'mean', got {reduction!r}")
        self.tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
        allowed = mappable_splits(self.tm)
        names = list(splits) if splits is not None else default_map_splits(self.tm)
        bad = [n for n in names if n not in allowed]
        if bad:
            raise UserError(f"no map at split(s) {', '.join(bad)}: not candidates with (C,) or (C, h, w) outputs")
        order = {sp.name: i for i, sp in enumerate(self.tm.candidates)}
        self.splits = sorted(names, key=order.__getitem__)
        self.method, self.reduction, self.collect_channels = method, reduction, collect_channels
        # With collect_channels, each call also leaves per split the (B, C) Grad-CAM
        # contribution of every channel and the batch sum of the activations.
        self.last_channels: dict[str, torch.Tensor] = {}
        self.last_sums: dict[str, torch.Tensor] = {}
        self.engine = _cam_engine(method)
        self.gm, self._state = _tapped_module(self.tm, self.splits)

    def __call__(self, x: torch.Tensor, targets=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Maps ``{split: (B, h, w)}`` and the logits (B, classes) for a batch ``x``.

        ``targets``: class index per image (sequence or tensor of B ints), or None for the
        predicted class.
        """
        taps = _Taps(self.engine, self.reduction, x, self.collect_channels)
        self._state["taps"] = taps
        try:
            with eval_mode(self.gm), _frozen_parameters(self.gm), torch.enable_grad():
                xin = x.detach().requires_grad_(True)
                logits = self.gm(xin)
                if targets is None:
                    t = logits.argmax(1)
                else:
                    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
                    if len(t) != len(logits):
                        raise ValueError(f"{len(t)} targets for {len(logits)} images")
                logits.gather(1, t[:, None]).sum().backward()
        finally:
            self._state["taps"] = None
        missing = [n for n in self.splits if n not in taps.maps]
        if missing:  # a split that does not influence the target logit gets no gradient
            for n in missing:
                sp = self.tm.split(n)
                h, w = (sp.shape[1], sp.shape[2]) if len(sp.shape) == 3 else (1, 1)
                taps.maps[n] = torch.zeros(len(x), h, w)
        self.last_channels, self.last_sums = taps.channels, taps.sums
        return {n: taps.maps[n] for n in self.splits}, logits.detach()


def layer_maps(model: nn.Module, x: torch.Tensor, targets=None, splits: Iterable[str] | None = None, *,
               method: str = "gradcam", reduction: str = "sum") -> dict[str, torch.Tensor]:
    """Raw Grad-CAM maps ``{split name: Tensor(B, h, w)}`` at every split, one forward+backward.

    ``x``: a batch (B, *input_shape). ``targets``: class per image, or None (predicted class).
    ``splits``: split names (default: every candidate with a (C,) or (C, h, w) output).
    Maps are raw: ReLU of the channel-weighted activations, no normalisation, no resizing.
    """
    engine = MapEngine(model, tuple(x.shape[1:]), splits, method, reduction)
    maps, _ = engine(x, targets)
    return maps
