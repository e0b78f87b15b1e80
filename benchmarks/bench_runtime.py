"""The simulator against the real split run on this machine, side by side.

**Fidelity.** For the demo, ``resnet18`` and ``mobilenet_v3_small`` (random weights, noise
inputs: latency does not depend on either), at two uplink rates (loopback shaped by tbf in a
private network namespace; needs root) and two server loads (the scenario's idle rate, and
per split the rate that loads the server to ρ ≈ 0.7), ``splitimpera measure`` runs ``serve``
and ``device`` processes pinned to separate cores and simulates the same arrivals in measured
mode. Prints every point and then, per model and overall, the median and max |error| of the
mean and p95 end-to-end latency and the median |error| of each component.

**Reliability** (``--reliability``, on by default): four device processes against one server
at ρ ≈ 0.9 for at least 60 s; every request is answered or counted as lost. Then again, with
and without one hostile client per attack of ``_attacks.py`` (idle connections,
slowloris, a client that never reads, headers claiming the largest body, a bad request
between good ones, wrong tokens and garbage): what the devices sent, got answered, were told
busy or lost, the server's named outcomes, its RSS, and p50/p99 of the devices.

``--quick``: one model, one rate, idle and loaded, fewer requests (a few minutes). Without
root (or without ``unshare``/``tc``) the fidelity part runs over the unshaped loopback.
Run it on an otherwise idle machine: the other processes' load shows up as error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from splitimpera.runtime.server import OUTCOMES, unaccounted

ROOT = Path(__file__).resolve().parent.parent
GRID = {
    # scenario, splits, uplink rates (Mbit/s)
    "demo": ("demo", ["input", "features_4", "features_9", "classifier_1", "output"], [5, 20]),
    "resnet18": ("measure_resnet18", ["add_3", "add_5", "add_7", "flatten"], [20, 100]),
    "mobilenet_v3_small": ("measure_mobilenet_v3_small", ["add_3", "add_5", "avgpool", "classifier_1"], [20, 100]),
}


def can_shape() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "tc", "ip"))


def run_measure(scenario: str, splits: list[str], rate: float | None, load: float | None, requests: int,
                out: Path, extra: list[str] = ()) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "splitimpera.cli", "measure", scenario, "--splits", *splits, "--requests",
           str(requests), "-o", str(out), "-q", *extra]
    if rate is not None:
        cmd += ["--netns", str(rate)]
    if load is not None:
        cmd += ["--server-load", str(load)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"measure failed ({p.returncode}):\n{p.stderr[-3000:]}")
    name = scenario if "/" not in scenario else Path(scenario).stem
    folder = out / name
    doc = json.loads((folder / "fidelity.json").read_text())
    return pd.read_csv(folder / "fidelity.csv").assign(uplink_mbps=doc["setup"]["link"]["uplink_mbps"])


def testbed_credit_s(folder: Path, rate_mbps: float) -> pd.Series:
    """Per split: what tbf lets through unshaped after an idle gap, one frame (≤ 1,500 B on the
    wire: the request's first segment with its TCP/IP headers) at the shaped rate. The
    simulated radio link has no such credit; this is the testbed's, not the model's."""
    meas = pd.read_parquet(folder / "measured.parquet")
    wire = meas.groupby("split")["frame_bytes"].mean() + 52.0
    return np.minimum(wire, 1500.0) * 8 / (rate_mbps * 1e6)


def with_adjusted(df: pd.DataFrame, folder: Path, shaped: bool) -> pd.DataFrame:
    """``err_adj_latency_mean_s``: the error once the testbed's credit is taken off the simulated uplink."""
    df = df.copy()
    credit = (df["split"].map(testbed_credit_s(folder, float(df["uplink_mbps"].iloc[0]))).fillna(0.0)
              if shaped else pd.Series(0.0, index=df.index))
    credit = np.minimum(credit, df["sim_uplink_s"])
    for m in ("latency_mean_s", "latency_p95_s"):
        df[f"err_adj_{m}"] = (df[f"sim_{m}"] - credit - df[f"meas_{m}"]) / df[f"meas_{m}"]
    return df


MODES = {"measured": "old (no overhead terms)", "overhead": "new (overhead, spread, dispatch, floor)"}
COMPONENTS = ["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s"]


def error_stats(df: pd.DataFrame) -> dict:
    """Median and max |error| and the signed median, of the mean and p95 latency (with and
    without the tbf credit) and the median |error| of each component that is not ~0."""
    out = {"points": len(df)}
    for m in ("latency_mean_s", "latency_p95_s"):
        e = df[f"err_{m}"]
        adj = df.get(f"err_adj_{m}", e)
        out[m] = (e.abs().median(), e.abs().max(), e.median(), adj.abs().median(), adj.abs().max())
    for c in COMPONENTS:
        big = df[(df[f"meas_{c}"] > 50e-6) | (df[f"sim_{c}"] > 50e-6)]
        out[c] = big[f"err_{c}"].abs().median() if len(big) else np.nan
    return out


def summarize(df: pd.DataFrame, label: str) -> str:
    """One block per group: old and new mode side by side."""
    lines = []
    for mode, name in MODES.items():
        g = df[df["mode"] == mode]
        if not len(g):
            continue
        st = error_stats(g)
        m, p = st["latency_mean_s"], st["latency_p95_s"]
        comps = ", ".join(f"{c.replace('_s', '')} {st[c] * 100:.1f}%" for c in COMPONENTS if np.isfinite(st[c]))
        lines.append(f"{label:<22} {name:<40} {st['points']:>3} pts  mean: median {m[0] * 100:5.1f}% max "
                     f"{m[1] * 100:6.1f}% signed {m[2] * 100:+6.1f}%   p95: median {p[0] * 100:5.1f}% max "
                     f"{p[1] * 100:6.1f}% signed {p[2] * 100:+6.1f}%   | without the tbf credit: mean {m[3] * 100:5.1f}% "
                     f"(max {m[4] * 100:5.1f}%), p95 {p[3] * 100:5.1f}% (max {p[4] * 100:5.1f}%)   components "
                     f"(median): {comps}")
    return "\n".join(lines)


def fidelity(quick: bool, out: Path) -> pd.DataFrame:
    shaped = can_shape()
    if not shaped:
        print("no root/unshare/tc: measuring over the unshaped loopback")
    grid = {"demo": GRID["demo"]} if quick else GRID
    parts = []
    for model, (scen, splits, rates) in grid.items():
        for rate in (rates[:1] if quick else rates) if shaped else [None]:
            for load in (None, 0.7):
                t0 = time.perf_counter()
                folder = out / f"{model}_{rate}_{load}"
                df = run_measure(scen, splits, rate, load, 30 if quick else 40, folder)
                df = with_adjusted(df, folder / scen, shaped)
                df = df.assign(model=model, load="idle" if load is None else f"rho {load}")
                parts.append(df)
                for _, r in df.iterrows():
                    print(f"  {r['mode']:<9} {model:<18} {r['uplink_mbps']:>8.4g} Mbit/s {r['load']:<8} {r['split']:<14} "
                          f"rate {r['rate_hz']:>7.3g} Hz ρ {r['server_rho']:.2f}  mean sim/meas "
                          f"{r['sim_latency_mean_s'] * 1e3:8.3f}/{r['meas_latency_mean_s'] * 1e3:8.3f} ms "
                          f"{r['err_latency_mean_s'] * 100:+6.1f}%   p95 {r['sim_latency_p95_s'] * 1e3:8.3f}/"
                          f"{r['meas_latency_p95_s'] * 1e3:8.3f} ms {r['err_latency_p95_s'] * 100:+6.1f}%   "
                          f"uplink {r['sim_uplink_s'] * 1e3:.3g}/{r['meas_uplink_s'] * 1e3:.3g} ms  "
                          f"lost {r['lost']}", flush=True)
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    df = pd.concat(parts, ignore_index=True)
    report(df)
    return df


def report(df: pd.DataFrame) -> None:
    print("\n== fidelity: (simulated − measured) / measured, measured compute mode, old and new model")
    for model, g in df.groupby("model", sort=False):
        print(summarize(g, model))
    for load, g in df.groupby("load", sort=False):
        print(summarize(g, f"all, {load}"))
    print(summarize(df, "all"))


def summarize_folder(out: Path) -> None:
    """The summary again from the folders a previous run kept (``-o``)."""
    parts = []
    for model, (scen, _, rates) in GRID.items():
        for rate in rates:
            for load in (None, 0.7):
                folder = out / f"{model}_{rate}_{load}" / scen
                if not (folder / "fidelity.csv").is_file():
                    continue
                doc = json.loads((folder / "fidelity.json").read_text())
                df = pd.read_csv(folder / "fidelity.csv").assign(uplink_mbps=doc["setup"]["link"]["uplink_mbps"])
                shaped = doc["setup"]["link"]["kind"].startswith("tbf")
                parts.append(with_adjusted(df, folder, shaped).assign(
                    model=model, load="idle" if load is None else f"rho {load}"))
    report(pd.concat(parts, ignore_index=True))


def reliability(out: Path, seconds: float) -> None:
    """Four devices, one server, ρ ≈ 0.9, ≥ ``seconds``: answered + lost = sent, none missing."""
    # demo `input`: the server runs the whole model (~1.5 ms), the devices only encode, so the
    # four device processes sharing one core keep up while the server is at ρ 0.9.
    probe = run_measure("demo", ["input"], None, 0.9, 20, out / "probe", ["--set", "workload.num_devices=4"])
    rate = float(probe["rate_hz"].iloc[0])
    n = int(np.ceil(seconds * rate / 0.9))  # the first 10 % are warm-up and dropped from the table
    t0 = time.perf_counter()
    df = run_measure("demo", ["input"], None, 0.9, n, out / "reliability", ["--set", "workload.num_devices=4"])
    took = time.perf_counter() - t0
    folder = out / "reliability" / "demo"
    meas = pd.read_parquet(folder / "measured.parquet")
    counters = json.loads((folder / "fidelity.json").read_text())["setup"]["server_counters"]
    per_dev = n
    print(f"\n== reliability: 4 devices × {per_dev} requests at {rate:.4g} Hz each (server ρ "
          f"{df['server_rho'].iloc[0]:.2f}), {per_dev / rate:.0f} s of arrivals, run took {took:.0f} s")
    print(f"   server: {counters}")
    kept = len(meas)
    outcomes = meas["outcome"].value_counts().to_dict()
    named = {k: v for k, v in counters.items() if k in OUTCOMES and k != "replies"}
    ok = counters.get("requests") == 4 * per_dev and not unaccounted(counters)
    print(f"   after warm-up: {kept} requests kept, outcomes {outcomes}; server requests "
          f"{counters.get('requests')} = replies {counters.get('replies')} + {named}: "
          f"{'OK' if ok else 'MISMATCH'} (measure reconciled every outcome with the devices)")
    print(f"   measured mean latency {df['meas_latency_mean_s'].iloc[0] * 1e3:.3f} ms (simulated "
          f"{df['sim_latency_mean_s'].iloc[0] * 1e3:.3f} ms), p95 {df['meas_latency_p95_s'].iloc[0] * 1e3:.3f} ms "
          f"(simulated {df['sim_latency_p95_s'].iloc[0] * 1e3:.3f} ms); four device processes share one core")
    for _, r in df.iterrows():  # old and new model: does the new one flag the saturation?
        print(f"   {MODES.get(r['mode'], r['mode'])}: simulated mean {r['sim_latency_mean_s'] * 1e3:.3f} ms, "
              f"p95 {r['sim_latency_p95_s'] * 1e3:.3f} ms; simulated server ρ with overhead "
              f"{r.get('sim_server_rho', float('nan')):.2f}")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(out: Path, rate: float, n: int, attack: bool) -> dict:
    """``serve`` and four ``device`` processes (demo, split ``input``, ``rate`` Hz each); with
    ``attack`` one thread per hostile client of _attacks.py for the whole run."""
    import threading

    from _attacks import ATTACKS

    from splitimpera.runtime.device import outcome_counts
    from splitimpera.runtime.server import unaccounted

    sets = ["--set", "workload.num_devices=4", "--set", f"workload.rate_hz={rate}"]
    cli = [sys.executable, "-m", "splitimpera.cli"]
    srv = subprocess.Popen([*cli, "serve", "demo", "--splits", "input", *sets], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = srv.stdout.readline()
    host, _, port = line.split()[-1].rpartition(":")
    address = (host, int(port))
    rss0 = _rss_mib(srv.pid)
    stop, threads, said = threading.Event(), [], {}
    if attack:
        for fn in ATTACKS:
            t = threading.Thread(target=lambda f=fn: said.update({f.__name__: f(address, stop)}), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(2.0)  # the attackers hold their connections before the devices start
    start_at = time.monotonic_ns() + int(8e9)
    devs = [subprocess.Popen([*cli, "device", "demo", "--server", line.split()[-1], "--split", "input",
                              "--device-id", str(k), "--requests", str(n), "--start-at", str(start_at),
                              "--same-clock", "-q", "-o", str(out / f"dev{int(attack)}-{k}.parquet"), *sets],
                             stderr=subprocess.DEVNULL, cwd=ROOT) for k in range(4)]
    peak = rss0
    while any(d.poll() is None for d in devs):
        peak = max(peak, _rss_mib(srv.pid))
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    rss1 = _rss_mib(srv.pid)
    srv.send_signal(signal.SIGTERM)
    text, _ = srv.communicate(timeout=60)
    counters = next(json.loads(x[6:]) for x in text.splitlines() if x.startswith("stats "))
    df = pd.concat([pd.read_parquet(out / f"dev{int(attack)}-{k}.parquet") for k in range(4)])
    lat = df.loc[df["answered"], "latency_s"]
    return {"devices": outcome_counts(df), "server": counters, "unaccounted": unaccounted(counters),
            "rss_mib": (rss0, peak, rss1), "p50_ms": lat.quantile(0.5) * 1e3, "p99_ms": lat.quantile(0.99) * 1e3,
            "attacks": said}


def reliability_attacked(out: Path, seconds: float) -> None:
    """The reliability run again, with and without one hostile client per attack: the
    well-behaved devices lose nothing, every request the server read has a named outcome."""
    probe = run_measure("demo", ["input"], None, 0.9, 20, out / "probe-attack", ["--set", "workload.num_devices=4"])
    rate = float(probe["rate_hz"].iloc[0])
    n = int(np.ceil(seconds * rate))
    print(f"\n== under attack: 4 devices × {n} requests at {rate:.4g} Hz each (server ρ ≈ 0.9), split input")
    for attack in (False, True):
        r = one_run(out, rate, n, attack)
        d, c = r["devices"], r["server"]
        named = {k: v for k, v in c.items() if k not in ("requests", "replies", "connections") and v}
        print(f"   {'with' if attack else 'without'} attackers: devices sent {d['sent']}, answered {d['answered']}, "
              f"busy {d['busy'] + d['expired']}, refused {d['error']}, lost {d['lost']}; p50 {r['p50_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms")
        print(f"      server: requests {c.get('requests', 0)} = replies {c.get('replies', 0)} + named "
              f"{sum(c.get(k, 0) for k in ('busy', 'expired', 'draining', 'request_errors', 'dropped'))} "
              f"(unaccounted {r['unaccounted']}); RSS {r['rss_mib'][0]:.0f} MiB before, peak {r['rss_mib'][1]:.0f}, "
              f"after {r['rss_mib'][2]:.0f}; connections {c.get('connections', 0)}")
        print(f"      named: {named}")
        for k, v in r["attacks"].items():
            print(f"      {k}: {v}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-reliability", dest="reliability", action="store_false")
    ap.add_argument("--no-fidelity", dest="fidelity", action="store_false")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-attacks", dest="attacks", action="store_false",
                    help="skip the reliability run under hostile clients")
    ap.add_argument("-o", "--output", default=None, help="keep the measure folders here (default: a temp folder)")
    ap.add_argument("--summarize", metavar="DIR", help="only print the summary of the folders a run kept in DIR")
    args = ap.parse_args()
    if args.summarize:
        summarize_folder(Path(args.summarize))
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        out = Path(args.output) if args.output else Path(tmp)
        if args.fidelity:
            fidelity(args.quick, out)
        if args.reliability:
            reliability(out, 20.0 if args.quick else args.seconds)
            if args.attacks:
                reliability_attacked(out, 20.0 if args.quick else args.seconds)


if __name__ == "__main__":
    main()
