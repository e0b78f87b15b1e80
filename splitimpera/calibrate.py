"""Measure this machine layer by layer and fit a device profile (``splitimpera calibrate``).

What is measured (CPU, PyTorch eager, fp32, batch 1, eval mode, ``no_grad``, random
weights): every fx node of a few torchvision models is run by a small executor that walks
the traced graph like ``torch.fx.Interpreter`` and times each call (``perf_counter_ns``
around the module/function/method call; looking up arguments is outside the timed region,
the call's own Python and dispatch cost is inside — that is what ``layer_overhead_us``
models). After ``warmup`` untimed runs, each node's time is the median over ``repeats``
runs; a model's time is the median of as many plain ``gm(x)`` calls.

The fit (:func:`fit_roofline`) takes the per-node roofline of :mod:`splitimpera.latency.compute`::

    t_i = max(Σ_c F_ic · a_c,  B_i · β) + o          (layers only)

with ``a_c`` seconds per multiply-add of op class ``c``, ``β`` seconds per byte and ``o``
seconds per layer, all ≥ 0. It alternates two steps, as k-plane regression does: (1)
given which bound each layer is on, the model is linear in (a, β, o): a non-negative
least-absolute-deviations fit of the *relative* residuals (each row divided by its measured
time, so a 5 µs ReLU and a 5 ms convolution count alike; L1 so that the few layers a busy
machine slowed down do not drag the fit), solved as a linear program (SciPy's HiGHS); (2)
re-assign each layer to its larger term. It starts from "layers with FLOPs are compute
bound", stops when an assignment repeats, and keeps the iterate with the smallest mean
|relative residual|. Then ``efficiency_c = 2 / (a_c · peak)`` (``peak_gflops`` counts 2 FLOP
per multiply-add), ``bandwidth = 1/β``, ``layer_overhead = o``. A class that never binds in
the fit set (no compute-bound layer) gets efficiency 1 and an ``estimates`` line; a class
faster than the measured matmul peak raises ``peak_gflops`` to its rate (so efficiency ≤ 1).

The error check runs the fitted profile on models *held out* of the fit: median absolute
percentage error per layer and per whole model (against the plain forward time), beside
the same figures for the flop-only model (``Σ_c F_ic a_c + o``) fitted to the same data.
"""

from __future__ import annotations

import copy
import datetime as _dt
import io
import gc
import logging
import os
import platform
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.fx as fx
import yaml
from pydantic import ValidationError

from .atomic import atomic_write
from .errors import UserError
from .latency.kinds import nnlad as _nnlad
from .model.cost import OP_CLASSES, profile_nodes
from .config.hardware import DeviceProfile, format_validation_error
from .latency.compute import node_time_s
from .model.splits import TracedModel, attr_value, eval_mode, trace

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Warnings said once, and fits a reader should not trust blindly (issue 17)

# A fitted figure past these is more likely a fit artefact (caches, a layer class the fit
# models barely exercise) than this machine: said in one line, the profile is still written.
PLAUSIBLE_MAX_EFFICIENCY = 0.95  # compute.efficiency.* at or above: every FLOP at peak
PLAUSIBLE_GBPS_PER_CORE = 12.5  # memory bandwidth per core: ~100 GB/s on 8 cores (a laptop-class CPU)


def once(lines: Sequence[str]) -> list[str]:
    """``lines`` in order, each only the first time it appears."""
    return list(dict.fromkeys(lines))


def implausible(data: dict, cores: int | None = None) -> list[str]:
    """One line per fitted figure of a device profile mapping (``profile_from_fit``'s) that is
    implausible for a machine with ``cores`` CPU cores (default: this one's): memory bandwidth
    above :data:`PLAUSIBLE_GBPS_PER_CORE` per core (at least 100 GB/s allowed), an efficiency at
    or above :data:`PLAUSIBLE_MAX_EFFICIENCY`."""
    cores = cores or os.cpu_count() or 1
    out = []
    bw = float((data.get("memory") or {}).get("bandwidth_gbps") or 0.0)
    limit = max(100.0, PLAUSIBLE_GBPS_PER_CORE * cores)
    if bw > limit:
        out.append(f"memory.bandwidth_gbps {bw:.4g} GB/s is implausible for {cores} cores (over {limit:.4g}): "
                   "likely cache-resident layers, not DRAM; check it or set it by hand")
    eff = (data.get("compute") or {}).get("efficiency") or {}
    high = [f"{k} {float(v):.3g}" for k, v in eff.items() if float(v) >= PLAUSIBLE_MAX_EFFICIENCY]
    if high:
        out.append(f"compute.efficiency {', '.join(high)} is implausible (at or near the measured peak for every "
                   "layer): the fit models may barely exercise that class; check it or set it by hand")
    return out


