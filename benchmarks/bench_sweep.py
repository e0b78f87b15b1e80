"""Sweep throughput: points per second in-process (``--workers 0``) and on a local Dask cluster
of 1 and 2 worker processes, and the per-point cost of the evaluate step (demo, analytic engine).

The sweep: the demo over network × devices × latency limit × device class (one prepared
group: the heavy stages run once, every point runs only the evaluate step). Each mode runs the
sweep end to end with a warm disk cache (its prepare step included, results written to a
temporary folder as they finish); a cluster is started and warmed up (its workers import the
package and run the sweep once) before it is timed. Targets: 2 workers ≥ 1.7× 1 worker, and
evaluate ≤ 5 ms per point. Exits 1 when a target is missed.

    .venv/bin/python benchmarks/bench_sweep.py [--points 2000] [--repeats 40]
"""

from __future__ import annotations

import argparse
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
from splitimpera.sweep.run import evaluate_chunk, prepare_task  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scenarios/demo.yaml"
SPEEDUP_TARGET = 1.7
EVALUATE_TARGET_S = 0.005


def spec(points: int) -> dict:
    """About ``points`` points of the demo, analytic engine, one bottleneck (one prepare)."""
    nets = ["3g", "lte", "wifi4", "wifi5", "wifi6", "5g_midband", "ethernet"]
    devices = ["rpi4", "jetson_nano"]
    n_dev = [1, 2, 3, 4, 6, 8, 12, 16]
    limits = max(1, round(points / (len(nets) * len(devices) * len(n_dev))))
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


def evaluate_cost(sp: dict, repeats: int) -> tuple[float, float]:
    """Median seconds per point of (``si.evaluate`` alone, a worker's whole per-point step:
    the point's scenario built from the base, evaluate, its summary row and table rows)."""
    sw = load_sweep(sp)
    prep = prepare_task(sw.base_scenario)
    pts = [(i, k, v) for i, (k, v) in enumerate(zip(sw.keys, sw.values))][:repeats]
    scs = [sw.base.scenario(v) for _, _, v in pts]
    for sc in scs:  # first visits: transport tables per link, compute times per device
        si.evaluate(sc, prep)
    ev, step = [], []
    for sc, p in zip(scs, pts):
        t0 = time.perf_counter()
        si.evaluate(sc, prep)
        t1 = time.perf_counter()
        evaluate_chunk(prep, sw.base, [p])
        step.append(time.perf_counter() - t1)
        ev.append(t1 - t0)
    return statistics.median(ev), statistics.median(step)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=2000, help="approximate sweep size")
    ap.add_argument("--repeats", type=int, default=40, help="points timed for the per-point cost")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    sp = spec(args.points)
    n = len(load_sweep(sp).values)
    print(f"sweep: the demo (analytic engine) over {' × '.join(sp['grid'])}: {n} points, one prepared group")
    si.sweep(sp)  # warm the disk cache (model, profile, accuracy)

    ev_s, step_s = evaluate_cost(sp, args.repeats)
    print(f"per point: evaluate {ev_s * 1e3:.2f} ms (median of {args.repeats}); whole step in a worker "
          f"(scenario, evaluate, summary) {step_s * 1e3:.2f} ms")

    rates = {}
    dt, _ = timed_sweep(sp)
    rates[0] = n / dt
    print(f"--workers 0: {dt:6.1f} s  {rates[0]:7.1f} points/s")
    for w in (1, 2):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            start = time.perf_counter() - t0
            timed_sweep(sp, client)  # warm-up: workers import the package, fill their transport tables
            dt, _ = timed_sweep(sp, client)
        rates[w] = n / dt
        print(f"--workers {w}: {dt:6.1f} s  {rates[w]:7.1f} points/s  (cluster start {start:.1f} s, not counted)")
    speedup = rates[2] / rates[1]
    print(f"2 workers / 1 worker: {speedup:.2f}x (target >= {SPEEDUP_TARGET}x); "
          f"evaluate {ev_s * 1e3:.2f} ms per point (target <= {EVALUATE_TARGET_S * 1e3:.0f} ms)")
    return 0 if speedup >= SPEEDUP_TARGET and ev_s <= EVALUATE_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
