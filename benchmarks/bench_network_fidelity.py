"""Transfer times: our transport model against ns-3, side by side.

For every point of a grid (rate × RTT × payload × loss; TCP over a new and an idle
connection, UDP), ns-3 3.44 runs point-to-point transfers with the same settings as the
model (``splitimpera.latency.ns3.p2p``: NewReno, MSS 1448, initial window 10, ACK every
segment, min RTO 200 ms, SYN timeout 1 s, 4 MiB receive window, deep queue, random packet
loss on the data direction) and the model computes its mean. Lossy points average many ns-3
RNG runs — enough for about 40 runs that see a loss, at least 30, so that rare losses on a
short transfer are not missed — and report ns-3's standard error beside our error.

Prints per point ns-3's mean, ours, the error, and the old model's
(``wire bytes / rate / (1 − loss) + RTT/2``); then median and p90 |error| per (transport,
connection, lossy). With ``--wifi`` (default on), per-station Wi-Fi throughput under
contention from ns-3 802.11 against the profiles' contention curves.

Needs the ``[ns3]`` extra (``pip install 'splitimpera[ns3]'``); skips with a message without
it. ``--quick`` runs a smaller grid (a minute or two). Full grid: ~10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time

import numpy as np

from splitimpera.latency import ns3
from splitimpera.latency.transport import Path, expected_transfer

MSS, TCP_HDR, UDP_HDR = 1448, 52 + 2, 28 + 2  # IPv4 + TCP (timestamps) / UDP, + ns-3's 2-byte PPP header


def old_model_s(rate, rtt, loss, b, hdr):
    """The link model before the transport model: wire bytes / rate / (1 − loss) + RTT/2."""
    mss = 1500 - (hdr - 2)
    wire = b + math.ceil(b / mss) * hdr
    return wire * 8 / rate / (1 - loss) + rtt / 2


def ns3_runs(loss, transmissions, b, quick):
    if loss == 0:
        return 1
    p_any = 1 - (1 - loss) ** transmissions
    runs = max(30, math.ceil(40 / p_any))
    cap = max(30, int((1e8 if quick else 3e8) / b))  # big transfers: fewer runs, each is long
    return int(min(1500, runs, cap))


def tcp_rows(rates, rtts, sizes, losses, quick):
    from splitimpera.latency.ns3 import p2p

    rows = []
    for rate, rtt, loss, b, conn in itertools.product(rates, rtts, losses, sizes, ("new", "idle")):
        if b / rate * 8 > 20:  # > 20 s of serialisation: outside split computing
            continue
        path = Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=loss, mss=MSS, header=TCP_HDR,
                    variant="newreno")
        ours = expected_transfer(path, b, conn).time_s
        runs = ns3_runs(loss, math.ceil(b / MSS) + (conn == "new"), b, quick)
        xs = [p2p.tcp_transfer_s(rate, rtt, b, loss, connection=conn, run=r) for r in range(1, runs + 1)]
        ref = statistics.fmean(xs)
        se = statistics.stdev(xs) / math.sqrt(runs) / ref if runs > 1 else 0.0
        old = old_model_s(rate, rtt, loss, b, TCP_HDR) + (rtt if conn == "new" else 0.0)
        rows.append(dict(transport="tcp", connection=conn, lossy=loss > 0, rate=rate, rtt=rtt, loss=loss, bytes=b,
                         runs=runs, ns3=ref, se=se, ours=ours, err=(ours - ref) / ref, old_err=(old - ref) / ref))
    return rows


def udp_rows(rates, rtts, sizes, losses, quick):
    from splitimpera.latency.ns3 import p2p
    from splitimpera.latency.transport import udp_transfer_s

    rows = []
    for rate, rtt, loss, b in itertools.product(rates, rtts, losses, sizes):
        if b / rate * 8 > 20:
            continue
        path = Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=loss, mss=1500 - 28, header=UDP_HDR,
                    transport="udp")
        ours = float(udp_transfer_s(path, b))
        packets = math.ceil(b / (1500 - 28))
        frames = 1 if loss == 0 else (200 if quick else 1000)
        ref, lost = p2p.udp_frames(rate, rtt, b, loss, frames=frames, run=1)
        ours_loss = 1 - (1 - loss) ** packets
        rows.append(dict(transport="udp", connection="-", lossy=loss > 0, rate=rate, rtt=rtt, loss=loss, bytes=b,
                         runs=frames, ns3=ref, se=0.0, ours=ours, err=(ours - ref) / ref,
                         old_err=(old_model_s(rate, rtt, loss, b, UDP_HDR) - ref) / ref,
                         ns3_frame_loss=lost, ours_frame_loss=ours_loss))
    return rows


# The two variants against both ns-3 stacks. The grid the linux variant was developed on
# (VALIDATION) is kept apart from the sealed one it is judged on (test_grid: drawn by a fixed
# rule before any of its points was run, and run once).
VALIDATION = dict(rates=[1.1e6, 20e6, 100e6], rtts=[0.01, 0.15], sizes=[16_000, 64_000, 256_000, 1_000_000])
# Seed 2029 drew the first sealed grid, run once before the linux variant's recovery was reworked
# (its figures stay in the results file); 2030 draws the second, run once after.
TEST_SEED, TEST_POINTS = 2030, 10


def test_grid(n=TEST_POINTS, seed=TEST_SEED):
    """``n`` (rate bit/s, RTT s, bytes) points, each log-uniform: 1–100 Mbit/s, 10–300 ms, 4–4,096 kB."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, 3))
    lo, hi = np.log([1e6, 0.01, 4_000]), np.log([100e6, 0.3, 4_096_000])
    pts = np.exp(lo + u * (hi - lo))
    return [(float(round(r, -3)), float(round(t, 4)), int(b)) for r, t, b in pts]


