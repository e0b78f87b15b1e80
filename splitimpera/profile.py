"""Per-node and per-split profile of a model: FLOPs, parameters, bytes sent, peak activations.

FLOP convention: **one FLOP per multiply-add** (fvcore's count; ResNet-50 at 224×224 is
≈ 4.1 GFLOPs, matching torchvision's published figures). ``torch.utils.flop_counter``
counts two. Element-wise ops (ReLU, add) count zero, as in fvcore.

All figures are per sample (batch 1). Bytes sent: ``tx_bytes`` at fp32, ``tx_bytes_fp16``,
``tx_bytes_int8`` (one byte per element; the ``input`` split sends raw 8-bit pixels);
``output`` always sends the int64 top-1 label.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pandas as pd
import torch
import torch.fx as fx
import torch.nn as nn

from . import cache
from .splits import INPUT, OUTPUT, PREDICTION_BYTES, TracedModel, trace

log = logging.getLogger(__name__)

PROFILE_VERSION = 2
# fvcore reports operators by short name ("conv" for aten::_convolution, "linear" …).
CONV_OPS = {"conv", "_convolution", "conv1d", "conv2d", "conv3d"}
LINEAR_OPS = {"addmm", "mm", "matmul", "bmm", "linear", "einsum", "scaled_dot_product_attention"}
OP_CLASSES = ("conv", "linear", "other")


def _op_class(op: str) -> str:
    op = op.removeprefix("aten::")
    if op in CONV_OPS:
        return "conv"
    if op in LINEAR_OPS:
        return "linear"
    return "other"


def _sdpa_flop(inputs, outputs) -> int:
    """Multiply-adds of scaled dot-product attention: Q·Kᵀ and A·V."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    lead = int(np.prod(q[:-1]))  # batch × heads × L
    return lead * k[-2] * (q[-1] + v[-1])


class _NodeOp(nn.Module):
    """Runs one fx node's target, so fvcore attributes its FLOPs to this node alone."""

    def __init__(self, op: str, target, module: nn.Module | None = None):
        super().__init__()
        self.op, self.target = op, target
        if module is not None:
            self.mod = module

    def forward(self, *args, **kwargs):
        if self.op == "call_module":
            return self.mod(*args, **kwargs)
        if self.op == "call_function":
            return self.target(*args, **kwargs)
        return getattr(args[0], self.target)(*args[1:], **kwargs)


def _wrapped(tm: TracedModel) -> tuple[fx.GraphModule, dict[str, int]]:
    """A copy of the graph where each compute node calls its own wrapper module."""
    root = nn.Module()
    root.base = tm.gm
    g, env, names = fx.Graph(), {}, {}
    for n in tm.nodes:
        if n.op in ("call_module", "call_function", "call_method"):
            wname = f"si_node_{tm.info[n].pos}"
            mod = tm.gm.get_submodule(n.target) if n.op == "call_module" else None
            root.add_module(wname, _NodeOp(n.op, n.target, mod))
            args = fx.map_arg(n.args, lambda a: env[a])
            kwargs = fx.map_arg(n.kwargs, lambda a: env[a])
            env[n] = g.call_module(wname, args, kwargs)
            names[wname] = tm.info[n].pos
        elif n.op == "get_attr":
            env[n] = g.get_attr(f"base.{n.target}")
        elif n.op == "output":
            g.output(fx.map_arg(n.args[0], lambda a: env[a]))
        else:
            env[n] = g.node_copy(n, lambda a: env[a])
    return fx.GraphModule(root, g), names


def _node_flops(tm: TracedModel) -> dict[int, dict[str, int]]:
    """{node position: {op class: multiply-adds}} at batch 1, counted by fvcore."""
    from fvcore.nn import FlopCountAnalysis

    wgm, names = _wrapped(tm)
    x = torch.randn((1, *tm.input_shape), generator=torch.Generator().manual_seed(0))
    fca = FlopCountAnalysis(wgm, (x,))
    fca.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    out: dict[int, dict[str, int]] = {}
    with torch.no_grad():
        per = fca.by_module_and_operator()
    for wname, pos in names.items():
        ops = per.get(wname, {})
        cls = defaultdict(int)
        for op, f in ops.items():
            cls[_op_class(op)] += int(f)
        out[pos] = dict(cls)
    return out


def _cache_key(tm: TracedModel) -> str:
    shapes = [(k, list(v.shape)) for k, v in tm.model.state_dict().items()]
    return cache.key("profile", PROFILE_VERSION, torch.__version__, tm.gm.code, shapes, list(tm.input_shape))


def profile_nodes(model: nn.Module | TracedModel, input_shape=None, *, use_cache: bool = True) -> pd.DataFrame:
    """One row per graph node (topological order), indexed by node name.

    Columns: ``pos``, ``op``, ``flops_conv``, ``flops_linear``, ``flops_other``, ``flops``
    (multiply-adds), ``out_bytes`` (fp32 output, per sample), ``live_bytes`` (all activations
    alive while the node runs, aliasing counted once), ``is_layer`` (counts toward per-layer
    overhead).
    """
    tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
    k = _cache_key(tm)
    flops = cache.load("flops", k) if use_cache else None
    if flops is None:
        flops = {str(p): v for p, v in _node_flops(tm).items()}
        if use_cache:
            cache.store("flops", k, flops)
    rows = []
    for n in tm.nodes:
        ni = tm.info.get(n)
        if ni is None:  # output node
            continue
        f = flops.get(str(ni.pos), {})
        alive = [m for m in tm.nodes[:ni.pos + 1]
                 if m.op != "get_attr" and tm.info[m].is_tensor and tm.last_use[m] >= ni.pos]
        storages = {tm.info[m].storage_key: tm.info[m].storage_bytes for m in alive}
        rows.append({
            "node": n.name, "pos": ni.pos, "op": n.op,
            **{f"flops_{c}": int(f.get(c, 0)) for c in OP_CLASSES},
            "out_bytes": ni.numel * 4 if ni.is_tensor else 0,
            "live_bytes": int(sum(storages.values())),
            "is_layer": n.op in ("call_module", "call_function", "call_method") and ni.is_tensor,
        })
    df = pd.DataFrame(rows).set_index("node")
    df["flops"] = df[[f"flops_{c}" for c in OP_CLASSES]].sum(axis=1)
    return df