# The fit set covers the kinds users meet: plain convolutions (resnet18, vgg11), depthwise and
# squeeze-excite (mobilenet_v3_small), grouped (regnet_x_400mf), concat-heavy inception
# blocks (squeezenet1_0, googlenet) and transformer blocks (vit_b_16 at 112×112); and seven
# seeded random networks (splitimpera.model.synthnets), one per common activation, that put
# the same blocks together in other widths, orders and contexts.
SYNTHETIC_FIT_MODELS = tuple(f"splitimpera.model.synthnets:net_{i}" for i in range(7))
DEFAULT_FIT_MODELS = ("resnet18", "mobilenet_v3_small", "vgg11", "squeezenet1_0", "googlenet", "regnet_x_400mf",
                      "vit_b_16@3x112x112", *SYNTHETIC_FIT_MODELS)
# Held out: 9 of the 12 are depthwise-, grouped- or branch-heavy.
DEFAULT_HOLDOUT_MODELS = ("efficientnet_b0", "resnet50", "densenet121", "mobilenet_v2", "shufflenet_v2_x1_0",
                          "mnasnet1_0", "resnet34", "regnet_y_400mf", "mobilenet_v3_large", "alexnet",
                          "convnext_tiny", "efficientnet_b1")
DEFAULT_INPUT_SHAPE = (3, 224, 224)
DEFAULT_REPEATS = 15
DEFAULT_WARMUP = 3
SOURCE = "calibrate"
TABLE_FLOAT_FORMAT = "%.6g"  # the residual table's numbers, in memory and on disk alike


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Measurement:
    """Measured times of one model on this machine.

    ``nodes`` is :func:`~splitimpera.model.cost.profile_nodes`'s table plus ``measured_s`` (median
    seconds of each node's call; 0 for placeholders and the like) and, from
    :func:`measure_models`, ``noise`` (each node's IQR/median); ``total_s`` the median
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


def measure_model(name: str, tm: TracedModel, *, repeats: int = DEFAULT_REPEATS,
                  warmup: int = DEFAULT_WARMUP) -> Measurement:
    """Time every node of ``tm`` and a plain forward on this machine's CPU (see the module doc)."""
    return measure_models([(name, tm)], repeats=repeats, warmup=warmup)[0]


def _probe_s(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, n: int = 5) -> float:
    """Median seconds of a small fixed matmul: a yardstick for how busy the machine is right now."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        torch.mm(a, b, out=out)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) * 1e-9


def measure_models(models: Sequence[tuple[str, TracedModel]], *, repeats: int = DEFAULT_REPEATS,
                   warmup: int = DEFAULT_WARMUP, max_redo: float = 1.0, disturbed: float = 1.3,
                   seed: int = 0) -> list[Measurement]:
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
        out.append(Measurement(model=name, nodes=nodes, total_s=float(tmed) * 1e-9,
                               noise=float((tq3 - tq1) / tmed), rounds=repeats, redone=redone))
    return out


def measure_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
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


def measure_copy_gbps(mbytes: int = 64, repeats: int = 10) -> float:
    """Large-tensor copy bandwidth (bytes read + written per second), GB/s."""
    numel = mbytes * 1_000_000 // 4
    src, dst = torch.ones(numel), torch.empty(numel)
    ts = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        dst.copy_(src)
        ts.append(time.perf_counter() - t0)
    return 2.0 * numel * 4 / float(np.median(ts[1:])) / 1e9


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass(frozen=True)
class RooflineFit:
    """Fitted per-node model: seconds per multiply-add per op class, per byte moved, per layer.

    A class (or ``memory``) that no layer of the fit set is bound by cannot be measured: its
    coefficient is 0 and it is listed in ``unidentified``. ``fit_error`` is the mean
    |relative residual| over the fitted layers. ``memory_bound`` is False for the flop-only
    model (``Σ_c F_c a_c + o``).
    """

    s_per_mac: dict[str, float]
    s_per_byte: float
    overhead_s: float
    unidentified: tuple[str, ...]
    layers: int
    iterations: int
    fit_error: float
    memory_bound: bool = True

    def predict_s(self, nodes) -> np.ndarray:
        """Seconds per node of a :func:`profile_nodes` table, shape ``(n_nodes,)``."""
        comp = sum(np.asarray(nodes[f"flops_{c}"], dtype=float) * self.s_per_mac[c] for c in OP_CLASSES)
        layer = np.asarray(nodes["is_layer"], dtype=float)
        if not self.memory_bound:
            return comp + layer * self.overhead_s
        mem = np.asarray(nodes["bytes_moved"], dtype=float) * self.s_per_byte
        return np.maximum(comp, mem) + layer * self.overhead_s


def _layer_rows(nodes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FLOPs per class (n, 3), bytes moved (n,), measured seconds (n,)) of the timed layers."""
    lay = nodes[nodes["is_layer"].astype(bool) & (nodes["measured_s"] > 0)]
    F = lay[[f"flops_{c}" for c in OP_CLASSES]].to_numpy(dtype=float)
    B = lay["bytes_moved"].to_numpy(dtype=float)
    t = lay["measured_s"].to_numpy(dtype=float)
    return F, B, t


