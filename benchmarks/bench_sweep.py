"""Sweep throughput: the batch evaluate on one core, points per second in-process
(``--workers 0``) and on a local Dask cluster of 1 and 2 worker processes, and the per-point
cost of a single evaluate (demo, analytic engine).

Batch evaluate: the demo over network × device × latency limit (one prepared group), every
point's scenario built first, then ``evaluate_batch`` on all of them (arrays, ranking,
advice), then the chunk's long table; checked equal to ``si.evaluate`` of each point alone
(asserted, every point). Sweeps: the demo over network × devices × latency limit × device
class, end to end with a warm disk cache (prepare, results written as they finish), at
``--points`` and at ``--large`` points; a cluster is started and warmed up before it is
timed. Medians and spreads over ``--repeats``, the load average beside them: on a shared
machine the ratios measured in one run are what to compare. Targets: batch evaluate ≥ 20,000
points/s, 2 workers ≥ 1.7× 1 worker. Exits 1 when a target is missed.

    .venv/bin/python benchmarks/bench_sweep.py [--points 2000] [--large 10000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import numpy as np  # noqa: E402

import splitimpera as si  # noqa: E402
from splitimpera.sweep import load_sweep  # noqa: E402
from splitimpera.batch import evaluate_batch  # noqa: E402
from splitimpera.sweep.run import prepare_task  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scenarios/demo.yaml"
SPEEDUP_TARGET = 1.7
BATCH_TARGET = 20_000  # points/s, one core


def spec(points: int) -> dict:
    """About ``points`` points of the demo, analytic engine, one bottleneck (one prepare)."""
    nets = ["3g", "lte", "wifi4", "wifi5", "wifi6", "5g_midband", "ethernet"]
    devices = ["rpi4", "jetson_nano"]
    n_dev = [1, 2, 3, 4, 6, 8, 12, 16]
    per_limit = len(nets) * len(devices) * len(n_dev)
    limits = max(1, min(round(points / per_limit), 100_000 // per_limit))  # a sweep holds at most 10^5 points
    return {"name": "bench_sweep", "base": str(DEMO), "set": {"analysis.engine": "analytic"},
            "grid": {"network": nets, "device": devices, "workload.num_devices": n_dev,
                     "qos.max_latency_ms": [float(v) for v in np.linspace(30, 150, limits).round(1)]}}


def timed_sweep(sp: dict, client=None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        t0 = time.perf_counter()
        res = si.sweep(sp, client, out_dir=out)
        dt = time.perf_counter() - t0
    bad = int((res.summary["status"] != "ok").sum())
    if bad:
        raise SystemExit(f"{bad} points failed: {res.failed['error'].iloc[0]}")
    return dt, len(res.summary)


def batch_grid() -> dict:
    """The demo over network × device × latency limit: 7 × 2 × 144 = 2,016 points."""
    nets = ["3g", "lte", "wifi4", "wifi5", "wifi6", "5g_midband", "ethernet"]
    return {"name": "bench_batch", "base": str(DEMO), "set": {"analysis.engine": "analytic"},
            "grid": {"network": nets, "device": ["rpi4", "jetson_nano"],
                     "qos.max_latency_ms": [float(v) for v in np.linspace(20, 163, 144).round(1)]}}


def batch_cost(repeats: int) -> dict:
    """Seconds per point of: building the scenarios, ``evaluate_batch`` (arrays, ranking,
    advice), the long table; and of ``si.evaluate`` one point at a time. Asserts the batch
    equals the single evaluate on every point."""
    sw = load_sweep(batch_grid())
    prep = prepare_task(sw.base_scenario)
    t0 = time.perf_counter()
    scs = [sw.base.scenario(v) for v in sw.values]
    build = (time.perf_counter() - t0) / len(scs)
    evaluate_batch(scs[:50], prep)  # first visits: compute times per device, transport tables per link
    ev, tab = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = evaluate_batch(scs, prep)
        t1 = time.perf_counter()
        batch.long_table()
        ev.append((t1 - t0) / len(scs))
        tab.append((time.perf_counter() - t1) / len(scs))
    single = []
    for i, sc in enumerate(scs):
        t0 = time.perf_counter()
        res = si.evaluate(sc, prep)
        single.append(time.perf_counter() - t0)
        want, got = res.table, batch.table(i)
        for c in want.columns:  # bit for bit, every column
            assert want[c].equals(got[c]), (i, c)
        assert res.advice == batch.advice[i], i
    return {"points": len(scs), "build": build, "batch": ev, "table": tab, "single": single,
            "infeasible": sum(1 for a in batch.advice if a)}


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    """``median (min–max)`` of ``xs`` × ``scale``."""
    return f"{statistics.median(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}–{max(xs) * scale:{fmt}})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average unknown"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=2000, help="sweep size for the 0/1/2-worker comparison")
    ap.add_argument("--large", type=int, nargs="*", default=[10_000], help="larger sweeps, 1 and 2 workers")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; {load()}")
    c = batch_cost(args.repeats)
    b_rate = [1 / x for x in c["batch"]]
    print(f"batch evaluate, demo over network × device × latency limit ({c['points']} points, analytic, one core; "
          f"{c['infeasible']} with nothing feasible, advised):")
    print(f"  evaluate_batch {spread(b_rate, 1, ',.0f')} points/s ({spread(c['batch'], 1e6)} µs a point); "
          f"its long table {spread(c['table'], 1e6)} µs a point; building the scenarios {c['build'] * 1e6:.0f} µs "
          f"a point")
    print(f"  si.evaluate one point at a time: {spread(c['single'], 1e3, '.2f')} ms a point "
          f"({statistics.median(c['single']) / statistics.median(c['batch']):,.0f}x the batch's time a point); "
          f"batch == single evaluate on all {c['points']} points (asserted); {load()}")

    ok = statistics.median(b_rate) >= BATCH_TARGET
    for size in [args.points, *args.large]:
        sp = spec(size)
        n = len(load_sweep(sp).values)
        si.sweep(sp)  # warm the disk cache (model, profile, accuracy)
        print(f"sweep: the demo over {' × '.join(sp['grid'])}: {n:,} points, one prepared group; {load()}")
        rates = {}
        for w in ((0, 1, 2) if size == args.points else (1, 2)):
            if w == 0:
                dts = [timed_sweep(sp)[0] for _ in range(args.repeats)]
                start = 0.0
            else:
                t0 = time.perf_counter()
                with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, Client(cluster) as client:
                    start = time.perf_counter() - t0
                    timed_sweep(sp, client)  # warm-up: workers import the package, fill their transport tables
                    dts = [timed_sweep(sp, client)[0] for _ in range(args.repeats)]
            rates[w] = [n / dt for dt in dts]
            extra = f"  (cluster start {start:.1f} s, not counted)" if w else ""
            print(f"  --workers {w}: {spread(dts)} s  {spread(rates[w], 1, ',.0f')} points/s{extra}; {load()}")
        speedup = statistics.median(rates[2]) / statistics.median(rates[1])
        print(f"  2 workers / 1 worker: {speedup:.2f}x (target >= {SPEEDUP_TARGET}x)")
        ok &= speedup >= SPEEDUP_TARGET
    print(f"batch evaluate {statistics.median(b_rate):,.0f} points/s (target >= {BATCH_TARGET:,}); {load()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
