"""Candidate splits of a model and exact head/tail construction on its torch.fx graph.

A split is named by the torch.fx node name of the last node in the head. A cut after node
*n* is valid when *n* is the only value computed so far that later nodes still need (module
parameters and buffers, ``get_attr`` nodes, live on both sides and are never sent). Two
degenerate splits always exist: ``input`` (everything on the server, the raw input is sent)
and ``output`` (everything on the device, only the top-1 prediction is sent, as int64).

Shapes in :class:`SplitPoint` are per sample (no batch dimension); bytes are at batch 1.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..config.scenario import parse_shape_text  # noqa: F401  (re-exported)
from ..errors import UserError, first_line

log = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "output"
PREDICTION_BYTES = 8  # the `output` split sends the top-1 class index as int64


@dataclass(frozen=True)
class SplitPoint:
    """One candidate cut.

    ``index`` is the position of the head's last node in the graph's topological order
    (``input`` is 0, ``output`` is one past the last compute node); ``shape`` is the sent
    tensor's shape per sample; ``tx_bytes`` its size at fp32 (``output``: the int64 label),
    batch 1.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    tx_bytes: int
    op: str = ""


@dataclass
class NodeInfo:
    """What one run of the graph at batch 1 tells about a node."""

    node: fx.Node
    pos: int
    is_tensor: bool
    shape: tuple[int, ...] = ()
    dtype: torch.dtype | None = None
    numel: int = 0
    storage_key: int | None = None
    storage_bytes: int = 0


@dataclass
class TracedModel:
    """A traced model with per-node metadata from one batch-1 run (see :func:`trace`)."""

    model: nn.Module
    gm: fx.GraphModule
    input_shape: tuple[int, ...]
    nodes: list[fx.Node]
    info: dict[fx.Node, NodeInfo]
    last_use: dict[fx.Node, int]
    candidates: list[SplitPoint]
    output_value: Any

    @property
    def output_width(self) -> int | None:
        """The model's number of outputs per sample (classes), from the tracing run."""
        out = self.output_value
        return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() >= 1 else None

    def structure_key(self) -> list:
        """What determines the graph's arithmetic besides the weights' values, for cache keys:
        the graph code, every called module's configuration (stride, padding, kernel … are in
        its repr), parameter shapes, and every node's output shape."""
        mods = [repr(self.gm.get_submodule(n.target)) for n in self.nodes if n.op == "call_module"]
        shapes = [(k, list(v.shape)) for k, v in self.model.state_dict().items()]
        outs = [(n.name, list(self.info[n].shape)) for n in self.nodes if n in self.info and self.info[n].is_tensor]
        return [self.gm.code, mods, shapes, outs, list(self.input_shape)]

    def node(self, name: str) -> fx.Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def split(self, name: str) -> SplitPoint:
        for sp in self.candidates:
            if sp.name == name:
                return sp
        known = ", ".join(s.name for s in self.candidates[:12])
        more = "…" if len(self.candidates) > 12 else ""
        raise UserError(f"unknown split {name!r} (candidates: {known}{more})")


def attr_value(gm: nn.Module, target: str):
    """The object a ``get_attr`` node reads: ``gm.<dotted target>``."""
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def normalize_input_shape(input_shape) -> tuple[int, ...]:
    """Per-sample shape, e.g. ``(3, 224, 224)``; also accepts ``"3x224x224"``."""
    if isinstance(input_shape, str):
        try:
            shape = parse_shape_text(input_shape)
        except ValueError:
            raise UserError(f"bad input shape {input_shape!r}: write it like 3x224x224") from None
    else:
        shape = tuple(int(p) for p in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise UserError(f"bad input shape {input_shape!r}: every dimension must be a positive integer")
    return shape


class _Recorder(fx.Interpreter):
    """Runs the graph once, recording each node's output metadata."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.info: dict[fx.Node, NodeInfo] = {}
        self._pos = {n: i for i, n in enumerate(gm.graph.nodes)}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        ni = NodeInfo(node=n, pos=self._pos[n], is_tensor=isinstance(out, torch.Tensor))
        if ni.is_tensor:
            ni.shape = tuple(out.shape[1:]) if out.dim() > 0 else ()
            ni.dtype = out.dtype
            ni.numel = out[0].numel() if out.dim() > 0 else 1
            st = out.untyped_storage()
            ni.storage_key = st.data_ptr()
            ni.storage_bytes = st.nbytes()
        self.info[n] = ni
        return out


# torch.fx's tracer patches torch.nn.Module.__call__ (and friends) process-wide while it runs:
# a module called in another thread meanwhile is routed to this tracer ("module is not
# installed as a submodule"). Traces here are taken one at a time, the recording run with
# them (a reentrant lock: _trace calls _symbolic_trace). A plain forward in another thread
# during a trace is still exposed: trace before starting threads that run models.
_TRACE_LOCK = threading.RLock()


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        with _TRACE_LOCK:
            return fx.symbolic_trace(model)
    except Exception as e:
        msg = first_line(e)
        raise UserError(f"model cannot be traced with torch.fx ({e.__class__.__name__}: {msg}); "
                        "data-dependent control flow must be removed or wrapped") from None


def trace(model: nn.Module, input_shape) -> TracedModel:
    """Trace ``model`` (eval mode) and find its candidate splits.

    Runs the model once on a seeded random input of shape ``(1, *input_shape)``.
    """
    shape = normalize_input_shape(input_shape)
    with _TRACE_LOCK, eval_mode(model):  # the graph is traced in eval mode; the caller's modes come back
        return _trace(model, shape)


@contextmanager
def eval_mode(module: nn.Module):
    """Eval mode for the duration, then every submodule's own mode back (they may be shared)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _trace(model: nn.Module, shape: tuple[int, ...]) -> TracedModel:
    gm = _symbolic_trace(model)
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UserError(f"models with {len(placeholders)} inputs are not supported (need exactly one)")
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
    rec = _Recorder(gm)
    try:
        with torch.no_grad():
            out = rec.run(x)
    except Exception as e:
        msg = first_line(e)
        raise UserError(f"input shape {'x'.join(map(str, shape))} does not fit the model: {msg}",
                        field="model.input_shape") from None
    pos = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((pos[u] for u in n.users), default=pos[n]) for n in nodes}
    tm = TracedModel(model=model, gm=gm, input_shape=shape, nodes=nodes, info=rec.info,
                     last_use=last_use, candidates=[], output_value=out)
    tm.candidates = _candidates(tm)
    return tm


