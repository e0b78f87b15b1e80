"""I-SPLIT's accuracy study, reproduced: does the CUI curve predict a split's accuracy under a
bottleneck, better than baselines a skeptic would use?

For every bundled (model, task) and every split, the accuracy of the split pipeline is
measured under I-SPLIT's autoencoder, ``int2`` and top-25 % channels chosen by Grad-CAM
against random channels, each over several training seeds of the bottleneck (the seed
spread σ is reported; ``int2`` and Grad-CAM channels learn nothing random, so their σ is 0
by construction). Then every predictor of :mod:`splitimpera.accuracy.predictors` is
validated by leave-one-split-out on the seed-mean accuracies: MAE, Spearman, regret, and
the paired bootstrap win rate against the best of the baselines B0–B2, pooled and per
(model, task, bottleneck), and pooled per task. Last, I-SPLIT's per-class claim: for every
pair of classes, does the pair's own CUI nomination reach a higher accuracy on the pair's
images under the autoencoder than the global nomination?

    .venv/bin/python benchmarks/bench_accuracy_prediction.py [--seeds 0,1,2] [--out FILE]

The models can be measured in separate processes and combined (each writes its raw
points to a folder): ``--models letters_vgg --raw DIR`` per model, then
``--combine DIR DIR … --out FILE``.

The CUI curves are computed on the calibration data (the task's train split), never on the
test split the accuracies are measured on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"sklearn\..*")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

import splitimpera as si  # noqa: E402
from splitimpera.accuracy import predictors as P  # noqa: E402
from splitimpera.accuracy.evaluate import linear_probe_accuracy, measure_accuracy  # noqa: E402
from splitimpera.model.splits import INPUT, OUTPUT, trace  # noqa: E402

BOTTLENECKS = ["autoencoder", "int2", "top25_gradcam", "top25_random"]
CALIBRATION = 1024
CUI_IMAGES = 512


ALL_MODELS = (("digits_cnn", "digits"), ("letters_vgg", "letters"), ("letters_resnet", "letters"))


def _cases(models=None):
    """(model, task, test data, calibration data) for every bundled task with trained weights."""
    from splitimpera import data as D
    from splitimpera.model.zoo import list_zoo_models

    out = []
    known = set(list_zoo_models())
    for model, task in ALL_MODELS:
        if models and model not in models:
            continue
        if model not in known:
            print(f"(skipped {model}: not in the zoo)", file=sys.stderr)
            continue
        loader = getattr(D, task, None)
        if loader is None:
            print(f"(skipped {task}: no loader)", file=sys.stderr)
            continue
        out.append((model, task, loader("test"), loader("train")))
    return out


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _subset(ds, n, seed):
    if len(ds) <= n:
        return ds
    return Subset(ds, np.sort(np.random.default_rng(seed).permutation(len(ds))[:n]).tolist())


def study(seeds, log, models=None):
    points, sigma_rows, per_class_rows, meta = [], [], [], {}
    for model_name, task, test, train in _cases(models):
        t0 = time.perf_counter()
        model = si.load_model(model_name, "default")
        shape = tuple(test[0][0].shape)
        tm = trace(model, shape)
        calib = _subset(train, CALIBRATION, 0xCA1)
        cui = si.cui(tm, _subset(train, CUI_IMAGES, 0xC01))
        curve = cui.curve["log10_cui"]
        cands = [sp.name for sp in tm.candidates]
        tx = pd.Series({sp.name: sp.tx_bytes for sp in tm.candidates})
        feats = P.split_features(cands, cands, tx, curve)
        inner = [s for s in cands if s not in (OUTPUT,)]
        feats["probe_accuracy"] = linear_probe_accuracy(tm, calib, test, inner).reindex(cands)
        runs = [measure_accuracy(tm, test, BOTTLENECKS, calibration=calib, seed=s, keep_predictions=True,
                                 options={"autoencoder": {"epochs": 5}}) for s in seeds]
        full = runs[0].full_accuracy
        meta[f"{model_name}/{task}"] = {"full_accuracy": full, "test_images": runs[0].samples,
                                        "seconds": round(time.perf_counter() - t0, 1),
                                        "params": int(sum(p.numel() for p in model.parameters())),
                                        "cpu": _cpu(), "threads": torch.get_num_threads()}
        for b in BOTTLENECKS:
            acc = pd.concat([r.for_bottleneck(b)["accuracy"].rename(i) for i, r in enumerate(runs)], axis=1)
            ok = runs[0].for_bottleneck(b)["applicable"].astype(bool)
            acc = acc[ok & (acc.index != OUTPUT)]
            sd = acc.std(axis=1, ddof=1) if len(seeds) > 1 else acc.iloc[:, 0] * 0
            sigma_rows.append({"model": model_name, "task": task, "bottleneck": b, "splits": len(acc),
                               "sigma_mean": float(sd.mean()), "sigma_max": float(sd.max())})
            for s in acc.index:
                points.append({"model": model_name, "task": task, "bottleneck": b, "split": s,
                               "accuracy": float(acc.loc[s].mean()), "sigma": float(sd.loc[s]),
                               "full_accuracy": full, **feats.loc[s].to_dict()})
        per_class_rows += _per_class(model_name, task, runs, cui, seeds)
        log(f"{model_name}/{task}: {meta[f'{model_name}/{task}']['seconds']} s")
    return pd.DataFrame(points), pd.DataFrame(sigma_rows), pd.DataFrame(per_class_rows), meta


def _per_class(model_name, task, runs, cui, seeds):
    """I-SPLIT's per-class claim under the autoencoder, over every class pair."""
    y = runs[0].labels
    preds = {s: np.stack([r.predictions[(s, "autoencoder")][0] for r in runs])
             for (s, b) in runs[0].predictions if b == "autoencoder"}
    splits = [s for s in cui.splits if s in preds and s not in (INPUT, OUTPUT)]
    glob = cui.curve["log10_cui"].reindex(splits)
    g_best = glob.idxmax()
    classes = sorted(np.unique(y).tolist())
    rows = []
    for pair in itertools.combinations(classes, 2):
        sub = cui.for_classes(pair).curve["log10_cui"].reindex(splits)
        if not np.isfinite(sub).any():
            continue
        s_best = sub.idxmax()
        mask = np.isin(y, pair)

        def acc(s):
            return float((preds[s][:, mask] == y[mask]).mean())

        oracle = max(splits, key=acc)
        rows.append({"model": model_name, "task": task, "classes": "-".join(map(str, pair)),
                     "global_split": g_best, "subset_split": s_best,
                     "global_accuracy": acc(g_best), "subset_accuracy": acc(s_best),
                     "oracle_accuracy": acc(oracle)})
    return rows