def _param_spans(tm: TracedModel) -> list[tuple[int, int, int, int]]:
    """(first use, last use, numel, bytes) for each distinct parameter/buffer tensor."""
    spans: dict[int, list] = {}
    for n in tm.nodes:
        if n.op == "call_module":
            mod = tm.gm.get_submodule(n.target)
            tensors = [(p, True) for p in mod.parameters()] + [(b, False) for b in mod.buffers()]
        elif n.op == "get_attr":
            t = tm.gm
            for part in n.target.split("."):
                t = getattr(t, part)
            if not isinstance(t, torch.Tensor):
                continue
            tensors = [(t, isinstance(t, nn.Parameter))]
        else:
            continue
        pos = tm.info[n].pos
        use_end = tm.last_use[n] if n.op == "get_attr" else pos
        for t, is_param in tensors:
            s = spans.setdefault(id(t), [pos, use_end, t.numel() if is_param else 0,
                                         t.numel() * t.element_size()])
            s[0], s[1] = min(s[0], pos), max(s[1], use_end)
    return [tuple(s) for s in spans.values()]


def profile_model(model: nn.Module | TracedModel, input_shape=None, *, use_cache: bool = True) -> pd.DataFrame:
    """Per-split profile, indexed by split name in topological order.

    Columns: ``index`` (graph position), ``op``, ``shape`` (sent tensor, per sample),
    ``head_flops``/``tail_flops`` (multiply-adds, fvcore) and their per-op-class parts
    ``head_flops_conv`` … ``tail_flops_other``, ``head_layers``/``tail_layers`` (executed
    ops), ``tx_bytes`` (fp32), ``tx_bytes_fp16``, ``tx_bytes_int8``, ``head_params``/
    ``tail_params`` (parameter counts; a parameter used on both sides counts on both),
    ``head_state_bytes``/``tail_state_bytes`` (parameters and buffers, bytes),
    ``head_peak_act_bytes`` (peak of live activations while the head runs, fp32, batch 1).
    """
    tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
    nodes = profile_nodes(tm, use_cache=use_cache)
    pos = nodes["pos"].to_numpy()
    cum = {c: np.cumsum(nodes[f"flops_{c}"].to_numpy()) for c in OP_CLASSES}
    cum_layers = np.cumsum(nodes["is_layer"].to_numpy().astype(int))
    peak = np.maximum.accumulate(nodes["live_bytes"].to_numpy())
    spans = _param_spans(tm)
    first = np.array([s[0] for s in spans]) if spans else np.zeros(0)
    last = np.array([s[1] for s in spans]) if spans else np.zeros(0)
    numel = np.array([s[2] for s in spans]) if spans else np.zeros(0)
    nbytes = np.array([s[3] for s in spans]) if spans else np.zeros(0)
    rows = []
    for sp in tm.candidates:
        # Row of the last head node in `nodes` (`output`: the whole graph).
        i = len(nodes) - 1 if sp.name == OUTPUT else int(np.searchsorted(pos, sp.index))
        at = sp.index if sp.name != OUTPUT else pos[-1] + 1
        row = {"split": sp.name, "index": sp.index, "op": sp.op,
               "shape": "x".join(map(str, sp.shape)) if sp.shape else "1"}
        for c in OP_CLASSES:
            head = int(cum[c][i])
            row[f"head_flops_{c}"], row[f"tail_flops_{c}"] = head, int(cum[c][-1] - head)
        row["head_flops"] = sum(row[f"head_flops_{c}"] for c in OP_CLASSES)
        row["tail_flops"] = sum(row[f"tail_flops_{c}"] for c in OP_CLASSES)
        row["head_layers"], row["tail_layers"] = int(cum_layers[i]), int(cum_layers[-1] - cum_layers[i])
        numel_sent = sp.tx_bytes // 4
        if sp.name == OUTPUT:
            row.update(tx_bytes=PREDICTION_BYTES, tx_bytes_fp16=PREDICTION_BYTES, tx_bytes_int8=PREDICTION_BYTES)
        else:
            row.update(tx_bytes=sp.tx_bytes, tx_bytes_fp16=numel_sent * 2, tx_bytes_int8=numel_sent)
        on_head = first <= (sp.index if sp.name != INPUT else -1)
        on_tail = last > (sp.index if sp.name != OUTPUT else at)
        if sp.name == INPUT:
            on_head = np.zeros_like(on_head, dtype=bool)
        row["head_params"], row["tail_params"] = int(numel[on_head].sum()), int(numel[on_tail].sum())
        row["head_state_bytes"], row["tail_state_bytes"] = int(nbytes[on_head].sum()), int(nbytes[on_tail].sum())
        row["head_peak_act_bytes"] = int(peak[i])
        rows.append(row)
    df = pd.DataFrame(rows).set_index("split")
    df.attrs["flop_convention"] = "fvcore: 1 FLOP = 1 multiply-add"
    df.attrs["input_shape"] = list(tm.input_shape)
    return df