def _candidates(tm: TracedModel) -> list[SplitPoint]:
    cands: list[SplitPoint] = []
    # Largest last use among non-constant nodes before position i: a cut after i is valid
    # iff nothing before i is still needed after i, and node i itself is.
    reach_before = -1
    out_node = tm.nodes[-1]
    for i, n in enumerate(tm.nodes):
        if n.op == "output":
            break
        ni = tm.info.get(n)
        valid = (
            n.op != "get_attr"
            and reach_before <= i
            and tm.last_use[n] > i
            and ni is not None and ni.is_tensor
            and n is not out_node.args[0]  # cutting after the last node is the `output` split
        )
        if valid:
            name = INPUT if n.op == "placeholder" else n.name
            cands.append(SplitPoint(name=name, index=i, shape=ni.shape, tx_bytes=ni.numel * 4,
                                    op=_describe(n, tm.gm)))
        if n.op != "get_attr":
            reach_before = max(reach_before, tm.last_use[n])
    final = out_node.args[0]
    final_pos = tm.nodes.index(final) if isinstance(final, fx.Node) else len(tm.nodes) - 1
    # The last node (usually the classifier) is a valid cut too: it sends the logits.
    if isinstance(final, fx.Node) and tm.info[final].is_tensor and final.op != "placeholder":
        fi = tm.info[final]
        cands.append(SplitPoint(name=final.name, index=final_pos, shape=fi.shape, tx_bytes=fi.numel * 4,
                                op=_describe(final, tm.gm)))
    cands.append(SplitPoint(name=OUTPUT, index=len(tm.nodes) - 1, shape=(), tx_bytes=PREDICTION_BYTES,
                            op="top-1 prediction"))
    return cands


def _describe(n: fx.Node, gm: fx.GraphModule) -> str:
    if n.op == "placeholder":
        return "input"
    if n.op == "call_module":
        return type(gm.get_submodule(n.target)).__name__
    if n.op == "call_function":
        return getattr(n.target, "__name__", str(n.target))
    return str(n.target)


def find_splits(model: nn.Module, input_shape) -> list[SplitPoint]:
    """Candidate splits of ``model`` for per-sample ``input_shape`` (C, H, W), topological order."""
    return trace(model, input_shape).candidates


def head_tail(tm: TracedModel, sp: SplitPoint) -> tuple[nn.Module, nn.Module]:
    """``(head, tail)`` GraphModules of a traced model cut after ``sp``, sharing its parameters
    (what :func:`split_model` returns, for callers that already hold the trace)."""
    gm = tm.gm
    if sp.name == OUTPUT:
        return gm, nn.Identity()
    if sp.name == INPUT:
        return nn.Identity(), gm
    cut = tm.nodes[sp.index]
    k = sp.index
    head_g, env = fx.Graph(), {}
    for n in tm.nodes[:k + 1]:
        env[n] = head_g.node_copy(n, lambda a: env[a])
    head_g.output(env[cut])

    tail_g, tenv = fx.Graph(), {}
    tenv[cut] = tail_g.placeholder(cut.name)

    def lookup(a: fx.Node) -> fx.Node:
        if a not in tenv:
            if a.op != "get_attr":  # cannot happen for a valid cut
                raise AssertionError(f"{a.name} is live across the cut {cut.name}")
            tenv[a] = tail_g.node_copy(a)
        return tenv[a]

    for n in tm.nodes[k + 1:]:
        if n.op == "output":
            tail_g.output(fx.map_arg(n.args[0], lookup))
        else:
            tenv[n] = tail_g.node_copy(n, lookup)
    head = fx.GraphModule(gm, head_g, class_name="Head")
    tail = fx.GraphModule(gm, tail_g, class_name="Tail")
    return head, tail


def split_model(model: nn.Module, split: str | SplitPoint, input_shape) -> tuple[nn.Module, nn.Module]:
    """``(head, tail)`` for a split name, with ``tail(head(x))`` equal to ``model(x)``.

    Head and tail share parameters with ``model`` (nothing is copied). ``output`` gives the
    whole model as head and an identity tail; ``input`` the reverse.
    """
    tm = model if isinstance(model, TracedModel) else trace(model, input_shape)
    sp = tm.split(split if isinstance(split, str) else split.name)
    return head_tail(tm, sp)
