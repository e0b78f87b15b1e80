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

import datetime as _dt
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
from .model.cost import OP_CLASSES, profile_nodes
from .config.hardware import DeviceProfile, format_validation_error
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


DEFAULT_FIT_MODELS = ("resnet18", "mobilenet_v3_small", "vgg11", "squeezenet1_0")
DEFAULT_HOLDOUT_MODELS = ("efficientnet_b0", "resnet50", "densenet121")
DEFAULT_INPUT_SHAPE = (3, 224, 224)
DEFAULT_REPEATS = 15
DEFAULT_WARMUP = 3
SOURCE = "calibrate"


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Measurement:
    """Measured times of one model on this machine.

    ``nodes`` is :func:`~splitimpera.model.cost.profile_nodes`'s table plus ``measured_s`` (median
    seconds of each node's call; 0 for placeholders and the like); ``total_s`` the median
    seconds of a plain forward of the traced graph, batch 1.
    """

    model: str
    nodes: pd.DataFrame
    total_s: float


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
    nodes = profile_nodes(tm)
    runner = _TimedRun(tm)
    x = torch.randn((1, *tm.input_shape), generator=torch.Generator().manual_seed(0))
    node_ns = np.zeros((repeats, len(runner.nodes)))
    scratch = np.zeros(len(runner.nodes))
    total_ns = np.zeros(repeats)
    with torch.no_grad(), eval_mode(tm.gm), _quiet_gc():
        for _ in range(warmup):
            runner(x, scratch)
            tm.gm(x)
        for r in range(repeats):
            runner(x, node_ns[r])
            t0 = time.perf_counter_ns()
            tm.gm(x)
            total_ns[r] = time.perf_counter_ns() - t0
    med = np.median(node_ns, axis=0) * 1e-9
    by_name = {n.name: med[i] for i, n in enumerate(runner.nodes)}
    nodes = nodes.copy()
    nodes["measured_s"] = [by_name[n] for n in nodes.index]
    return Measurement(model=name, nodes=nodes, total_s=float(np.median(total_ns)) * 1e-9)


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


