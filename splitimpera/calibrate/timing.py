"""Timing this machine node by node: the executor, the host probes, CPU pinning.

What is timed (CPU, PyTorch eager, fp32, batch 1, eval mode, ``no_grad``, random weights):
every fx node of a traced model is run by a small executor that walks the traced graph like
``torch.fx.Interpreter`` and times each call (``perf_counter_ns`` around the
module/function/method call; looking up arguments is outside the timed region, the call's
own Python and dispatch cost is inside — that is what ``layer_overhead_us`` models). After
``warmup`` untimed runs, each node's time is the median over ``repeats`` runs; a model's
time is the median of as many plain ``gm(x)`` calls.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.fx as fx

from ..errors import UserError
from ..model.cost import profile_nodes
from ..model.splits import TracedModel, attr_value, eval_mode, trace

DEFAULT_REPEATS = 15
DEFAULT_WARMUP = 3
SOURCE = "calibrate"  # where a bad option is reported: `splitimpera calibrate`


@dataclass(frozen=True)
class TimedModel:
    """Measured times of one model on this machine.

    ``nodes`` is :func:`~splitimpera.model.cost.profile_nodes`'s table plus ``measured_s`` (median
    seconds of each node's call; 0 for placeholders and the like) and, from
    :func:`time_models`, ``noise`` (each node's IQR/median); ``total_s`` the median
    seconds of a plain forward of the traced graph, batch 1; ``noise`` its IQR/median;
    ``rounds`` the rounds kept, ``redone`` the disturbed rounds measured again.
    """

    model: str
    nodes: pd.DataFrame
    total_s: float
    noise: float = 0.0
    rounds: int = 0
    redone: int = 0


class _TimedRun:
    """Runs a traced graph node by node, timing each call (ns); values are freed after last use."""

    def __init__(self, tm: TracedModel):
        self.nodes = list(tm.nodes)
        self.calls = []
        for n in self.nodes:
            if n.op == "call_module":
                self.calls.append(tm.gm.get_submodule(n.target))
            elif n.op == "get_attr":
                self.calls.append(attr_value(tm.gm, n.target))
            else:
                self.calls.append(n.target)
        free: dict[int, list] = {}
        for n in self.nodes:
            free.setdefault(tm.last_use[n], []).append(n)
        self.free = [free.get(i, []) for i in range(len(self.nodes))]

    def __call__(self, x: torch.Tensor, times_ns: np.ndarray):
        env = {}
        look = env.__getitem__
        out = None
        for i, n in enumerate(self.nodes):
            op = n.op
            if op == "placeholder":
                env[n] = x
                continue
            if op == "get_attr":
                env[n] = self.calls[i]
                continue
            args = fx.map_arg(n.args, look)
            kwargs = fx.map_arg(n.kwargs, look)
            if op == "output":
                out = args[0]
                break
            fn = self.calls[i]
            if op == "call_method":
                t0 = time.perf_counter_ns()
                v = getattr(args[0], fn)(*args[1:], **kwargs)
                times_ns[i] = time.perf_counter_ns() - t0
            else:
                t0 = time.perf_counter_ns()
                v = fn(*args, **kwargs)
                times_ns[i] = time.perf_counter_ns() - t0
            env[n] = v
            for m in self.free[i]:
                if m is not n:
                    env.pop(m, None)
        return out


@contextmanager
def _quiet_gc():
    """No garbage collection pauses inside timed runs."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_traced(name: str, tm: TracedModel, *, repeats: int = DEFAULT_REPEATS,
                warmup: int = DEFAULT_WARMUP) -> TimedModel:
    """Time every node of ``tm`` and a plain forward on this machine's CPU (see the module doc)."""
    return time_models([(name, tm)], repeats=repeats, warmup=warmup)[0]


