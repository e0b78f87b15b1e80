"""Joint ranking of design points (split × bottleneck) against one run per bottleneck.

The demo scenario (digits_cnn, 22 splits, measured accuracy and zstd-coded bytes) under
``none, fp16, int8, int4, int2``: one ``si.run`` with the five bottlenecks (one shared
measurement pass over the data, one ranking of 110 points) against five ``si.run`` calls
with one bottleneck each, then merged. Each repeat starts from an empty accuracy cache (a
fresh ``$SPLITIMPERA_CACHE``; the model profile is cached in both, as a user's would be).
Both ways must give the same points and ranks (asserted). Medians over repeats, same run.

    .venv/bin/python benchmarks/bench_design_points.py [--repeats 3] [--engine analytic|simpy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

import pandas as pd  # noqa: E402

import splitimpera as si  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "scenarios" / "demo.yaml"
BOTTLENECKS = ["none", "fp16", "int8", "int4", "int2"]


def _fresh_cache(warm: Path) -> Path:
    """A cache holding the warm one's model profile but no accuracy measurement."""
    d = Path(tempfile.mkdtemp(prefix="bench-points-"))
    for kind in warm.iterdir():
        if kind.is_dir() and kind.name != "accuracy":
            shutil.copytree(kind, d / kind.name)
    os.environ["SPLITIMPERA_CACHE"] = str(d)
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engine", default="analytic", choices=["analytic", "simpy"])
    args = ap.parse_args()
    warm = Path(tempfile.mkdtemp(prefix="bench-points-warm-"))
    os.environ["SPLITIMPERA_CACHE"] = str(warm)
    base = {"bottleneck.coder": "zstd", "analysis.engine": args.engine}
    si.run(si.load_scenario(DEMO, {**base}))  # profile cached, imports warm

    joint_t, sep_t = [], []
    for _ in range(args.repeats):
        d = _fresh_cache(warm)
        t0 = time.perf_counter()
        joint = si.run(si.load_scenario(DEMO, {**base, "bottleneck.name": BOTTLENECKS}))
        joint_t.append(time.perf_counter() - t0)
        shutil.rmtree(d, ignore_errors=True)
        d = _fresh_cache(warm)
        t0 = time.perf_counter()
        singles = [si.run(si.load_scenario(DEMO, {**base, "bottleneck.name": b})) for b in BOTTLENECKS]
        sep_t.append(time.perf_counter() - t0)
        shutil.rmtree(d, ignore_errors=True)

    merged = pd.concat([s.table for s in singles])
    order = merged[merged["feasible"]].assign(
        pos=lambda t: t.index.get_level_values("bottleneck").map(BOTTLENECKS.index)).sort_values(
        ["score", "latency_s", "bytes_sent", "index", "pos"], kind="stable").index
    t = joint.table
    assert list(t[t["feasible"]].sort_values("rank").index) == list(order), "joint ranking != merged"
    for col in ("bytes_sent", "accuracy", "latency_s"):
        assert t[col].reindex(merged.index).equals(merged[col]), col

    j, s = statistics.median(joint_t), statistics.median(sep_t)
    print(f"demo, {len(BOTTLENECKS)} bottlenecks x {len(singles[0].table)} splits = {len(t)} design points, "
          f"engine {args.engine}, coder zstd, empty accuracy cache; median of {args.repeats}")
    print(f"{'way':<34} {'seconds':>8}  spread")
    print(f"{'one run, all bottlenecks (joint)':<34} {j:>8.2f}  {min(joint_t):.2f}-{max(joint_t):.2f}")
    print(f"{'five runs, one bottleneck each':<34} {s:>8.2f}  {min(sep_t):.2f}-{max(sep_t):.2f}")
    print(f"joint / separate: {j / s:.2f}x (same {len(order)} feasible points in the same order: checked)")
    shutil.rmtree(warm, ignore_errors=True)


if __name__ == "__main__":
    main()
