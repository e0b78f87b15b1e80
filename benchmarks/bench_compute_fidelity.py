"""Compute-model fidelity on models the fit never saw: predicted vs measured, this machine.

One `calibrate` run (default fit and held-out sets, interleaved rounds, threads pinned)
fits four models to the same measured nodes and predicts every held-out model with each:

* ``kinds+residual`` / ``kinds`` — the per-kind model with and without its residual stage
  (what `calibrate` writes now; it keeps the one with the smaller held-out error);
* ``roofline`` — the per-layer roofline `calibrate` wrote before (one efficiency per op class);
* ``flop-only`` — FLOPs / rate + overhead.

Then the held-out models are measured a second time, in a separate interleaved run: the
difference between the two runs is the noise floor of any whole-model error on this machine.

    python benchmarks/bench_compute_fidelity.py [--threads N] [--repeats R] [--quick] [--save FILE]

Prints, per held-out model, measured ms, each method's predicted ms and signed error, and
the second run's difference; then per method the share of held-out models within ±10 %,
the median |error| per model, and the median per-layer error (unweighted, and weighted by
each layer's measured time).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
warnings.filterwarnings("ignore")

from splitimpera import calibrate as C  # noqa: E402

# Depthwise, grouped or branch-heavy held-out models (the issue asks for at least 4).
HARD = {"efficientnet_b0", "efficientnet_b1", "densenet121", "mobilenet_v2", "mobilenet_v3_large",
        "shufflenet_v2_x1_0", "mnasnet1_0", "regnet_y_400mf", "convnext_tiny"}
METHODS = ("kinds+residual", "kinds", "roofline", "flop-only")


def weighted_layer_median(cal, method: str) -> float:
    """Median per-layer |error| weighted by the layer's measured time, %: half the held-out
    models' compute time is in layers predicted at least this well."""
    errs, weights = [], []
    for m in cal.timed_models[len(cal.fit_models):]:
        ape = cal.errors.loc[(method, m.model), "_ape"]
        lay = m.nodes["is_layer"].to_numpy(dtype=bool) & (m.nodes["measured_s"].to_numpy() > 0)
        errs.append(ape)
        weights.append(m.nodes["measured_s"].to_numpy()[lay])
    e, w = np.concatenate(errs), np.concatenate(weights)
    order = np.argsort(e)
    cw = np.cumsum(w[order]) / w.sum()
    return float(e[order][np.searchsorted(cw, 0.5)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=C.DEFAULT_REPEATS)
    ap.add_argument("--quick", action="store_true", help="small inputs (3x64x64), 5 rounds: a smoke run")
    ap.add_argument("--save", metavar="FILE", help="also write the report to FILE")
    args = ap.parse_args()
    shape = (3, 64, 64) if args.quick else C.DEFAULT_INPUT_SHAPE
    repeats = 5 if args.quick else args.repeats
    fit = [m for m in C.DEFAULT_FIT_MODELS if not (args.quick and "@" in m)]
    hold = list(C.DEFAULT_HOLDOUT_MODELS)
    t0 = time.perf_counter()
    cal = C.calibrate(fit, hold, input_shape=shape, repeats=repeats, threads=args.threads, idle_w=1, active_w=2,
                      name="bench")
    with C.pinned(args.threads) as (threads, cpus):
        again = C.time_models(C.load_traced_models(hold, shape, "--holdout"), repeats=repeats, seed=1)
    second = {m.model: m.total_s for m in again}
    out = []
    p = out.append
    p(f"compute fidelity: {C.cpu_model()}, {threads} thread(s) pinned to CPU {','.join(map(str, cpus)) or '?'}, "
      f"torch {torch.__version__}, {platform.system()} {platform.machine()}, input {'x'.join(map(str, shape))} "
      f"(vit at its own), {repeats} interleaved rounds, {time.perf_counter() - t0:.0f} s")
    p(f"fit on {len(fit)} models: {C.model_list(fit)}; held out {len(hold)} ({sum(h in HARD for h in hold)} depthwise-, "
      "grouped- or branch-heavy, marked *)")
    for n in cal.notes:
        p(f"note: {n}")
    p("")
    head = f"{'held-out model':<22}{'measured':>10}" + "".join(f"{m:>20}" for m in METHODS) + f"{'2nd run':>10}"
    p(head)
    p("-" * len(head))
    floor = []
    for model in hold:
        meas = cal.errors.loc[(METHODS[0], model), "measured_s"]
        cells = "".join(f"{cal.errors.loc[(m, model), 'predicted_s'] * 1e3:>10.2f}"
                        f"{cal.errors.loc[(m, model), 'model_err']:>+9.1f}%" for m in METHODS)
        d = (second[model] - meas) / meas * 100
        floor.append(abs(d))
        p(f"{model + (' *' if model in HARD else ''):<22}{meas * 1e3:>8.2f}ms{cells}{d:>+9.1f}%")
    p("")
    p(f"{'per method':<32}" + "".join(f"{m:>16}" for m in METHODS))
    s = cal.summary
    p(f"{'held-out models within ±10 %':<32}" + "".join(f"{s[m]['within_10']:>15.0f}%" for m in METHODS))
    hard = [h for h in hold if h in HARD]
    p(f"{'  of them depthwise/branchy':<32}" + "".join(
        f"{np.mean([cal.errors.loc[(m, h), 'model_ape'] <= 10 for h in hard]) * 100:>15.0f}%" for m in METHODS))
    p(f"{'median |error| per model':<32}" + "".join(f"{s[m]['model_mdape']:>15.1f}%" for m in METHODS))
    p(f"{'max |error| per model':<32}" + "".join(
        f"{cal.errors.loc[m, 'model_ape'].max():>15.1f}%" for m in METHODS))
    p(f"{'median |error| per layer':<32}" + "".join(f"{s[m]['layer_mdape']:>15.1f}%" for m in METHODS))
    p(f"{'  time-weighted':<32}" + "".join(f"{weighted_layer_median(cal, m):>15.1f}%" for m in METHODS))
    nz = cal.noise
    p("")
    p(f"noise floor: the same held-out models measured twice differ by median {np.median(floor):.1f} % "
      f"(max {np.max(floor):.1f} %); within one run the plain forward's IQR/median is median "
      f"{nz['noise_pct'].median():.1f} % per model, a layer's {nz['node_noise_pct'].median():.1f} %")
    p(f"profile written by calibrate would use: {cal.chosen} (held-out error_pct {cal.profile.compute.error_pct})")
    text = "\n".join(out)
    print(text)
    if args.save:
        with open(args.save, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