def fit_roofline(nodes: pd.DataFrame, *, max_iter: int = 50) -> RooflineFit:
    """Fit the per-node roofline to measured layer times (see the module doc).

    ``nodes``: :func:`profile_nodes` rows (any number of models, concatenated) with a
    ``measured_s`` column; only layers (``is_layer``) with a positive time are used.
    """
    F, B, t = _layer_rows(nodes)
    if len(t) < 5:
        raise ValueError(f"need at least 5 timed layers to fit, got {len(t)}")
    w = 1.0 / t  # relative residuals: a 5 µs ReLU counts as much as a 5 ms convolution
    ones = np.ones(len(t))
    mem = F.sum(axis=1) == 0  # start: layers with FLOPs are compute bound
    best, seen = None, set()
    for it in range(1, max_iter + 1):
        x = _nnlad(np.column_stack([F * ~mem[:, None], B * mem, ones]) * w[:, None], ones)
        # A class with no row on its side of the max is not measured by this assignment.
        a = np.where((F * ~mem[:, None]).any(axis=0), x[:3], 0.0)
        beta = x[3] if mem.any() else 0.0
        o = x[4]
        comp, memt = F @ a, B * beta
        err = float(np.mean(np.abs((np.maximum(comp, memt) + o - t) * w)))
        if best is None or err < best[0] - 1e-12:
            best = (err, a, beta, o, mem.copy(), it)
        seen.add(mem.tobytes())
        mem = memt > comp
        if mem.tobytes() in seen:  # converged, or cycling: keep the best iterate
            break
    err, a, beta, o, mem, at = best
    unident = tuple(c for j, c in enumerate(OP_CLASSES) if a[j] <= 0)
    if beta <= 0:
        unident += ("memory",)
    return RooflineFit(s_per_mac=dict(zip(OP_CLASSES, map(float, a))), s_per_byte=float(beta), overhead_s=float(o),
                       unidentified=unident, layers=len(t), iterations=at, fit_error=err)


def fit_flop_only(nodes: pd.DataFrame) -> RooflineFit:
    """The flop-only model ``Σ_c F_c a_c + o``, fitted like :func:`fit_roofline` (relative L1, a, o ≥ 0)."""
    F, _, t = _layer_rows(nodes)
    if len(t) < 5:
        raise ValueError(f"need at least 5 timed layers to fit, got {len(t)}")
    w = 1.0 / t
    x = _nnlad(np.column_stack([F, np.ones(len(t))]) * w[:, None], np.ones(len(t)))
    err = float(np.mean(np.abs((F @ x[:3] + x[3] - t) * w)))
    unident = tuple(c for j, c in enumerate(OP_CLASSES) if x[j] <= 0)
    return RooflineFit(s_per_mac=dict(zip(OP_CLASSES, map(float, x[:3]))), s_per_byte=0.0, overhead_s=float(x[3]),
                       unidentified=unident, layers=len(t), iterations=1, fit_error=err, memory_bound=False)


# --------------------------------------------------------------------------------------------
# Errors on held-out models


def prediction_errors(measurements: Sequence[Measurement], predict: Callable) -> pd.DataFrame:
    """One row per model: ``layers``, ``layer_mdape`` (median |pred − measured| / measured over
    its layers, %), ``measured_s`` (plain forward), ``predicted_s`` (sum of node predictions),
    ``model_ape`` (%), and ``_ape`` (the per-layer errors, %, as an array).
    ``predict(nodes) -> seconds per node``."""
    rows = []
    for m in measurements:
        pred = np.asarray(predict(m.nodes), dtype=float)
        lay = m.nodes["is_layer"].to_numpy(dtype=bool) & (m.nodes["measured_s"].to_numpy() > 0)
        meas = m.nodes["measured_s"].to_numpy()[lay]
        ape = np.abs(pred[lay] - meas) / meas * 100
        total = float(pred.sum())
        rows.append({"model": m.model, "layers": int(lay.sum()), "layer_mdape": float(np.median(ape)),
                     "measured_s": m.total_s, "predicted_s": total,
                     "model_err": (total - m.total_s) / m.total_s * 100,
                     "model_ape": abs(total - m.total_s) / m.total_s * 100, "_ape": ape})
    cols = ["model", "layers", "layer_mdape", "measured_s", "predicted_s", "model_err", "model_ape", "_ape"]
    return pd.DataFrame(rows, columns=cols).set_index("model")


def summarize_errors(errors: pd.DataFrame) -> dict[str, float]:
    """Pooled per-layer median APE, median per-model APE and the share of models within 10 %, %."""
    pooled = np.concatenate(list(errors["_ape"])) if len(errors) else np.zeros(0)
    return {"layer_mdape": float(np.median(pooled)) if len(pooled) else float("nan"),
            "model_mdape": float(np.median(errors["model_ape"])) if len(errors) else float("nan"),
            "within_10": float(np.mean(errors["model_ape"] <= 10) * 100) if len(errors) else float("nan")}


# --------------------------------------------------------------------------------------------
# The profile


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


