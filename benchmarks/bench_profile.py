"""Profile speed: all splits in one fvcore trace vs fvcore once per head; cold vs cached.

Prints medians over repeats and ratios measured side by side in this run (CPU).
    .venv/bin/python benchmarks/bench_profile.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import torch  # noqa: E402
from _timing import median_time  # noqa: E402
import torchvision  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402

import splitimpera as si  # noqa: E402
from splitimpera.model import cost as prof_mod  # noqa: E402
from splitimpera.model.splits import trace  # noqa: E402




def naive(tm) -> list[float]:
    """The obvious way: build each head and count it with fvcore."""
    x = torch.randn(1, *tm.input_shape)
    out = []
    for sp in tm.candidates:
        head, _ = si.split_model(tm, sp.name, tm.input_shape)
        fca = FlopCountAnalysis(head, (x,))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        out.append(fca.total())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'model':<12} {'splits':>6} {'naive s':>9} {'ours cold s':>12} {'ours cached s':>14} "
          f"{'naive/cold':>11} {'cold/cached':>12}")
    for name in ("resnet50", "vgg16", "densenet121"):
        model = torchvision.models.get_model(name).eval()
        tm = trace(model, (3, 224, 224))
        t_naive = median_time(lambda: naive(tm), max(1, args.repeats // 2))
        t_cold = median_time(lambda: prof_mod.profile_model(tm, use_cache=False), args.repeats)
        with tempfile.TemporaryDirectory() as d:
            os.environ["SPLITIMPERA_CACHE"] = d
            prof_mod.profile_model(tm)
            t_cached = median_time(lambda: prof_mod.profile_model(tm), args.repeats)
        # Same numbers both ways (the naive count includes the `output` head = whole model).
        ours = prof_mod.profile_model(tm, use_cache=False)["head_flops"].tolist()
        assert [int(v) for v in naive(tm)] == ours, "naive and per-node counts disagree"
        print(f"{name:<12} {len(tm.candidates):>6} {t_naive:>9.2f} {t_cold:>12.2f} {t_cached:>14.3f} "
              f"{t_naive / t_cold:>10.1f}x {t_cold / t_cached:>11.1f}x")

    sc = si.load_scenario(os.path.join(os.path.dirname(__file__), "..", "scenarios", "demo.yaml"))
    si.run(sc)  # warm the cache
    t_run = median_time(lambda: si.run(sc), args.repeats)
    print(f"demo scenario, si.run end to end (cached profile): {t_run * 1e3:.0f} ms median")


if __name__ == "__main__":
    main()