def variant_runs(loss, b):
    """ns-3 runs of a point: 1 without loss; with loss enough that rare timeouts are in the
    mean (1,500), fewer for big transfers (each run is long), never under 100."""
    return 1 if loss == 0 else int(min(1500, max(100, math.ceil(1.5e8 / b))))


def variant_rows(points, losses, stacks=("defaults", "matched"), connection="new"):
    """Per point and ns-3 stack: ns-3's mean (and its standard error) and both variants' means.
    Against ns-3 at its defaults the model takes ns-3's minimum RTO (1 s) and SYN timeout (3 s)."""
    from splitimpera.latency.ns3 import p2p

    rows = []
    for stack, loss, (rate, rtt, b) in itertools.product(stacks, losses, points):
        runs = variant_runs(loss, b)
        xs = [p2p.tcp_transfer_s(rate, rtt, b, loss, connection=connection, run=r, stack=stack)
              for r in range(1, runs + 1)]
        ref = statistics.fmean(xs)
        se = statistics.stdev(xs) / math.sqrt(runs) if runs > 1 else 0.0
        rto = (dict(min_rto_s=p2p.NS3_DEFAULT_MIN_RTO_MS * 1e-3, syn_rto_s=p2p.NS3_DEFAULT_SYN_RTO_MS * 1e-3)
               if stack == "defaults" else {})
        row = dict(stack=stack, connection=connection, rate=rate, rtt=rtt, loss=loss, bytes=b, runs=runs, ns3=ref, se=se)
        for v in ("linux", "newreno"):
            path = Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=loss, mss=MSS, header=TCP_HDR, variant=v, **rto)
            row[v] = expected_transfer(path, b, connection).time_s
        rows.append(row)
        print(f"{stack:8s} {connection:4s} {rate / 1e6:7.2f} {rtt * 1e3:6.1f} {loss * 100:4.1f}% {b:8d} {runs:5d} "
              f"{ref * 1e3:10.2f} ±{se * 1e3:7.2f} ({se / ref * 100:4.1f}%)  linux {row['linux'] * 1e3:10.2f} "
              f"{(row['linux'] - ref) / ref * 100:+6.1f}%  newreno {row['newreno'] * 1e3:10.2f} "
              f"{(row['newreno'] - ref) / ref * 100:+6.1f}%")
    return rows


def variant_summary(rows, title):
    print(f"\n{title}: median / p90 / max |error| of each variant against each ns-3 stack")
    for stack, lossy in sorted({(r["stack"], r["loss"] > 0) for r in rows}):
        sel = [r for r in rows if r["stack"] == stack and (r["loss"] > 0) == lossy]
        parts = []
        for v in ("linux", "newreno"):
            e = np.abs([(r[v] - r["ns3"]) / r["ns3"] for r in sel]) * 100
            parts.append(f"{v} {np.median(e):5.1f} / {np.percentile(e, 90):5.1f} / {e.max():5.1f} %")
        se = np.array([r["se"] / r["ns3"] for r in sel]) * 100
        print(f"ns-3 {stack:8s} loss {'1 %' if lossy else 'no '} {len(sel):3d} points: {';  '.join(parts)}"
              + (f"  (ns-3 se median {np.median(se):.1f} %, max {se.max():.1f} %)" if lossy else ""))


def print_rows(rows):
    print(f"{'proto':5s} {'conn':4s} {'Mbit/s':>7s} {'RTT ms':>6s} {'loss':>5s} {'bytes':>8s} {'runs':>5s} "
          f"{'ns-3 ms':>10s} {'±se':>6s} {'ours ms':>10s} {'error':>7s} {'old err':>8s}")
    for r in rows:
        extra = ""
        if "ns3_frame_loss" in r and r["lossy"]:
            extra = f"  frames lost ns-3 {r['ns3_frame_loss'] * 100:.1f} % ours {r['ours_frame_loss'] * 100:.1f} %"
        print(f"{r['transport']:5s} {r['connection']:4s} {r['rate'] / 1e6:7.2f} {r['rtt'] * 1e3:6.0f} "
              f"{r['loss'] * 100:4.1f}% {r['bytes']:8d} {r['runs']:5d} {r['ns3'] * 1e3:10.2f} {r['se'] * 100:5.1f}% "
              f"{r['ours'] * 1e3:10.2f} {r['err'] * 100:+6.1f}% {r['old_err'] * 100:+7.1f}%{extra}")