def _fmt(v, pct=True, digits=1):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    return f"{100 * v:.{digits}f}" if pct else f"{v:+.2f}"


def report(points, sigma, per_class, meta, seeds, bootstrap) -> tuple[str, dict]:
    lines = []
    hosts = sorted({f"{m.get('cpu', '?')}, {m.get('threads', '?')} thread(s)" for m in meta.values()})
    lines.append(f"CPU: {'; '.join(hosts)}; torch {torch.__version__}; seeds {seeds}; bootstrap {bootstrap}")
    lines.append("")
    lines.append("models (full-model test accuracy, test images, run time):")
    for k, m in meta.items():
        lines.append(f"  {k:<24} {100 * m['full_accuracy']:.1f} %  {m['test_images']} images  "
                     f"{m['params']:,} params  {m['seconds']} s")
    lines.append("")
    lines.append("accuracy over splits per (model, task, bottleneck): range, seed spread σ, "
                 "and Spearman of log10 CUI against accuracy")
    lines.append(f"  {'model/task':<24} {'bottleneck':<14} {'splits':>6} {'min %':>6} {'max %':>6} "
                 f"{'spread':>6} {'σ mean':>6} {'σ max':>6} {'ρ(CUI)':>7}")
    for (m, t, b), g in points.groupby(["model", "task", "bottleneck"], sort=False):
        srow = sigma[(sigma.model == m) & (sigma.task == t) & (sigma.bottleneck == b)].iloc[0]
        fin = g.dropna(subset=["log10_cui"])
        rho = P._spearman(fin["log10_cui"].to_numpy(), fin["accuracy"].to_numpy()) if len(fin) > 2 else np.nan
        lines.append(f"  {m + '/' + t:<24} {b:<14} {len(g):>6} {_fmt(g.accuracy.min()):>6} "
                     f"{_fmt(g.accuracy.max()):>6} {_fmt(np.ptp(g.accuracy)):>6} {_fmt(srow.sigma_mean, digits=2):>6} "
                     f"{_fmt(srow.sigma_max, digits=2):>6} {_fmt(rho, pct=False):>7}")
    # Every predictor on the same points: splits where every feature is known.
    feats = [P.METHODS[m].feature for m in P.METHODS if P.METHODS[m].feature]
    usable = points.dropna(subset=[f for f in feats if f in points.columns])
    v = P.validate(usable, ["model", "task", "bottleneck"], architecture_key="model", bootstrap=bootstrap)
    lines.append("")
    lines.append(f"leave-one-split-out, pooled over {len(v.points)} points, {v.architectures} architectures "
                 f"(bar: MAE ≤ {P.BAR_RATIO} × best of B0–B2 in ≥ {P.BAR_WIN_RATE:.0%} of resamples, "
                 f"≥ {P.BAR_MIN_POINTS} points, ≥ {P.BAR_MIN_ARCHS} architectures):")
    lines.append(f"  {'predictor':<40} {'MAE pts':>7} {'Spearman':>8} {'regret pts':>10} {'win rate':>8}")
    for m, r in v.pooled.iterrows():
        lines.append(f"  {m + ': ' + P.METHODS[m].label:<40} {100 * r.mae:>7.2f} {r.spearman:>8.2f} "
                     f"{100 * r.regret:>10.2f} {('—' if not np.isfinite(r.win_rate) else f'{r.win_rate:.0%}'):>8}")
    lines.append(f"  passes: {', '.join(v.passes) or 'none'}; the tool uses: {v.chosen or 'none (it measures)'}")
    lines.append(f"  ({len(points)} points measured; pooled over the {len(v.points)} where every predictor's feature "
                 "is known: the raw input and splits without a spatial map have no CUI value)")
    for task, sub in usable.groupby("task", sort=False):
        vt = P.validate(sub, ["model", "task", "bottleneck"], architecture_key="model", bootstrap=bootstrap)
        pb = vt.pooled.loc[[b for b in P.BASELINES if b in vt.pooled.index], "mae"]
        lines.append(f"  {task} alone ({len(vt.points)} points, {vt.architectures} models): cui MAE "
                     f"{100 * vt.pooled.at['cui', 'mae']:.2f} against {100 * pb.min():.2f} for {pb.idxmin()} "
                     f"({vt.pooled.at['cui', 'mae'] / pb.min():.2f}×), win rate {vt.pooled.at['cui', 'win_rate']:.0%}")
    lines.append("")
    lines.append("per group, LOO MAE in points (best marked *), then Spearman and regret of CUI:")
    methods = list(v.methods)
    lines.append(f"  {'model/task':<24} {'bottleneck':<14} " + " ".join(f"{m:>10}" for m in methods)
                 + f" {'ρ cui':>6} {'reg cui':>7}")
    for key, g in v.groups.groupby(["model", "task", "bottleneck"], sort=False):
        mae = g.set_index("method")["mae"]
        best = mae.idxmin()
        cells = " ".join(f"{100 * mae[m]:>9.2f}{'*' if m == best else ' '}" for m in methods)
        c = g.set_index("method").loc["cui"]
        lines.append(f"  {key[0] + '/' + key[1]:<24} {key[2]:<14} {cells} {_fmt(c.spearman, pct=False):>6} "
                     f"{100 * c.regret:>7.2f}")
    pc = per_class
    if not pc.empty:
        lines.append("")
        lines.append("per class pair, autoencoder: subset's own CUI nomination vs the global nomination "
                     "(subset accuracy, seed mean)")
        for (m, t), g in pc.groupby(["model", "task"], sort=False):
            diff = g.subset_accuracy - g.global_accuracy
            moved = g.subset_split != g.global_split
            lines.append(f"  {m + '/' + t:<24} pairs {len(g)}, nomination moves for {int(moved.sum())}: "
                         f"better {int((diff[moved] > 0).sum())}, worse {int((diff[moved] < 0).sum())}, "
                         f"equal {int((diff[moved] == 0).sum())}; mean difference {100 * diff.mean():+.2f} pts "
                         f"(where moved {100 * diff[moved].mean() if moved.any() else 0:+.2f}); "
                         f"gap to the best split {100 * (g.oracle_accuracy - g.subset_accuracy).mean():.2f} pts "
                         f"(global {100 * (g.oracle_accuracy - g.global_accuracy).mean():.2f})")
    doc = {"meta": meta, "seeds": list(seeds), "bootstrap": bootstrap, "chosen": v.chosen, "passes": list(v.passes),
           "pooled": v.pooled.reset_index().to_dict(orient="records"),
           "groups": v.groups.to_dict(orient="records"), "sigma": sigma.to_dict(orient="records"),
           "per_class": pc.to_dict(orient="records")}
    return "\n".join(lines), doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", help="write the printed table here, and the figures as JSON beside it (.json)")
    ap.add_argument("--models", help="comma-separated zoo models to measure (default: every bundled task's)")
    ap.add_argument("--raw", help="write the measured points to this folder (for --combine)")
    ap.add_argument("--combine", nargs="+", help="report from these --raw folders instead of measuring")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    from pathlib import Path

    if a.combine:
        parts = [Path(d) for d in a.combine]
        points, sigma, per_class = (pd.concat([pd.read_csv(d / f) for d in parts if (d / f).stat().st_size > 1],
                                              ignore_index=True) for f in ("points.csv", "sigma.csv", "per_class.csv"))
        meta = {k: v for d in parts for k, v in json.loads((d / "meta.json").read_text())["meta"].items()}
        seeds = json.loads((parts[0] / "meta.json").read_text())["seeds"]
    else:
        models = a.models.split(",") if a.models else None
        points, sigma, per_class, meta = study(seeds, lambda m: print(m, file=sys.stderr), models)
        if a.raw:
            d = Path(a.raw)
            d.mkdir(parents=True, exist_ok=True)
            points.to_csv(d / "points.csv", index=False)
            sigma.to_csv(d / "sigma.csv", index=False)
            per_class.to_csv(d / "per_class.csv", index=False)
            (d / "meta.json").write_text(json.dumps({"meta": meta, "seeds": seeds}, indent=1, default=float))
    text, doc = report(points, sigma, per_class, meta, seeds, a.bootstrap)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