def _probe_s(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, n: int = 5) -> float:
    """Median seconds of a small fixed matmul: a yardstick for how busy the machine is right now."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        torch.mm(a, b, out=out)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) * 1e-9


def time_models(models: Sequence[tuple[str, TracedModel]], *, repeats: int = DEFAULT_REPEATS,
                warmup: int = DEFAULT_WARMUP, max_redo: float = 1.0, disturbed: float = 1.3,
                seed: int = 0) -> list[TimedModel]:
    """Time every node of each model and a plain forward, interleaved so that the neighbours'
    noise falls on every model alike.

    Each round runs every model once (node by node, then a plain forward) in a shuffled
    order, between two runs of a small matmul probe. A round is *disturbed* when a probe took
    more than ``disturbed`` × the median probe so far, or the round's plain forwards together
    more than ``disturbed`` × the median of the rounds kept so far (from the fourth on): it is
    discarded and run again (at most ``max_redo`` × ``repeats`` extra rounds). On a machine
    shared with other work, multi-threaded timings suffer most (a parallel region waits for
    its slowest thread): ``--threads 1`` is steadier there. Node times are medians over the kept rounds; ``noise`` of a
    model is the interquartile range of its plain-forward times over their median, and each
    node's ``noise`` column the same ratio of its own times.
    """
    runs = [(name, tm, _TimedRun(tm)) for name, tm in models]
    xs = [torch.randn((1, *tm.input_shape), generator=torch.Generator().manual_seed(0)) for _, tm, _ in runs]
    node_ns = [np.zeros((repeats, len(r.nodes))) for _, _, r in runs]
    total_ns = [np.zeros(repeats) for _ in runs]
    scratch = [np.zeros(len(r.nodes)) for _, _, r in runs]
    g = torch.Generator().manual_seed(1)
    pa, pb, po = torch.randn(128, 128, generator=g), torch.randn(128, 128, generator=g), torch.empty(128, 128)
    rng = np.random.default_rng(seed)
    probes: list[float] = []
    redone, kept, budget = 0, 0, int(max_redo * repeats)
    totals: list[int] = []
    with torch.no_grad(), _quiet_gc():
        for (_, tm, runner), x, sc in zip(runs, xs, scratch):
            with eval_mode(tm.gm):
                for _ in range(warmup):
                    runner(x, sc)
                    tm.gm(x)
        for _ in range(20):
            probes.append(_probe_s(pa, pb, po))
        while kept < repeats:
            p0 = _probe_s(pa, pb, po)
            order = rng.permutation(len(runs))
            row_ns = {}
            for i in order:
                _, tm, runner = runs[i]
                with eval_mode(tm.gm):
                    buf = np.zeros(len(runner.nodes))
                    runner(xs[i], buf)
                    t0 = time.perf_counter_ns()
                    tm.gm(xs[i])
                    row_ns[i] = (buf, time.perf_counter_ns() - t0)
            p1 = _probe_s(pa, pb, po)
            ref = float(np.median(probes))
            probes += [p0, p1]
            total = sum(t for _, t in row_ns.values())
            slow = len(totals) >= 3 and total > disturbed * float(np.median(totals))
            if (max(p0, p1) > disturbed * ref or slow) and redone < budget:
                redone += 1
                continue
            totals.append(total)
            for i, (buf, tot) in row_ns.items():
                node_ns[i][kept] = buf
                total_ns[i][kept] = tot
            kept += 1
    out = []
    for (name, tm, runner), ns, tot in zip(runs, node_ns, total_ns):
        med = np.median(ns, axis=0)
        q1, q3 = np.percentile(ns, [25, 75], axis=0)
        by_name = {n.name: i for i, n in enumerate(runner.nodes)}
        nodes = profile_nodes(tm).copy()
        idx = [by_name[n] for n in nodes.index]
        nodes["measured_s"] = med[idx] * 1e-9
        nodes["noise"] = np.where(med[idx] > 0, (q3 - q1)[idx] / np.maximum(med[idx], 1), 0.0)
        tq1, tmed, tq3 = np.percentile(tot, [25, 50, 75])
        out.append(TimedModel(model=name, nodes=nodes, total_s=float(tmed) * 1e-9,
                               noise=float((tq3 - tq1) / tmed), rounds=repeats, redone=redone))
    return out


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """fp32 matmul rate of this machine (n×n by n×n, median), GFLOP/s at 2 FLOP per multiply-add."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    ts = []
    with torch.inference_mode():
        for _ in range(2):
            torch.mm(a, b, out=out)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            ts.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / float(np.median(ts)) / 1e9


def copy_gbps(mbytes: int = 64, repeats: int = 10) -> float:
    """Large-tensor copy bandwidth (bytes read + written per second), GB/s."""
    numel = mbytes * 1_000_000 // 4
    src, dst = torch.ones(numel), torch.empty(numel)
    ts = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        dst.copy_(src)
        ts.append(time.perf_counter() - t0)
    return 2.0 * numel * 4 / float(np.median(ts[1:])) / 1e9


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_capacity_gb() -> float | None:
    """Physical memory, GB (1e9 bytes), from /proc/meminfo or sysconf; None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def _thread_ids() -> list[int]:
    """This process's thread ids (Linux ``/proc/self/task``); ``[0]`` (the caller) elsewhere."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(cpus) -> dict[int, set]:
    """Every thread of this process on ``cpus`` (affinity is per thread on Linux: torch's
    worker threads, created earlier, would keep theirs). Returns each thread's affinity before."""
    before = {}
    for tid in _thread_ids():
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except OSError:  # a thread that ended meanwhile
            pass
    return before


