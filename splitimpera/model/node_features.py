"""What kind of operator each graph node is, and the features a per-kind latency model needs.

The per-kind compute model (:mod:`splitimpera.latency.kind_model`) predicts a node's time from
its kind and a few numbers about it, as nn-Meter does per kernel: a depthwise convolution
runs at a fraction of a dense one's rate, a concatenation or an add costs its memory
traffic, a reshape costs only its dispatch. The kinds (:data:`~splitimpera.config.op_kinds.OP_KINDS`):

``conv``        dense convolution (``groups == 1``)
``conv_dw``     depthwise convolution (``groups == in_channels``, more than one group)
``conv_group``  grouped convolution (1 < ``groups`` < ``in_channels``)
``linear``      fully connected layer (``nn.Linear``, ``F.linear``)
``matmul``      matrix products of activations (``matmul``, ``bmm``, attention products)
``attention``   a whole ``nn.MultiheadAttention`` (fx keeps it as one node)
``norm``        batch, layer, group and instance norm
``act``         element-wise activations (ReLU, GELU, SiLU, Hardswish, sigmoid, softmax …)
``pool``        max/average/adaptive pooling and ``mean`` (the kernel and stride are features)
``eltwise``     element-wise arithmetic between tensors (add, mul …)
``concat``      ``torch.cat``/``stack``
``view``        nodes that only make a view (flatten, reshape of a contiguous tensor, getitem,
                eval-mode dropout …): no data moved
``copy``        layout changes that copy (``contiguous``, reshape of a permuted tensor …)
``other``       anything else

Features per node (columns :data:`FEATURE_COLUMNS` of
:func:`splitimpera.model.cost.profile_nodes`): ``macs`` (fvcore multiply-adds),
``bytes_moved``, ``in_bytes``, ``out_bytes``, ``param_bytes`` (fp32, batch 1; see
:mod:`splitimpera.model.cost`); ``cin``, ``cout``, ``kernel`` (kh·kw), ``stride``, ``groups``
and ``out_hw`` (output pixels) — a convolution's or pooling's own, else the channels and
pixels of the node's input and output shapes (:func:`shape_features`); ``module``
(1 for an ``nn.Module`` call, whose ``__call__`` costs more than a function's); ``fn``,
the operator itself (:func:`node_fn`): within one kind a SiLU costs several times a ReLU
per element, a 3×3 max pooling several times a global average, and an in-place op skips
allocating its output; and the node's context, from :func:`splitimpera.model.cost.profile_nodes`:
``reuse_bytes`` (bytes moved since its oldest input was written: is that input still in
cache?) and ``since_macs`` (multiply-adds run since its operator last ran: is its code
still warm?).
"""

from __future__ import annotations

import math

import torch.fx as fx
import torch.nn as nn


FEATURE_COLUMNS = ("kind", "fn", "macs", "bytes_moved", "in_bytes", "out_bytes", "param_bytes",
                   "cin", "cout", "kernel", "stride", "groups", "out_hw", "module", "reuse_bytes", "since_macs")

_ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.GELU, nn.SiLU,
                nn.Sigmoid, nn.Tanh, nn.ELU, nn.Softmax, nn.LogSoftmax, nn.Mish, nn.Softplus)
_NORM_MODULES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
                 nn.LocalResponseNorm)
_POOL_MODULES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                 nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
_ACT_FUNCS = {"relu", "relu_", "relu6", "hardswish", "hardsigmoid", "leaky_relu", "hardtanh", "clamp", "clamp_", "gelu",
              "silu", "sigmoid", "sigmoid_", "tanh", "softmax", "log_softmax", "elu", "mish", "softplus"}
_POOL_FUNCS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "amax", "sum"}
_ELTWISE_FUNCS = {"add", "add_", "iadd", "sub", "isub", "mul", "mul_", "imul", "truediv", "div", "floordiv",
                  "pow", "neg", "exp", "sqrt", "rsqrt", "where", "abs", "masked_fill", "expand_as"}
_MATMUL_FUNCS = {"matmul", "bmm", "mm", "baddbmm", "einsum", "scaled_dot_product_attention"}
_NORM_FUNCS = {"layer_norm", "batch_norm", "group_norm", "instance_norm", "normalize"}
_CONCAT_FUNCS = {"cat", "concat", "stack"}
_COPY_FUNCS = {"contiguous", "clone", "reshape", "flatten", "permute", "transpose", "view", "to", "roll", "pad",
               "interpolate", "channel_shuffle"}


def target_name(n: fx.Node) -> str:
    """What a node calls, by name: the function's or method's ``__name__``, else its type's."""
    t = n.target
    return t if isinstance(t, str) else getattr(t, "__name__", type(t).__name__)


def node_kind(n: fx.Node, gm: fx.GraphModule, *, is_view: bool) -> str:
    """The kind (one of :data:`~splitimpera.config.op_kinds.OP_KINDS`) of a compute node; ``is_view``:
    it only reinterprets an input."""
    if is_view:
        return "view"
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if isinstance(m, nn.modules.conv._ConvNd):
            if m.groups == 1:
                return "conv"
            return "conv_dw" if m.groups == m.in_channels else "conv_group"
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, nn.MultiheadAttention):
            return "attention"
        if isinstance(m, _NORM_MODULES):
            return "norm"
        if isinstance(m, _ACT_MODULES):
            return "act"
        if isinstance(m, _POOL_MODULES):
            return "pool"
        if isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)):
            return "copy"
        return "other"
    name = target_name(n).lower()
    if name in ("conv1d", "conv2d", "conv3d"):
        groups = n.kwargs.get("groups", n.args[6] if len(n.args) > 6 else 1)
        return "conv" if groups == 1 else "conv_group"
    if name == "linear":
        return "linear"
    if name in _MATMUL_FUNCS:
        return "matmul"
    if name in _NORM_FUNCS:
        return "norm"
    if name in _ACT_FUNCS:
        return "act"
    if name in _POOL_FUNCS:
        return "pool"
    if name in _ELTWISE_FUNCS:
        return "eltwise"
    if name in _CONCAT_FUNCS:
        return "concat"
    if name in _COPY_FUNCS:
        return "copy"
    return "other"


