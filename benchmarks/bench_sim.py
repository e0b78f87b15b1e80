"""Simulation speed: SimPy path vs the analytic model, simulated requests per second.

SimPy: 4 devices, 1 server worker, one split (digits_cnn ``features_9`` over Wi-Fi 5, Poisson
arrivals, jitter and loss on, so the link is shared and the server queues now and then).
Analytic: :func:`analytic_latency` on a profile holding every split once per request
(splits × requests rows, one vectorised call). Medians over repeats, one core, same run.

    .venv/bin/python benchmarks/bench_sim.py [--repeats 5] [--requests 5000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import splitimpera as si
from splitimpera.latency.analytic import analytic_latency
from splitimpera.latency.engine import point_frame
from splitimpera.latency.simulation import simulate_point

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def median_rate(fn, items: int, repeats: int) -> tuple[float, float]:
    """(median items/s, median seconds) over ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return items / t, t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--requests", type=int, default=5000, help="requests per device")
    args = ap.parse_args()

    prof = si.profile_model(si.load_model("digits_cnn", "none"), (1, 32, 32))
    sc = si.load_scenario(REPO / "scenarios/demo.yaml", overrides={
        "network": "wifi5", "workload.num_devices": 4, "workload.rate_hz": 200, "workload.arrival": "poisson",
        "workload.num_requests": args.requests, "workload.warmup_fraction": 0})
    split = "features_9"
    frame = point_frame(prof.loc[[split]])
    point = (split, "none")
    n_sim = sc.workload.num_devices * args.requests
    sim_rate, sim_t = median_rate(lambda: simulate_point(point, frame, sc), n_sim, args.repeats)
    req = simulate_point(point, frame, sc)
    alone = analytic_latency(prof, sc.model_copy(update={"workload": sc.workload.model_copy(
        update={"num_devices": 1})})).loc[split, "latency_s"]

    reps = 10_000
    big = prof.iloc[np.tile(np.arange(len(prof)), reps)]
    n_ana = len(big)
    ana_rate, ana_t = median_rate(lambda: analytic_latency(big, sc), n_ana, args.repeats)

    print(f"median of {args.repeats} repeats, one core")
    print(f"{'path':<10} {'requests':>10} {'seconds':>9} {'requests/s':>12}")
    print(f"{'simpy':<10} {n_sim:>10} {sim_t:>9.3f} {sim_rate:>12,.0f}   "
          f"(4 devices, 1 server, split {split}; mean latency {req['latency_s'].mean() * 1e3:.2f} ms, "
          f"{alone * 1e3:.2f} ms alone)")
    print(f"{'analytic':<10} {n_ana:>10} {ana_t:>9.3f} {ana_rate:>12,.0f}   "
          f"({len(prof)} splits x {reps} requests, one call)")
    print(f"analytic / simpy: {ana_rate / sim_rate:,.0f}x")


if __name__ == "__main__":
    main()