@contextmanager
def pinned(n: int | None):
    """``n`` torch threads (default: as now) on as many CPUs, the first ``n`` of this process's
    affinity, for every thread of the process (Linux; elsewhere threads only). Yields
    ``(threads, cpus)``; both restored after, for every thread (those created inside too)."""
    old_threads = torch.get_num_threads()
    old_cpus = None
    if n is not None:
        torch.set_num_threads(n)
    threads = torch.get_num_threads()
    cpus: tuple[int, ...] = ()
    per_thread: dict[int, set] = {}
    if hasattr(os, "sched_setaffinity"):
        try:
            old_cpus = os.sched_getaffinity(0)
            cpus = tuple(sorted(old_cpus)[:threads])
            per_thread = _set_affinity(cpus)
        except OSError:
            old_cpus, cpus = None, ()
    try:
        yield threads, cpus
    finally:
        torch.set_num_threads(old_threads)
        if old_cpus is not None:  # each thread as it was; threads born inside: the caller's set
            for tid in _thread_ids():
                try:
                    os.sched_setaffinity(tid, per_thread.get(tid, old_cpus))
                except OSError:
                    pass


@dataclass(frozen=True)
class ModelTiming:
    """A per-node timing table of one model on this machine (see :func:`time_model`).

    ``table``: ``node``, ``pos``, ``kind``, ``measured_s`` (median seconds of the node's call,
    scaled so that the nodes sum to the plain forward), ``raw_s`` (before scaling) and
    ``noise`` (IQR/median of the node's times); ``total_s`` the median plain forward;
    ``noise`` the forward's IQR/median.
    """

    model: str
    input: str
    structure: str
    table: pd.DataFrame
    total_s: float
    noise: float
    threads: int
    cpus: tuple[int, ...]
    repeats: int


def time_model(name: str, input_shape=None, *, num_classes: int | None = None, repeats: int = DEFAULT_REPEATS,
               warmup: int = DEFAULT_WARMUP, threads: int | None = None, search_dir=None) -> ModelTiming:
    """Time ``name`` (a zoo, torchvision or ``module:function`` model, random weights) node by
    node on this machine, pinned as :func:`~splitimpera.calibrate.run.calibrate` is; see :class:`ModelTiming`."""
    from ..model.cost import structure_hash
    from ..model.loading import default_input_shape, load_model
    from ..model.splits import normalize_input_shape

    if repeats < 1:
        raise UserError(f"must be at least 1 (got {repeats})", source=SOURCE, field="--repeats")
    if warmup < 0:
        raise UserError(f"must be at least 0 (got {warmup})", source=SOURCE, field="--warmup")
    if threads is not None and threads < 1:
        raise UserError(f"must be at least 1 (got {threads})", source=SOURCE, field="--threads")
    with pinned(threads) as (n_threads, cpus):  # before torch makes its threads: they inherit the pinning
        try:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = load_model(name, "none", num_classes, search_dir)
        except UserError as e:
            raise UserError(e.message, source=SOURCE, field="--for-model") from None
        try:
            shape = (tuple(normalize_input_shape(input_shape)) if input_shape is not None
                     else tuple(default_input_shape(name, model)))
            tm = trace(model, shape)
        except UserError as e:
            raise e.at(source=SOURCE, field="--input") from None
        (m,) = time_models([(name, tm)], repeats=repeats, warmup=warmup)
    n = m.nodes
    raw = n["measured_s"].to_numpy(dtype=float)
    scale = m.total_s / raw.sum() if raw.sum() > 0 else 1.0
    table = pd.DataFrame({"node": n.index, "pos": n["pos"].to_numpy(), "kind": n["kind"].to_numpy(),
                          "measured_s": raw * scale, "raw_s": raw,
                          "noise": n["noise"].to_numpy() if "noise" in n.columns else 0.0})
    return ModelTiming(model=name, input="x".join(map(str, shape)), structure=structure_hash(tm), table=table,
                       total_s=m.total_s, noise=m.noise, threads=n_threads, cpus=tuple(cpus), repeats=repeats)
