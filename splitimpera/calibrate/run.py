"""The whole ``calibrate`` run: time the fit and held-out models, fit, check, build the profile.

Every model (fit and held out) is timed in one interleaved run (:mod:`.timing`); the
per-kind model, the roofline and the flop-only model are fitted to the fit models' nodes
(:mod:`.fit`) and checked on the held-out ones; the profile (:mod:`.profile`) uses the one
with the smallest held-out error.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..config.hardware import DeviceProfile
from ..errors import UserError
from ..latency.compute import node_time_s
from ..latency.kind_model import KindCoef, KindModel, fit_residual, read_table_text
from ..model.splits import TracedModel, trace
from .fit import (RooflineFit, choose_residual_kinds, fit_base, fit_flop_only, fit_roofline, node_table,
                  prediction_errors, summarize_errors)
from .profile import (TABLE_FLOAT_FORMAT, coef_to_yaml, default_name, profile_from_fit, round_sig, scratch_table,
                      validate_profile)
from .timing import (DEFAULT_REPEATS, DEFAULT_WARMUP, SOURCE, TimedModel, copy_gbps, cpu_model, matmul_gflops,
                     memory_capacity_gb, pinned, time_models)

log = logging.getLogger(__name__)

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

TimeFn = Callable[..., list]


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
    (:func:`splitimpera.calibrate.fit.choose_residual_kinds`).
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
    timed_models: tuple[TimedModel, ...] = ()
    residual_cv: pd.DataFrame | None = None
    residual_kinds: tuple[str, ...] = ()


def split_spec(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``"vit_b_16@3x112x112"`` → ``("vit_b_16", (3, 112, 112))``; no ``@``: its own shape None."""
    from ..model.splits import normalize_input_shape

    name, at, shape = spec.partition("@")
    if not at:
        return spec, None
    return name, tuple(normalize_input_shape(shape))


def load_traced_models(names: Sequence[str], input_shape, field_name: str) -> list[tuple[str, TracedModel]]:
    """Each of ``names`` (``name`` or ``name@CxHxW``) loaded with random weights (seed 0) and traced
    at its own shape, else ``input_shape``; a bad name is a UserError naming ``field_name``."""
    from ..model.loading import load_model

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
    from ..model.loading import model_kind

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


def calibrate(models: Sequence[str] = DEFAULT_FIT_MODELS, holdout: Sequence[str] = DEFAULT_HOLDOUT_MODELS, *,
              input_shape=DEFAULT_INPUT_SHAPE, name: str | None = None, kind: str = "device",
              repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP, peak_gflops: float | None = None,
              idle_w: float | None = None, active_w: float | None = None, threads: int | None = None,
              timer: TimeFn = time_models, residual: bool | None = None) -> Calibration:
    """Time ``models`` (fit) and ``holdout`` layer by layer, fit, check the fits on ``holdout``.

    Every model (fit and held out) is measured in one interleaved run (:func:`time_models`)
    with ``threads`` torch threads pinned to as many CPUs (:func:`pinned`), so the fit and the
    check see the same machine. Four models are fitted to the fit models' nodes: the per-kind
    model with and without its residual stage (:mod:`splitimpera.latency.kind_model`), the roofline
    and the flop-only model. The profile uses the per-kind model; ``residual`` None chooses
    the variant with the smaller held-out median model error (without held-out models: the
    base alone), True/False forces it (True gives the base alone, with a note, when no kind's
    residual beat its base in cross-validation). The roofline fields are written too
    (bottleneck extras).

    ``timer(models, repeats=, warmup=) -> [TimedModel]`` is the timing step (tests inject
    synthetic times). ``peak_gflops`` (2 FLOP per multiply-add) defaults to a measured fp32
    matmul rate. Nothing is written: see :func:`write_profile`.
    """
    from ..model.splits import normalize_input_shape

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
        fit_tm = load_traced_models(models, shape, "--models")
        hold_tm = load_traced_models(holdout, shape, "--holdout")
        probe_before = matmul_gflops()
        log.info("measuring %d models (%d fit, %d held out), %d rounds", len(fit_tm) + len(hold_tm), len(fit_tm),
                 len(hold_tm), repeats)
        measured = list(timer([*fit_tm, *hold_tm], repeats=repeats, warmup=warmup))
        fit_ms, hold_ms = measured[:len(fit_tm)], measured[len(fit_tm):]
        probe_after = matmul_gflops()
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
    table = read_table_text(table_text)
    coef = {k: KindCoef.from_yaml(c.to_yaml()) for k, c in fit_base(table).items()}
    residual_kinds, cv = choose_residual_kinds(table)
    with_res = KindModel(coef, fit_residual(table, coef, kinds=residual_kinds))
    base_only = KindModel(coef)
    # The roofline as the profile will hold it (an unidentified class at peak, the copy
    # bandwidth when no layer was memory bound), so that its error is the written one's.
    cap = memory_capacity_gb()
    estimates = [] if cap is not None else ["memory.capacity_gb: unknown; placeholder 1 GB"]
    data, fit_notes = profile_from_fit(fit, name=name, peak_gflops=peak_gflops, kind=kind, capacity_gb=cap or 1.0,
                                       bandwidth_fallback_gbps=copy_gbps, idle_w=idle_w, active_w=active_w,
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
        data["compute"]["kinds"] = coef_to_yaml(coef)
    data["compute"]["measured_on"] = {"cpu": str(cpu), "threads": int(n_threads), "cpus": list(map(int, cpus)),
                                      "torch": str(torch.__version__), "date": today, "rounds": int(repeats)}
    if residual:
        data["compute"]["residual_table"] = str(scratch_table(table_text))
        data["compute"]["residual_kinds"] = list(residual_kinds)
    if holdout:
        data["compute"]["error_pct"] = round_sig(max(sc["model_mdape"], 0.1), 3)
    notes += fit_notes
    for note in notes:
        log.warning("%s", note)
        data["estimates"].append(note)
    prof = validate_profile(data)
    errors = pd.concat({k: v for k, v in errs.items()}, names=["method", "model"])
    return Calibration(profile=prof, data=data, fit=fit, flop_only=flop_only, errors=errors, summary=summary,
                       fit_models=models, holdout_models=holdout, measured_peak_gflops=measured_peak,
                       seconds=time.perf_counter() - t_start, notes=tuple(notes), chosen=chosen,
                       table=table if residual else None, noise=noise, timed_models=tuple(measured),
                       residual_cv=cv, residual_kinds=tuple(residual_kinds))


def model_list(models: Sequence[str]) -> str:
    """Model names for a sentence, the synthetic networks summed up."""
    synth = [m for m in models if m.startswith("splitimpera.model.synthnets:")]
    named = [m for m in models if m not in synth]
    if synth:
        named.append(f"{len(synth)} synthetic network{'s' if len(synth) != 1 else ''} "
                     f"({', '.join(m.split(':', 1)[1] for m in synth)})")
    return ", ".join(named)


def _node_noise(m: TimedModel) -> float:
    """Median spread (IQR/median) of a timed model's layers; 0 without a ``noise`` column."""
    n = m.nodes
    if "noise" not in n.columns:
        return 0.0
    lay = n["is_layer"].astype(bool) & (n["measured_s"] > 0)
    return float(np.median(n.loc[lay, "noise"])) if lay.any() else 0.0


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