def summary(rows):
    print("\nmedian and p90 |error| vs ns-3 (old model beside):")
    print(f"{'transport':9s} {'connection':10s} {'loss':5s} {'points':>6s} {'median':>7s} {'p90':>7s} "
          f"{'old median':>10s} {'old p90':>8s}")
    keys = sorted({(r["transport"], r["connection"], r["lossy"]) for r in rows})
    for k in keys:
        sel = [r for r in rows if (r["transport"], r["connection"], r["lossy"]) == k]
        sel = [r for r in sel if not math.isnan(r["err"])]  # UDP: ns-3 delivered no frame (all lost)
        e = np.abs([r["err"] for r in sel]) * 100
        o = np.abs([r["old_err"] for r in sel]) * 100
        print(f"{k[0]:9s} {k[1]:10s} {'yes' if k[2] else 'no':5s} {len(sel):6d} {np.median(e):6.2f}% "
              f"{np.percentile(e, 90):6.2f}% {np.median(o):9.1f}% {np.percentile(o, 90):7.1f}%")
    fl = [r for r in rows if r["transport"] == "udp" and r["lossy"]]
    if fl:
        d = np.abs([r["ours_frame_loss"] - r["ns3_frame_loss"] for r in fl]) * 100
        print(f"udp frame loss ratio: median |ours − ns-3| {np.median(d):.2f} points, max {d.max():.2f} "
              f"({len(fl)} points, {fl[0]['runs']} frames each)")


def wifi(quick):
    try:
        from splitimpera.latency.ns3 import wifi as w
    except ImportError as e:  # the Wi-Fi oracle is optional
        print(f"\nWi-Fi contention: not available ({e})")
        return
    print("\nWi-Fi contention: per-station throughput share vs 1 station, ns-3 against the profiles' curves")
    rows = w.fidelity_rows(quick=quick) if "quick" in w.fidelity_rows.__code__.co_varnames else w.fidelity_rows()
    print(f"{'profile':8s} {'standard':10s} {'stations':>8s} {'ns-3':>7s} {'ours':>7s} {'error':>7s}")
    for r in rows:
        print(f"{r.get('profile', ''):8s} {r.get('standard', ''):10s} {r['stations']:8d} {r['ns3_fraction']:7.3f} "
              f"{r['ours_fraction']:7.3f} {r['error'] * 100:+6.1f}%")
    by = {}
    for r in rows:
        if r["stations"] == 1:  # the reference point: 0 by construction
            continue
        by.setdefault(r.get("profile", r.get("standard")), []).append(abs(r["error"]) * 100)
    for k, v in by.items():
        print(f"{k}: median |error| {np.median(v):.1f} %, max {max(v):.1f} %")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller grid")
    ap.add_argument("--no-wifi", action="store_true", help="skip the Wi-Fi contention comparison")
    ap.add_argument("--variants", choices=["validation", "test"],
                    help="only the TCP variants (linux, newreno) against ns-3 at its defaults and as NewReno, "
                         "on the development grid or the sealed test grid")
    args = ap.parse_args(argv)
    if not ns3.available():
        print("bench_network_fidelity: ns-3 is not installed (pip install 'splitimpera[ns3]'); skipped")
        return 0
    t0 = time.perf_counter()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output is a file
    if args.variants:
        g = VALIDATION
        points = (list(itertools.product(g["rates"], g["rtts"], g["sizes"])) if args.variants == "validation"
                  else test_grid())
        print(f"{'stack':8s} {'conn':4s} {'Mbit/s':>7s} {'RTT ms':>6s} {'loss':>5s} {'bytes':>8s} {'runs':>5s} "
              f"{'ns-3 ms':>10s} {'± se ms':>8s}")
        rows = variant_rows(points, [0.0, 0.01])
        variant_summary(rows, f"{args.variants} grid ({len(points)} points)")
        print(f"\nwall time {time.perf_counter() - t0:.0f} s")
        return 0
    if args.quick:
        rates, rtts = [5.85e6, 100e6], [0.01, 0.07, 0.3]
        sizes = [512, 4096, 16_000, 64_000, 256_000, 1_000_000]
    else:
        rates, rtts = [1e6, 5.85e6, 20e6, 100e6], [0.01, 0.07, 0.15, 0.3]
        sizes = [512, 4096, 16_000, 64_000, 256_000, 1_000_000, 4_000_000]
    rows = tcp_rows(rates, rtts, sizes, [0.0, 0.01], args.quick)
    rows += udp_rows(rates, rtts, sizes, [0.0, 0.01], args.quick)
    print_rows(rows)
    summary(rows)
    if not args.no_wifi:
        wifi(args.quick)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