def _nnlad(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_x Σ_i |(A x − y)_i| subject to x ≥ 0, as a linear program (HiGHS)."""
    from scipy import sparse
    from scipy.optimize import linprog

    # Columns scaled to unit norm: raw ones span ~12 orders of magnitude (MACs vs layers).
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    As = sparse.csr_matrix(A / scale)
    m, k = As.shape
    eye = sparse.identity(m, format="csr")
    # Variables [x (k), u (m)]: minimise Σu subject to −u ≤ A x − y ≤ u.
    A_ub = sparse.vstack([sparse.hstack([As, -eye]), sparse.hstack([-As, -eye])], format="csr")
    res = linprog(np.concatenate([np.zeros(k), np.ones(m)]), A_ub=A_ub, b_ub=np.concatenate([y, -y]),
                  bounds=[(0, None)] * (k + m), method="highs")
    if not res.success:
        raise RuntimeError(f"least-absolute-deviation fit failed: {res.message}")
    return res.x[:k] / scale


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
                     "model_ape": abs(total - m.total_s) / m.total_s * 100, "_ape": ape})
    cols = ["model", "layers", "layer_mdape", "measured_s", "predicted_s", "model_ape", "_ape"]
    return pd.DataFrame(rows, columns=cols).set_index("model")


def summarize_errors(errors: pd.DataFrame) -> dict[str, float]:
    """Pooled per-layer median APE and median per-model APE, %."""
    pooled = np.concatenate(list(errors["_ape"])) if len(errors) else np.zeros(0)
    return {"layer_mdape": float(np.median(pooled)) if len(pooled) else float("nan"),
            "model_mdape": float(np.median(errors["model_ape"])) if len(errors) else float("nan")}


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
    ``roofline`` (the written profile) and ``flop-only`` (fitted to the same layers);
    ``summary`` the pooled figures per method (:func:`summarize_errors`).
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


def write_profile(data: dict, path: str | Path) -> Path:
    """Write a device profile YAML atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    validate_profile(data, str(path))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        atomic_write(path, text)
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", source=str(path)) from None
    return path


# --------------------------------------------------------------------------------------------
# The whole run

MeasureFn = Callable[..., Measurement]


def _load_traced(names: Sequence[str], input_shape, field_name: str) -> list[tuple[str, TracedModel]]:
    from .model.loading import load_model

    out = []
    for name in names:
        try:
            torch.manual_seed(0)
            model = load_model(name, "none")
            out.append((name, trace(model, input_shape)))
        except UserError as e:
            raise UserError(f"{name}: {e.message}", source=SOURCE, field=field_name) from None
    return out


def check_model_names(models: Sequence[str], holdout: Sequence[str]) -> None:
    """Cheap checks before anything is measured: known names, no model both fitted and held out."""
    from .model.loading import model_kind

    for names, arg in ((models, "--models"), (holdout, "--holdout")):
        for n in names:
            try:
                model_kind(n)
            except UserError as e:
                raise UserError(e.message, source=SOURCE, field=arg) from None
    if not models:
        raise UserError("at least one model to fit is needed", source=SOURCE, field="--models")
    both = sorted(set(models) & set(holdout))
    if both:
        raise UserError(f"{', '.join(both)} both fitted and held out; held-out models must not be fitted",
                        source=SOURCE, field="--holdout")


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def calibrate(models: Sequence[str] = DEFAULT_FIT_MODELS, holdout: Sequence[str] = DEFAULT_HOLDOUT_MODELS, *,
              input_shape=DEFAULT_INPUT_SHAPE, name: str | None = None, kind: str = "device",
              repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP, peak_gflops: float | None = None,
              idle_w: float | None = None, active_w: float | None = None, threads: int | None = None,
              measure: MeasureFn = measure_model) -> Calibration:
    """Measure ``models`` (fit) and ``holdout`` layer by layer, fit a profile, check it on ``holdout``.

    ``measure(name, traced_model, repeats=, warmup=) -> Measurement`` is the timing step
    (tests inject synthetic times). ``peak_gflops`` (2 FLOP per multiply-add) defaults to a
    measured fp32 matmul rate. Nothing is written: see :func:`write_profile`.
    """
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

    with _threads(threads):
        n_threads = torch.get_num_threads()
        fit_tm = _load_traced(models, shape, "--models")
        hold_tm = _load_traced(holdout, shape, "--holdout")
        probe_before = measure_peak_gflops()
        fit_ms = []
        for n, tm in fit_tm:
            log.info("measuring %s (fit)", n)
            fit_ms.append(measure(n, tm, repeats=repeats, warmup=warmup))
        hold_ms = []
        for n, tm in hold_tm:
            log.info("measuring %s (held out)", n)
            hold_ms.append(measure(n, tm, repeats=repeats, warmup=warmup))
        probe_after = measure_peak_gflops()
        notes: list[str] = []
        # The same matmul before and after: a machine busy with other work shows here.
        if max(probe_before, probe_after) > 1.25 * min(probe_before, probe_after):
            notes.append(f"matmul rate changed from {probe_before:.4g} to {probe_after:.4g} GFLOP/s while "
                         "measuring: the machine was busy, times are unreliable; run again when it is idle")
        measured_peak = None
        if peak_gflops is None:
            measured_peak = max(probe_before, probe_after)
            peak_gflops = measured_peak
        fit_nodes = pd.concat([m.nodes for m in fit_ms])
        fit = fit_roofline(fit_nodes)
        flop_only = fit_flop_only(fit_nodes)
        cap = memory_capacity_gb()
        today = _dt.date.today().isoformat()
        cpu = cpu_model()
        errs = {"roofline": prediction_errors(hold_ms, fit.predict_s),
                "flop-only": prediction_errors(hold_ms, flop_only.predict_s)}
        summary = {k: summarize_errors(v) for k, v in errs.items()}
        held = (f"held-out {', '.join(holdout)}: median abs error {summary['roofline']['layer_mdape']:.1f} % "
                f"per layer, {summary['roofline']['model_mdape']:.1f} % per model" if holdout else "no held-out models")
        where = (f"{cpu}, {n_threads} thread{'s' if n_threads != 1 else ''}, torch {torch.__version__}, "
                 f"{platform.system()} {platform.machine()}")
        sources = [
            f"compute.*, memory.bandwidth_gbps: measured by `splitimpera calibrate` on {today} ({where}); "
            f"per-layer roofline fitted to {fit.layers} layers of {', '.join(models)} at "
            f"{'x'.join(map(str, shape))}, fp32, batch 1, median of {repeats} runs; {held}",
            ("compute.peak_gflops: measured fp32 1024x1024 matmul rate (best of before and after the layer timings)"
             if measured_peak is not None else "compute.peak_gflops: given with --peak-gflops"),
        ]
        if cap is not None:
            sources.append("memory.capacity_gb: MemTotal of this machine (/proc/meminfo)")
        estimates = [] if cap is not None else ["memory.capacity_gb: unknown; placeholder 1 GB"]
        description = (f"Measured by splitimpera calibrate on {today}: {cpu}, {n_threads} threads, "
                       f"PyTorch {torch.__version__} eager fp32 on CPU.")
        data, fit_notes = profile_from_fit(fit, name=name, peak_gflops=peak_gflops, kind=kind, capacity_gb=cap or 1.0,
                                       bandwidth_fallback_gbps=measure_copy_gbps, idle_w=idle_w, active_w=active_w,
                                       description=description, sources=sources, estimates=estimates)
        notes += fit_notes
        for note in notes:
            log.warning("%s", note)
            data["estimates"].append(note)
        prof = validate_profile(data)
    errors = pd.concat({k: v for k, v in errs.items()}, names=["method", "model"])
    return Calibration(profile=prof, data=data, fit=fit, flop_only=flop_only, errors=errors, summary=summary,
                       fit_models=models, holdout_models=holdout, measured_peak_gflops=measured_peak,
                       seconds=time.perf_counter() - t_start, notes=tuple(notes))


def render_calibration(cal: Calibration) -> str:
    """Plain-text summary: the fitted numbers and the held-out errors side by side."""
    c = cal.profile.compute
    lines = [
        f"profile {cal.profile.name}: peak {c.peak_gflops:.4g} GFLOP/s, efficiency conv {c.efficiency.conv:.3g} "
        f"linear {c.efficiency.linear:.3g} other {c.efficiency.other:.3g}, layer overhead "
        f"{c.layer_overhead_us:.3g} us, memory {cal.profile.memory.bandwidth_gbps:.3g} GB/s",
        f"fit: {cal.fit.layers} layers of {', '.join(cal.fit_models)}; mean |relative error| "
        f"{cal.fit.fit_error * 100:.1f} % (flop-only {cal.flop_only.fit_error * 100:.1f} %)"
        + (f"; not identified: {', '.join(cal.fit.unidentified)}" if cal.fit.unidentified else ""),
    ]
    lines += [f"note: {n}" for n in cal.notes]
    if not cal.holdout_models:
        lines.append("no held-out models: prediction error not checked")
        return "\n".join(lines)
    lines += ["", "held-out prediction error (|predicted - measured| / measured):",
              f"  {'model':<20} {'layers':>6} {'measured':>10} {'roofline':>10} {'layer MdAPE':>12} "
              f"{'model APE':>10} {'flop-only':>10} {'layer MdAPE':>12} {'model APE':>10}"]
    roof, flop = cal.errors.loc["roofline"], cal.errors.loc["flop-only"]
    for m in roof.index:
        r, f = roof.loc[m], flop.loc[m]
        lines.append(f"  {m:<20} {int(r['layers']):>6} {r['measured_s'] * 1e3:>8.2f}ms "
                     f"{r['predicted_s'] * 1e3:>8.2f}ms "
                     f"{r['layer_mdape']:>11.1f}% {r['model_ape']:>9.1f}% {f['predicted_s'] * 1e3:>8.2f}ms "
                     f"{f['layer_mdape']:>11.1f}% {f['model_ape']:>9.1f}%")
    sr, sf = cal.summary["roofline"], cal.summary["flop-only"]
    lines.append(f"  {'all (pooled layers, median of models)':<49} {sr['layer_mdape']:>11.1f}% "
                 f"{sr['model_mdape']:>9.1f}% {'':>10} {sf['layer_mdape']:>11.1f}% {sf['model_mdape']:>9.1f}%")
    return "\n".join(lines)
