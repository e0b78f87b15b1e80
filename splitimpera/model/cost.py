"""Per-node and per-split profile of a model: FLOPs, parameters, bytes sent, peak activations.

FLOP convention: **one FLOP per multiply-add** (fvcore's count; ResNet-50 at 224×224 is
≈ 4.1 GFLOPs, matching torchvision's published figures). ``torch.utils.flop_counter``
counts two. Element-wise ops (ReLU, add) count zero, as in fvcore.

All figures are per sample (batch 1). Bytes sent: ``tx_bytes`` at fp32, ``tx_bytes_fp16``,
``tx_bytes_int8`` (one byte per element; the ``input`` split sends raw 8-bit pixels);
``output`` always sends the int64 top-1 label.

Memory traffic per node (for the roofline in :mod:`splitimpera.latency.compute`), fp32 batch 1:
``bytes_moved = in_bytes + out_bytes + param_bytes`` — every distinct activation input read
once, the output written once, every floating-point parameter and buffer the node uses
read once (get_attr inputs included). Nodes that only make a view (flatten, reshape,
getitem, eval-mode dropout, identity …, and whose output shares an input's storage) move
nothing; in-place ops (``ReLU(inplace=True)``) read and write their tensor.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import torch
import torch.fx as fx
import torch.nn as nn

from .. import cache
from ..config.op_kinds import OP_CLASSES
from .node_features import conv_features, node_fn, node_kind, pool_features, shape_features
from .splits import INPUT, OUTPUT, PREDICTION_BYTES, TracedModel, attr_value, eval_mode, trace

log = logging.getLogger(__name__)

PROFILE_VERSION = 4
# fvcore reports operators by short name ("conv" for aten::_convolution, "linear" …).
CONV_OPS = {"conv", "_convolution", "conv1d", "conv2d", "conv3d"}
LINEAR_OPS = {"addmm", "mm", "matmul", "bmm", "linear", "einsum", "scaled_dot_product_attention"}
# Columns of the per-node table that profile_model attaches as ``attrs["nodes"]``: all the
# device-independent inputs of the roofline (compute.node_time_s).
ROOFLINE_COLUMNS = ("pos", *(f"flops_{c}" for c in OP_CLASSES), "bytes_moved", "is_layer")
_CONV_FEATURES = ("cin", "cout", "kernel", "stride", "groups", "out_hw")
# And those of the per-kind model (splitimpera.latency.kind_model; kinds and features: model.node_features).
KIND_COLUMNS = ("kind", "fn", "reuse_bytes", "since_macs", "in_bytes", "out_bytes", "param_bytes", *_CONV_FEATURES,
                "module")
# Ops that return a view of their input (no data moved) when their output aliases an input.
_VIEW_FUNCTIONS = {"getitem", "flatten", "reshape", "transpose", "permute", "squeeze", "unsqueeze", "narrow",
                   "chunk", "split", "unbind", "view", "view_as", "expand", "expand_as", "unflatten", "t",
                   "detach", "contiguous", "movedim", "select", "identity", "dropout"}
_VIEW_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                 nn.AlphaDropout)


def op_class(op: str) -> str:
    """``conv``, ``linear`` or ``other``: the efficiency class of an op name (``aten::`` prefix or not)."""
    op = op.removeprefix("aten::")
    if op in CONV_OPS:
        return "conv"
    if op in LINEAR_OPS:
        return "linear"
    return "other"


def _fvcore_nn():
    """``fvcore.nn``, imported without the FutureWarning its import of ``torch.jit.script``
    raises on recent torch (noise to our users: fvcore is ours to import, not theirs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        import fvcore.nn
        import fvcore.nn.jit_handles
    return fvcore.nn


def _sdpa_flop(inputs, outputs) -> int:
    """Multiply-adds of scaled dot-product attention: Q·Kᵀ and A·V."""
    get_shape = _fvcore_nn().jit_handles.get_shape

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
    seen: set[int] = set()
    for n in tm.nodes:
        if n.op in ("call_module", "call_function", "call_method"):
            wname = f"si_node_{tm.info[n].pos}"
            mod = tm.gm.get_submodule(n.target) if n.op == "call_module" else None
            if mod is not None:
                if id(mod) in seen:  # a module called twice: fvcore would count both calls under one name
                    mod = copy.deepcopy(mod, memo={id(t): t for t in (*mod.parameters(), *mod.buffers())})
                seen.add(id(mod))
            root.add_module(wname, _NodeOp(n.op, n.target, mod))
            args = fx.map_arg(n.args, lambda a: env[a])
            kwargs = fx.map_arg(n.kwargs, lambda a: env[a])
            env[n] = g.call_module(wname, args, kwargs)
            names[wname] = tm.info[n].pos
        elif n.op == "get_attr":
            env[n] = g.get_attr(f"base.{n.target}")
        elif n.op == "output":
            out = fx.map_arg(n.args[0], lambda a: env[a])
            # The trace fvcore counts on drops what nothing uses: hand the dead ends back too.
            dead = [env[m] for m in tm.nodes if m.op in ("call_module", "call_function", "call_method")
                    and not m.users and tm.info[m].is_tensor]
            g.output((out, *dead) if dead else out)
        else:
            env[n] = g.node_copy(n, lambda a: env[a])
    return fx.GraphModule(root, g), names


def _node_flops(tm: TracedModel) -> dict[int, dict[str, int]]:
    """{node position: {op class: multiply-adds}} at batch 1, counted by fvcore."""
    FlopCountAnalysis = _fvcore_nn().FlopCountAnalysis

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
            cls[op_class(op)] += int(f)
        out[pos] = dict(cls)
    return out


def _state_bytes(tensors) -> int:
    """Bytes of the distinct floating-point tensors (``num_batches_tracked`` and the like are not read)."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            seen[id(t)] = t.numel() * t.element_size()
    return int(sum(seen.values()))


def _is_view(n: fx.Node, tm: TracedModel) -> bool:
    """True when ``n`` only reinterprets an input: a view-like op whose output aliases an input."""
    if n.op == "call_module":
        if not isinstance(tm.gm.get_submodule(n.target), _VIEW_MODULES):
            return False
    elif getattr(n.target, "__name__", str(n.target)) not in _VIEW_FUNCTIONS:
        return False
    ins = [tm.info[a] for a in n.all_input_nodes if a.op != "get_attr"]
    if any(not i.is_tensor for i in ins):  # getitem of a tuple of views (chunk, split)
        return True
    return tm.info[n].storage_key in {i.storage_key for i in ins}


def _node_bytes(n: fx.Node, tm: TracedModel) -> tuple[int, int, int]:
    """(activation bytes read, parameter/buffer bytes read, bytes moved) of one node, fp32, batch 1."""
    ni = tm.info[n]
    if n.op not in ("call_module", "call_function", "call_method") or not ni.is_tensor:
        return 0, 0, 0
    acts = [a for a in n.all_input_nodes if a.op != "get_attr" and tm.info[a].is_tensor]
    in_bytes = sum(tm.info[a].numel * 4 for a in dict.fromkeys(acts))
    state = [attr_value(tm.gm, a.target) for a in n.all_input_nodes if a.op == "get_attr"]
    if n.op == "call_module":
        mod = tm.gm.get_submodule(n.target)
        state += [*mod.parameters(), *mod.buffers()]
    param_bytes = _state_bytes(state)
    moved = 0 if _is_view(n, tm) else in_bytes + ni.numel * 4 + param_bytes
    return int(in_bytes), param_bytes, int(moved)


def structure_hash(tm: TracedModel) -> str:
    """A short hash of what determines the graph's work (:meth:`TracedModel.structure_key`):
    measured per-node timing tables are matched to a model by it."""
    return cache.key("structure", tm.structure_key())


def _cache_key(tm: TracedModel) -> str:
    return cache.key("profile", PROFILE_VERSION, torch.__version__, tm.structure_key())


def profile_nodes(model: nn.Module | TracedModel, input_shape=None, *, use_cache: bool = True) -> pd.DataFrame:
    """One row per graph node (topological order), indexed by node name.

    Columns: ``pos``, ``op``, ``flops_conv``, ``flops_linear``, ``flops_other``, ``flops``
    (multiply-adds), ``out_bytes`` (fp32 output, per sample), ``in_bytes`` (activation inputs
    read, fp32), ``param_bytes`` (floating-point parameters and buffers read),
    ``bytes_moved`` (memory traffic of the node: in + out + params, 0 for views; see the
    module docstring), ``live_bytes`` (all activations alive while the node runs, aliasing
    counted once), ``is_layer`` (counts toward per-layer overhead), ``macs`` (= ``flops``), and the
    per-kind features of :mod:`splitimpera.model.node_features`: ``kind``, ``fn`` (the operator; a
    linear layer on a single row is ``linear_gemv``), ``cin``, ``cout``, ``kernel``, ``stride``,
    ``groups``, ``out_hw``, ``module``, ``reuse_bytes`` (:func:`_reuse_bytes`) and
    ``since_macs`` (:func:`_since_same_op`).
    """
    tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
    k = _cache_key(tm)
    flops = cache.load("flops", k) if use_cache else None
    if flops is None:
        # fvcore runs the model: in eval mode (BatchNorm statistics untouched), no autograd.
        with eval_mode(tm.gm), torch.no_grad():
            flops = {str(p): v for p, v in _node_flops(tm).items()}
        if use_cache:
            cache.store("flops", k, flops)
    rows = []
    origin: dict[fx.Node, int] = {}  # position of the node that wrote a tensor's data (views followed back)
    reads: list[list[int]] = []  # per row, the origins of its tensor inputs
    for n in tm.nodes:
        ni = tm.info.get(n)
        if ni is None or n.op == "output":  # the output node only hands the value back
            continue
        f = flops.get(str(ni.pos), {})
        alive = [m for m in tm.nodes[:ni.pos + 1]
                 if m.op != "get_attr" and tm.info[m].is_tensor and tm.last_use[m] >= ni.pos]
        storages = {tm.info[m].storage_key: tm.info[m].storage_bytes for m in alive}
        in_bytes, param_bytes, moved = _node_bytes(n, tm)
        compute = n.op in ("call_module", "call_function", "call_method")
        kind = node_kind(n, tm.gm, is_view=_is_view(n, tm)) if compute else "none"
        fn = node_fn(n, tm.gm) if compute else ""
        if kind == "linear" and ni.is_tensor and math.prod(ni.shape[:-1]) == 1:  # one row: matrix × vector
            fn += "_gemv"
        tensor_in = [a for a in n.all_input_nodes if a.op != "get_attr" and tm.info[a].is_tensor]
        first = tm.info[tensor_in[0]] if tensor_in else None
        in_shape = first.shape if first is not None else ()
        reads.append([origin.get(a, tm.info[a].pos) for a in tensor_in])
        origin[n] = origin.get(tensor_in[0], first.pos) if kind == "view" and tensor_in else ni.pos
        if kind.startswith("conv") and n.op == "call_module":
            conv = conv_features(n, tm.gm, ni.shape)
        elif kind == "pool":
            conv = pool_features(n, tm.gm, ni.shape, in_shape)
        elif compute and ni.is_tensor:
            conv = shape_features(ni.shape, in_shape)
        else:
            conv = dict.fromkeys(_CONV_FEATURES, 0)
        rows.append({
            "node": n.name, "pos": ni.pos, "op": n.op,
            **{f"flops_{c}": int(f.get(c, 0)) for c in OP_CLASSES},
            "out_bytes": ni.numel * 4 if ni.is_tensor else 0,
            "in_bytes": in_bytes, "param_bytes": param_bytes, "bytes_moved": moved,
            "live_bytes": int(sum(storages.values())),
            "is_layer": compute and ni.is_tensor,
            "kind": kind, "fn": fn, **conv, "module": int(n.op == "call_module"),
        })
    df = pd.DataFrame(rows).set_index("node")
    df["flops"] = df[[f"flops_{c}" for c in OP_CLASSES]].sum(axis=1)
    df["macs"] = df["flops"]
    df["reuse_bytes"] = _reuse_bytes(df["pos"].to_numpy(), df["bytes_moved"].to_numpy(), reads)
    op = [f"{k}/{f.rstrip('_')}" if f else "" for k, f in zip(df["kind"], df["fn"])]
    df["since_macs"] = _since_same_op(np.array(op, dtype=object), df["macs"].to_numpy())
    return df


def _since_same_op(fn: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Per node, the multiply-adds run since the last node of the same operator ``fn`` (here
    kind/operator, in place or not: all before it when it is the first): the first pooling
    after a long run of convolutions finds its code and data cold, and takes several times
    as long as the same pooling in a squeeze-excite."""
    before = np.concatenate([[0], np.cumsum(macs)])
    last: dict[str, int] = {}
    out = np.zeros(len(fn), dtype=np.int64)
    for r, f in enumerate(fn):
        if not f:
            continue
        out[r] = int(before[r] - before[last[f] + 1]) if f in last else int(before[r])
        last[f] = r
    return out


def _reuse_bytes(pos: np.ndarray, moved: np.ndarray, reads: list[list[int]]) -> np.ndarray:
    """Per node, the bytes moved by the nodes run since its oldest tensor input was written
    (its reuse distance: whether that input can still be in a cache); 0 without tensor inputs."""
    before = np.concatenate([[0], np.cumsum(moved)])  # before[r]: moved by rows < r
    row_of = {int(p): r for r, p in enumerate(pos)}
    out = np.zeros(len(pos), dtype=np.int64)
    for r, origins in enumerate(reads):
        rows = [row_of[o] for o in origins if o in row_of]
        if rows:
            out[r] = int(before[r] - before[min(rows) + 1])
    return out


def _param_spans(tm: TracedModel) -> list[tuple[int, int, int, int]]:
    """(first use, last use, numel, bytes) for each distinct parameter/buffer tensor."""
    spans: dict[int, list] = {}
    for n in tm.nodes:
        if n.op == "call_module":
            mod = tm.gm.get_submodule(n.target)
            tensors = [(p, True) for p in mod.parameters()] + [(b, False) for b in mod.buffers()]
        elif n.op == "get_attr":
            t = attr_value(tm.gm, n.target)
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

    ``attrs["nodes"]`` carries the per-node roofline inputs (:data:`ROOFLINE_COLUMNS` of
    :func:`profile_nodes`, as plain lists so that pandas can copy and compare them): the
    head of a split is every node whose ``pos`` is at most the split's ``index`` (``output``:
    all of them), so :func:`splitimpera.latency.compute.compute_time_s` can sum device-dependent
    node times over any selection of rows (``.loc``, ``.copy()`` keep ``attrs``).
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
    df.attrs["structure"] = structure_hash(tm)
    df.attrs["nodes"] = NodeLists({c: nodes[c].tolist() for c in (*ROOFLINE_COLUMNS, *KIND_COLUMNS)})
    return df


class NodeLists(dict):
    """``attrs["nodes"]``: column name → list, never modified. pandas deep-copies ``attrs`` on
    nearly every operation of a frame that carries them (milliseconds per evaluate for a few
    hundred nodes); a deep copy of this one is itself."""

    def __deepcopy__(self, memo):
        return self


def extra_columns(side: str) -> list[str]:
    """Optional per-split columns for work a bottleneck adds on ``side`` (its encoder on the
    device, ``head_extra_…``; its decoder on the server, ``tail_extra_…``): FLOPs per op
    class, bytes moved and layers, at batch 1."""
    return [*(f"{side}_extra_flops_{c}" for c in OP_CLASSES), f"{side}_extra_bytes_moved", f"{side}_extra_layers"]