def default_name() -> str:
    """A profile name for this machine: ``calibrated_<hostname>`` in ``[a-z0-9_]``."""
    host = re.sub(r"[^a-z0-9_]+", "_", socket.gethostname().lower()).strip("_") or "host"
    return f"calibrated_{host}"


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` found: the profile, its YAML mapping, the fits and the errors.

    ``errors`` has one row per (``method``, ``model``) for the held-out models, methods
    ``kinds+residual`` and ``kinds`` (the per-kind model with and without its residual
    stage), ``roofline`` and ``flop-only`` (all fitted to the same nodes); ``summary`` the
    pooled figures per method (:func:`summarize_errors`); ``chosen`` the method the profile
    uses. ``table`` is the measured node table of the fit models (the residual table) when the
    profile uses a residual, else None.
    ``noise`` has one row per measured model: its run-to-run spread and median node spread.
    ``residual_cv``: per kind, the cross-validated mean |log error| (× 100) of its base and of
    its residual, and ``residual_kinds`` the kinds whose residual won
    (:func:`splitimpera.latency.kinds.choose_residual_kinds`).
    """

    profile: DeviceProfile
    data: dict
    fit: RooflineFit
    flop_only: RooflineFit
    errors: pd.DataFrame
    summary: dict[str, dict[str, float]]
    fit_models: tuple[str, ...]
    holdout_models: tuple[str, ...]
    measured_peak_gflops: float | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    chosen: str = "roofline"
    table: pd.DataFrame | None = None
    noise: pd.DataFrame | None = None
    measurements: tuple = ()
    residual_cv: pd.DataFrame | None = None
    residual_kinds: tuple[str, ...] = ()


def profile_from_fit(fit: RooflineFit, *, name: str, peak_gflops: float, kind: str = "device",
                     capacity_gb: float = 1.0, bandwidth_fallback_gbps: Callable[[], float] | None = None,
                     idle_w: float | None = None, active_w: float | None = None,
                     description: str = "", sources: Sequence[str] = (), estimates: Sequence[str] = (),
                     ) -> tuple[dict, list[str]]:
    """The device YAML mapping for a fit, and notes on what had to be assumed."""
    notes: list[str] = []
    estimates = list(estimates)
    rates = {c: 1.0 / a for c, a in fit.s_per_mac.items() if a > 0 and c not in fit.unidentified}
    fastest = max(rates.values(), default=0.0) * 2 / 1e9  # GFLOP/s at 2 FLOP per multiply-add
    if fastest > peak_gflops:
        notes.append(f"peak_gflops raised from {peak_gflops:.4g} to {fastest:.4g}: a fitted op class ran faster "
                     "than the matmul peak")
        peak_gflops = fastest
    eff = {}
    for c in OP_CLASSES:
        if c in rates:
            eff[c] = min(1.0, _sig(rates[c] * 2 / (peak_gflops * 1e9)))
        else:
            eff[c] = 1.0
            estimates.append(f"compute.efficiency.{c}: no {c} layer of the fit models was compute bound; set to 1")
    if "memory" in fit.unidentified:
        bw = bandwidth_fallback_gbps() if bandwidth_fallback_gbps is not None else 100.0
        estimates.append("memory.bandwidth_gbps: no fit layer was memory bound; large-tensor copy rate used "
                         f"({bw:.3g} GB/s)")
    else:
        bw = 1.0 / fit.s_per_byte / 1e9
    if idle_w is None or active_w is None:
        idle_w = 5.0 if idle_w is None else idle_w
        active_w = max(idle_w, 25.0) if active_w is None else active_w
        estimates.append("power.idle_w, power.active_w: not measured by calibrate; placeholders "
                         "(pass --idle-w/--active-w)")
    data = {
        "name": name,
        "kind": kind,
        "description": description,
        "compute": {
            "peak_gflops": _sig(peak_gflops),
            "efficiency": eff,
            "layer_overhead_us": _sig(fit.overhead_s * 1e6),
        },
        "memory": {"capacity_gb": _sig(capacity_gb, 3), "bandwidth_gbps": _sig(bw)},
        "power": {"idle_w": float(idle_w), "active_w": float(active_w)},
        "sources": list(sources),
        "estimates": estimates,
    }
    return data, notes


def validate_profile(data: dict, source: str = SOURCE) -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as e:
        f, msg = format_validation_error(e)
        raise UserError(msg, source=source, field=f) from None


def write_profile(data: dict, path: str | Path, table: pd.DataFrame | None = None) -> Path:
    """Write a device profile YAML atomically (temporary file, then rename); returns the path.

    With ``table`` (the residual table of a per-kind profile), it is written first beside the
    YAML as ``<stem>.nodes.csv`` and ``compute.residual_table`` names it (relative)."""
    path = Path(path)
    data = copy.deepcopy(data)
    if table is not None:
        side = path.with_name(f"{path.stem}.nodes.csv")
        data["compute"]["residual_table"] = side.name
    else:
        data.get("compute", {}).pop("residual_table", None)
        data.get("compute", {}).pop("residual_kinds", None)
    validate_profile(data, str(path))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        if table is not None:
            atomic_write(side, table.to_csv(index=False, float_format=TABLE_FLOAT_FORMAT))
        atomic_write(path, text)
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", source=str(path)) from None
    return path


# --------------------------------------------------------------------------------------------
# The whole run

MeasureFn = Callable[..., list]


def split_spec(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``"vit_b_16@3x112x112"`` → ``("vit_b_16", (3, 112, 112))``; no ``@``: its own shape None."""
    from .model.splits import normalize_input_shape

    name, at, shape = spec.partition("@")
    if not at:
        return spec, None
    return name, tuple(normalize_input_shape(shape))


def _load_traced(names: Sequence[str], input_shape, field_name: str) -> list[tuple[str, TracedModel]]:
    from .model.loading import load_model

    out = []
    for spec in names:
        name, own = split_spec(spec)
        shape = own or input_shape
        try:
            torch.manual_seed(0)
            if own is not None and name.startswith("vit"):  # a ViT is built for its image size
                import torchvision.models as tvm

                model = tvm.get_model(name, weights=None, image_size=shape[-1]).eval()
            else:
                model = load_model(name, "none")
            out.append((spec, trace(model, shape)))
        except UserError as e:
            raise UserError(f"{spec}: {e.message}", source=SOURCE, field=field_name) from None
    return out


def check_model_names(models: Sequence[str], holdout: Sequence[str]) -> None:
    """Cheap checks before anything is measured: known names, no model both fitted and held out."""
    from .model.loading import model_kind

    for names, arg in ((models, "--models"), (holdout, "--holdout")):
        for n in names:
            try:
                split_spec(n)
                model_kind(split_spec(n)[0])
            except UserError as e:
                raise UserError(f"{n}: {e.message}" if "@" in n else e.message, source=SOURCE, field=arg) from None
    if not models:
        raise UserError("at least one model to fit is needed", source=SOURCE, field="--models")
    both = sorted(set(models) & set(holdout))
    if both:
        raise UserError(f"{', '.join(both)} both fitted and held out; held-out models must not be fitted",
                        source=SOURCE, field="--holdout")


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


def node_table(measurements: Sequence[Measurement]) -> pd.DataFrame:
    """The residual table (:data:`splitimpera.latency.kinds.TABLE_COLUMNS` plus ``model``, ``node``)
    of measured models: every timed graph operation."""
    from .latency.kinds import TABLE_COLUMNS, timed

    parts = []
    for m in measurements:
        n = m.nodes
        sel = timed(n) & (n["measured_s"].to_numpy(dtype=float) > 0)
        part = n.loc[sel, [*TABLE_COLUMNS, *(["noise"] if "noise" in n.columns else [])]].copy()
        part.insert(0, "node", part.index)
        part.insert(0, "model", m.model)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def calibrate(models: Sequence[str] = DEFAULT_FIT_MODELS, holdout: Sequence[str] = DEFAULT_HOLDOUT_MODELS, *,
              input_shape=DEFAULT_INPUT_SHAPE, name: str | None = None, kind: str = "device",
              repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP, peak_gflops: float | None = None,
              idle_w: float | None = None, active_w: float | None = None, threads: int | None = None,
              measure: MeasureFn = measure_models, residual: bool | None = None) -> Calibration:
    """Measure ``models`` (fit) and ``holdout`` layer by layer, fit, check the fits on ``holdout``.

    Every model (fit and held out) is measured in one interleaved run (:func:`measure_models`)
    with ``threads`` torch threads pinned to as many CPUs (:func:`pinned`), so the fit and the
    check see the same machine. Four models are fitted to the fit models' nodes: the per-kind
    model with and without its residual stage (:mod:`splitimpera.latency.kinds`), the roofline
    and the flop-only model. The profile uses the per-kind model; ``residual`` None chooses
    the variant with the smaller held-out median model error (without held-out models: the
    base alone), True/False forces it (True gives the base alone, with a note, when no kind's
    residual beat its base in cross-validation). The roofline fields are written too
    (bottleneck extras).

    ``measure(models, repeats=, warmup=) -> [Measurement]`` is the timing step (tests inject
    synthetic times). ``peak_gflops`` (2 FLOP per multiply-add) defaults to a measured fp32
    matmul rate. Nothing is written: see :func:`write_profile`.
    """
    from .latency import kinds as K
    from .model.splits import normalize_input_shape

    t_start = time.perf_counter()
    models, holdout = tuple(models), tuple(holdout)
    check_model_names(models, holdout)
    if repeats < 1:
        raise UserError(f"must be at least 1 (got {repeats})", source=SOURCE, field="--repeats")
    if warmup < 0:
        raise UserError(f"must be at least 0 (got {warmup})", source=SOURCE, field="--warmup")
    if peak_gflops is not None and not peak_gflops > 0:
        raise UserError(f"must be positive (got {peak_gflops})", source=SOURCE, field="--peak-gflops")
    if threads is not None and threads < 1:
        raise UserError(f"must be at least 1 (got {threads})", source=SOURCE, field="--threads")
    try:
        shape = normalize_input_shape(input_shape)
    except UserError as e:
        raise e.at(source=SOURCE, field="--input") from None
    name = name or default_name()

    with pinned(threads) as (n_threads, cpus):
        fit_tm = _load_traced(models, shape, "--models")
        hold_tm = _load_traced(holdout, shape, "--holdout")
        probe_before = measure_peak_gflops()
        log.info("measuring %d models (%d fit, %d held out), %d rounds", len(fit_tm) + len(hold_tm), len(fit_tm),
                 len(hold_tm), repeats)
        measured = list(measure([*fit_tm, *hold_tm], repeats=repeats, warmup=warmup))
        fit_ms, hold_ms = measured[:len(fit_tm)], measured[len(fit_tm):]
        probe_after = measure_peak_gflops()
    notes: list[str] = []
    # The same matmul before and after: a machine busy with other work shows here.
    if max(probe_before, probe_after) > 1.25 * min(probe_before, probe_after):
        notes.append(f"matmul rate changed from {probe_before:.4g} to {probe_after:.4g} GFLOP/s while "
                     "measuring: the machine was busy, times are unreliable; run again when it is idle")
    redone = max((m.redone for m in measured), default=0)
    if redone:
        notes.append(f"{redone} disturbed round(s) were measured again (the probe ran > 1.3x its median)")
    measured_peak = None
    if peak_gflops is None:
        measured_peak = max(probe_before, probe_after)
        peak_gflops = measured_peak
    fit_nodes = pd.concat([m.nodes for m in fit_ms])
    fit = fit_roofline(fit_nodes)
    flop_only = fit_flop_only(fit_nodes)
    # The per-kind model exactly as a profile will load it: the table through its CSV form,
    # the coefficients through their YAML form.
    table_text = node_table(fit_ms).to_csv(index=False, float_format=TABLE_FLOAT_FORMAT)
    table = K.read_table_text(table_text)
    coef = {k: K.KindCoef.from_yaml(c.to_yaml()) for k, c in K.fit_base(table).items()}
    residual_kinds, cv = K.choose_residual_kinds(table)
    with_res = K.KindModel(coef, K.fit_residual(table, coef, kinds=residual_kinds))
    base_only = K.KindModel(coef)
    # The roofline as the profile will hold it (an unidentified class at peak, the copy
    # bandwidth when no layer was memory bound), so that its error is the written one's.
    cap = memory_capacity_gb()
    estimates = [] if cap is not None else ["memory.capacity_gb: unknown; placeholder 1 GB"]
    data, fit_notes = profile_from_fit(fit, name=name, peak_gflops=peak_gflops, kind=kind, capacity_gb=cap or 1.0,
                                       bandwidth_fallback_gbps=measure_copy_gbps, idle_w=idle_w, active_w=active_w,
                                       estimates=estimates)
    roof_prof = validate_profile(data)
    errs = {"kinds+residual": prediction_errors(hold_ms, with_res.predict_s),
            "kinds": prediction_errors(hold_ms, base_only.predict_s),
            "roofline": prediction_errors(hold_ms, lambda n: node_time_s(n, roof_prof)),
            "flop-only": prediction_errors(hold_ms, flop_only.predict_s)}
    summary = {k: summarize_errors(v) for k, v in errs.items()}
    if residual is None:  # by held-out error, the per-kind model first on equal errors
        candidates = ["kinds+residual", "kinds", "roofline"] if holdout else ["kinds"]
        chosen = min(candidates, key=lambda m: summary[m]["model_mdape"])
    else:
        chosen = "kinds+residual" if residual else "kinds"
    if chosen == "kinds+residual" and not residual_kinds:  # no kind's residual helped: it is the base alone
        chosen = "kinds"
        if residual:
            notes.append("no kind's residual beat its base in cross-validation: the profile uses the base alone")
    residual = chosen == "kinds+residual"
    today = _dt.date.today().isoformat()
    cpu = cpu_model()
    sc = summary[chosen]
    held = (f"held-out {', '.join(holdout)}: median abs error {sc['model_mdape']:.1f} % per model "
            f"({sc['within_10']:.0f} % of models within 10 %), {sc['layer_mdape']:.1f} % per layer"
            if holdout else "no held-out models")
    pin = f", pinned to CPU {','.join(map(str, cpus))}" if cpus else ""
    where = (f"{cpu}, {n_threads} thread{'s' if n_threads != 1 else ''}{pin}, torch {torch.__version__}, "
             f"{platform.system()} {platform.machine()}")
    noise = pd.DataFrame([{"model": m.model, "noise_pct": m.noise * 100, "node_noise_pct": _node_noise(m) * 100}
                          for m in measured], columns=["model", "noise_pct", "node_noise_pct"]).set_index("model")
    fitted = (f"per-kind model fitted to {len(table)} nodes" if chosen != "roofline" else
              f"roofline fitted to {fit.layers} layers (it beat the per-kind model on the held-out models)")
    if residual:
        fitted += (f", with a residual for {', '.join(residual_kinds)} (the kinds whose residual beat "
                   "their base in cross-validation over the fit models)")
    sources = [
        f"compute.{'kinds' if chosen != 'roofline' else 'error_pct'}{', compute.residual_table' if residual else ''}: "
        f"measured by `splitimpera calibrate` on {today} ({where}); chosen by held-out error: {chosen}; "
        f"{fitted} of {model_list(models)} (input "
        f"{'x'.join(map(str, shape))} unless given), fp32, batch 1, median of {repeats} interleaved rounds; {held}; "
        f"run-to-run spread (IQR/median) median {noise['noise_pct'].median():.1f} % per model",
        f"compute.efficiency, compute.layer_overhead_us, memory.bandwidth_gbps: the per-layer roofline fitted to the "
        f"same {fit.layers} layers (used for bottleneck extras and by readers without kinds)",
        ("compute.peak_gflops: measured fp32 1024x1024 matmul rate (best of before and after the layer timings)"
         if measured_peak is not None else "compute.peak_gflops: given with --peak-gflops"),
    ]
    if cap is not None:
        sources.append("memory.capacity_gb: MemTotal of this machine (/proc/meminfo)")
    description = (f"Measured by splitimpera calibrate on {today}: {cpu}, {n_threads} threads{pin}, "
                   f"PyTorch {torch.__version__} eager fp32 on CPU.")
    data["description"], data["sources"] = description, sources
    if chosen != "roofline":
        data["compute"]["kinds"] = K.coef_to_yaml(coef)
    data["compute"]["measured_on"] = {"cpu": str(cpu), "threads": int(n_threads), "cpus": list(map(int, cpus)),
                                      "torch": str(torch.__version__), "date": today, "rounds": int(repeats)}
    if residual:
        data["compute"]["residual_table"] = str(_scratch_table(table_text))
        data["compute"]["residual_kinds"] = list(residual_kinds)
    if holdout:
        data["compute"]["error_pct"] = _sig(max(sc["model_mdape"], 0.1), 3)
    notes += fit_notes
    for note in notes:
        log.warning("%s", note)
        data["estimates"].append(note)
    prof = validate_profile(data)
    errors = pd.concat({k: v for k, v in errs.items()}, names=["method", "model"])
    return Calibration(profile=prof, data=data, fit=fit, flop_only=flop_only, errors=errors, summary=summary,
                       fit_models=models, holdout_models=holdout, measured_peak_gflops=measured_peak,
                       seconds=time.perf_counter() - t_start, notes=tuple(notes), chosen=chosen,
                       table=table if residual else None, noise=noise, measurements=tuple(measured),
                       residual_cv=cv, residual_kinds=tuple(residual_kinds))


def model_list(models: Sequence[str]) -> str:
    """Model names for a sentence, the synthetic networks summed up."""
    synth = [m for m in models if m.startswith("splitimpera.model.synthnets:")]
    named = [m for m in models if m not in synth]
    if synth:
        named.append(f"{len(synth)} synthetic network{'s' if len(synth) != 1 else ''} "
                     f"({', '.join(m.split(':', 1)[1] for m in synth)})")
    return ", ".join(named)


def _node_noise(m: Measurement) -> float:
    """Median spread (IQR/median) of a measurement's timed layers; 0 without a ``noise`` column."""
    n = m.nodes
    if "noise" not in n.columns:
        return 0.0
    lay = n["is_layer"].astype(bool) & (n["measured_s"] > 0)
    return float(np.median(n.loc[lay, "noise"])) if lay.any() else 0.0


def _scratch_table(text: str) -> Path:
    """The residual table (its CSV ``text``) in the cache folder, so that the in-memory profile
    can be used before it is written (:func:`write_profile` puts a copy beside the YAML)."""
    from . import cache

    path = cache.cache_dir() / "tables" / f"{cache.key('residual', text)}.csv"
    if not path.exists():
        try:
            atomic_write(path, text)
        except OSError as e:
            raise UserError(f"cannot write the residual table to the cache folder: {e.strerror or e}",
                            source=str(path), field="$SPLITIMPERA_CACHE") from None
    return path


def render_calibration(cal: Calibration) -> str:
    """Plain-text summary: the fitted numbers and the held-out errors of every method side by side."""
    c = cal.profile.compute
    lines = [
        f"profile {cal.profile.name}: "
        + (f"per-kind model ({cal.chosen}), {sum('/' not in k for k in c.kinds) - 1} op kinds and "
           f"{sum('/' in k for k in c.kinds)} operators fitted; " if c.kinds else
           "the roofline (it predicted the held-out models better than the per-kind model); ")
        + f"roofline peak {c.peak_gflops:.4g} GFLOP/s, efficiency conv {c.efficiency.conv:.3g} "
        f"linear {c.efficiency.linear:.3g} other {c.efficiency.other:.3g}, layer overhead "
        f"{c.layer_overhead_us:.3g} us, memory {cal.profile.memory.bandwidth_gbps:.3g} GB/s",
        f"fit: {cal.fit.layers} layers of {model_list(cal.fit_models)}",
    ]
    cv = cal.residual_cv
    if cv is not None and len(cv):
        lines.append("residual by kind, cross-validated over the fit models (mean |log error| of the nodes x 100, "
                     "base -> residual): "
                     + ", ".join(f"{k} {r['base']:.0f}->{r['residual']:.0f}"
                                 f"{'' if k in cal.residual_kinds else ' (not used)'}" for k, r in cv.iterrows())
                     + ("" if cal.chosen == "kinds+residual" else "; the profile uses no residual"))
    if cal.noise is not None and len(cal.noise):
        lines.append(f"noise: run-to-run spread (IQR/median) median {cal.noise['noise_pct'].median():.1f} % per "
                     f"model (max {cal.noise['noise_pct'].max():.1f} %), {cal.noise['node_noise_pct'].median():.1f} %"
                     " per layer")
    lines += [f"note: {n}" for n in cal.notes]
    if not cal.holdout_models:
        lines.append("no held-out models: prediction error not checked")
        return "\n".join(lines)
    methods = ["kinds+residual", "kinds", "roofline", "flop-only"]
    lines += ["", "held-out models: measured and predicted ms, error (predicted - measured) / measured:",
              f"  {'model':<20} {'measured':>9} " + " ".join(f"{m:>16}" for m in methods)]
    first = cal.errors.loc[methods[0]]
    for model in first.index:
        cells = []
        for m in methods:
            r = cal.errors.loc[(m, model)]
            cells.append(f"{r['predicted_s'] * 1e3:>7.2f} {r['model_err']:>+7.1f}%")
        lines.append(f"  {model:<20} {first.loc[model, 'measured_s'] * 1e3:>7.2f}ms " + " ".join(f"{c:>16}" for c in cells))
    s = cal.summary
    lines.append(f"  {'median |error| per model':<30}" + " ".join(f"{s[m]['model_mdape']:>15.1f}%" for m in methods))
    lines.append(f"  {'models within 10 %':<30}" + " ".join(f"{s[m]['within_10']:>15.0f}%" for m in methods))
    lines.append(f"  {'median |error| per layer':<30}" + " ".join(f"{s[m]['layer_mdape']:>15.1f}%" for m in methods))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Measured mode: one model, node by node (``calibrate --for-model``)


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
    node on this machine, pinned as :func:`calibrate` is; see :class:`ModelTiming`."""
    from .model.cost import structure_hash
    from .model.loading import default_input_shape, load_model
    from .model.splits import normalize_input_shape

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
        (m,) = measure_models([(name, tm)], repeats=repeats, warmup=warmup)
    n = m.nodes
    raw = n["measured_s"].to_numpy(dtype=float)
    scale = m.total_s / raw.sum() if raw.sum() > 0 else 1.0
    table = pd.DataFrame({"node": n.index, "pos": n["pos"].to_numpy(), "kind": n["kind"].to_numpy(),
                          "measured_s": raw * scale, "raw_s": raw,
                          "noise": n["noise"].to_numpy() if "noise" in n.columns else 0.0})
    return ModelTiming(model=name, input="x".join(map(str, shape)), structure=structure_hash(tm), table=table,
                       total_s=m.total_s, noise=m.noise, threads=n_threads, cpus=tuple(cpus), repeats=repeats)


def _shape_tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def profile_with_timing(base: dict, timing: ModelTiming, *, name: str, out: Path, base_dir: Path | None) -> tuple[dict, Path]:
    """``base`` (a device profile mapping) plus ``timing`` as a ``compute.timings`` entry (one per
    model and input: a previous one is replaced), named ``name``, its paths made to work from
    ``out``'s folder. Returns the mapping and the table's path (``<stem>.<model>_<input>.timings.csv``)."""
    from .config.hardware import resolve_relative_paths

    data = copy.deepcopy(base)
    if base_dir is not None:
        data = resolve_relative_paths("devices", data, base_dir)
    data["name"] = name
    comp = data.setdefault("compute", {})
    table_path = out.with_name(f"{out.stem}.{_shape_tag(timing.model)}_{timing.input}.timings.csv")

    def rel(p: str) -> str:
        p = Path(p)
        return p.name if p.parent.resolve() == out.parent.resolve() else str(p)

    if comp.get("residual_table"):
        comp["residual_table"] = rel(comp["residual_table"])
    entries = [dict(t, file=rel(t["file"])) for t in comp.get("timings", []) or []
               if not (t.get("model") == timing.model and t.get("input") == timing.input)]
    entries.append({"file": table_path.name, "model": timing.model, "input": timing.input,
                    "structure": timing.structure, "noise_pct": _sig(timing.noise * 100, 3)})
    comp["timings"] = entries
    today = _dt.date.today().isoformat()
    pin = f", pinned to CPU {','.join(map(str, timing.cpus))}" if timing.cpus else ""
    data.setdefault("sources", []).append(
        f"compute.timings ({timing.model} at {timing.input}): measured node by node by `splitimpera calibrate "
        f"--for-model` on {today} ({cpu_model()}, {timing.threads} threads{pin}, torch {torch.__version__}); "
        f"median of {timing.repeats} rounds, plain forward {timing.total_s * 1e3:.4g} ms, run-to-run spread "
        f"{timing.noise * 100:.2g} %")
    return data, table_path


def write_timing_profile(data: dict, path: Path, timing: ModelTiming, table_path: Path) -> Path:
    """The timing table, then the profile YAML, each atomically."""
    validate_profile(data, str(path))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        atomic_write(table_path, timing.table.to_csv(index=False, float_format="%.6g"))
        atomic_write(path, text)
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", source=str(path)) from None
    return path