def shape_features(out_shape, in_shape=None) -> dict[str, int]:
    """What the output's (and first input's) per-sample shapes say of any node: ``cout`` and
    ``out_hw`` from a (C, H, W…) output, ``cin`` from the input; kernel, stride and groups 1."""
    out_shape, in_shape = tuple(out_shape or ()), tuple(in_shape or ())
    hw = 1
    for s in out_shape[1:]:
        hw *= int(s)
    return {"cin": int(in_shape[0]) if len(in_shape) >= 2 else 0, "cout": int(out_shape[0]) if len(out_shape) >= 2 else 0,
            "kernel": 1, "stride": 1, "groups": 1, "out_hw": hw if len(out_shape) >= 2 else 0}


def pool_features(n: fx.Node, gm: fx.GraphModule, out_shape, in_shape) -> dict[str, int]:
    """:func:`shape_features` with a pooling module's kernel (kh·kw) and stride."""
    f = shape_features(out_shape, in_shape)
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        k, st = getattr(m, "kernel_size", None), getattr(m, "stride", None)
        if k is not None:
            k = (k,) * max(len(out_shape) - 1, 1) if isinstance(k, int) else tuple(k)
            f["kernel"] = int(math.prod(k))
        if st is not None:
            f["stride"] = int(st if isinstance(st, int) else st[0])
    return f


def conv_features(n: fx.Node, gm: fx.GraphModule, out_shape) -> dict[str, int]:
    """``cin``, ``cout``, ``kernel``, ``stride``, ``groups``, ``out_hw`` of a convolution module node."""
    m = gm.get_submodule(n.target)
    k = 1
    for s in m.kernel_size:
        k *= int(s)
    hw = 1
    for s in tuple(out_shape)[1:]:  # per-sample shape (C, H, W)
        hw *= int(s)
    return {"cin": int(m.in_channels), "cout": int(m.out_channels), "kernel": k, "stride": int(m.stride[0]),
            "groups": int(m.groups), "out_hw": hw}


# nn.Module classes named by the function they call (else the class name, lower case).
_MODULE_FN = {"ReLU": "relu", "ReLU6": "relu6", "Hardswish": "hardswish", "Hardsigmoid": "hardsigmoid",
              "LeakyReLU": "leaky_relu", "PReLU": "prelu", "Hardtanh": "hardtanh", "GELU": "gelu", "SiLU": "silu",
              "Sigmoid": "sigmoid", "Tanh": "tanh", "ELU": "elu", "Softmax": "softmax", "LogSoftmax": "log_softmax",
              "Mish": "mish", "Softplus": "softplus", "Flatten": "flatten", "Unflatten": "unflatten",
              "Identity": "identity", "Dropout": "dropout", "LocalResponseNorm": "local_response_norm",
              "MultiheadAttention": "multi_head_attention_forward", "Linear": "linear"}
_ALIASES = {"iadd": "add_", "imul": "mul_", "isub": "sub_", "truediv": "div", "concat": "cat",
            "conv1d": "conv", "conv2d": "conv", "conv3d": "conv"}


def node_fn(n: fx.Node, gm: fx.GraphModule) -> str:
    """The operator a compute node runs, lower case, as torch names its function: ``relu``,
    ``silu``, ``max_pool2d``, ``batch_norm``, ``add``, ``permute``, ``getitem`` …; a trailing
    ``_`` when it works in place (``nn.ReLU(inplace=True)``, ``add_``, ``+=``)."""
    inplace = False
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        cls = type(m).__name__
        if isinstance(m, nn.modules.conv._ConvNd):
            name = "conv"
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            name = "batch_norm"
        elif isinstance(m, nn.modules.instancenorm._InstanceNorm):
            name = "instance_norm"
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            name = "layer_norm" if isinstance(m, nn.LayerNorm) else "group_norm"
        elif isinstance(m, _POOL_MODULES):
            name = {"MaxPool": "max_pool", "AvgPool": "avg_pool", "AdaptiveAvgPool": "adaptive_avg_pool",
                    "AdaptiveMaxPool": "adaptive_max_pool"}.get(cls[:-2], cls[:-2].lower()) + cls[-2:].lower()
        elif cls == "GELU" and getattr(m, "approximate", "none") != "none":
            name = "gelu_tanh"
        else:
            name = _MODULE_FN.get(cls, cls.lower())
        inplace = bool(getattr(m, "inplace", False))
    else:
        name = target_name(n).lower()
        name = _ALIASES.get(name, name)
        inplace = n.kwargs.get("inplace") is True
        if name == "gelu" and n.kwargs.get("approximate", "none") != "none":
            name = "gelu_tanh"
    if inplace and not name.endswith("_"):
        name += "_"
    return name
