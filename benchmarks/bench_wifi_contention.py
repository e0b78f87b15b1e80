"""Wi-Fi contention across PHY rates: the air-time model against ns-3, development and test apart.

The per-station share of ``n`` saturated uplink stations relative to one
(:mod:`splitimpera.latency.wifi_airtime`, Bianchi with A-MPDU and Block Ack overheads) is
compared with ns-3 3.44 (:mod:`splitimpera.latency.ns3.wifi`) at 2–20 stations, per
standard at several data MCS of the profile's link (channel width, streams, band).

The MCS split was fixed before any of these ns-3 runs (:data:`DEVELOPMENT`, :data:`TEST`):

* development — the bundled profile's MCS (its ``contention`` curve is ns-3 data: 3 runs x
  2 s) and one lower MCS; the model's choices (Block Ack Request after a collision, EIFS,
  HE's 3.2 µs guard interval) were made looking at these;
* test — two other MCS per standard, odd indices, 802.11n's MCS 7 among them (one stream,
  65 Mbit/s, the IoT case): run once, at the end, and reported as they came.

The model has no fitted numbers: its constants are the standard's timing and ns-3's MAC
defaults. ``--collect development|test`` runs ns-3 (one process; minutes) and stores the
curves in ``benchmarks/results_wifi_contention_raw.json``; without it the table is printed
from that file. ``--jain`` also runs the per-station fairness points (wifi4 MCS 15 at 2–32 stations, 2 x 2 s).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

from splitimpera.latency import ns3
from splitimpera.config.wifi_phy import WifiPhy
from splitimpera.latency.wifi_airtime import ampdu_bytes, mpdus_per_ampdu, station_share

RAW = pathlib.Path(__file__).with_name("results_wifi_contention_raw.json")
STATIONS = (1, 2, 4, 8, 12, 16, 20)
RUNS, WARMUP = 3, 0.5
# profile -> MCS indices; fixed before the first run (see the module docstring).
DEVELOPMENT = {"wifi4": (15, 10), "wifi5": (9, 4), "wifi6": (11, 4)}
TEST = {"wifi4": (7, 13), "wifi5": (3, 7), "wifi6": (3, 7)}
PHY = {"wifi4": ("802.11n", 20, 2, 2.4), "wifi5": ("802.11ac", 80, 2, 5.0), "wifi6": ("802.11ax", 80, 2, 5.0)}
BUNDLED_MCS = {"wifi4": 15, "wifi5": 9, "wifi6": 11}
TARGET = 0.10


def phy_of(profile: str, mcs: int) -> WifiPhy:
    standard, width, streams, band = PHY[profile]
    return WifiPhy(standard, mcs, width, streams, band)


def seconds_for(phy: WifiPhy) -> float:
    """Measured simulated seconds per run: about 1 000 full A-MPDUs or more (1–4 s)."""
    return round(min(4.0, max(1.0, phy.ppdu_s(ampdu_bytes(mpdus_per_ampdu(phy))) * 1e3)), 1)


# ns-3's curves at the bundled profiles' PHY (3 runs x 2 s; the profiles' comments), n: share.
BUNDLED_NS3 = {
    "wifi4": {2: 0.470, 4: 0.214, 8: 0.0914, 12: 0.0558, 16: 0.0396, 20: 0.0293},
    "wifi5": {2: 0.475, 4: 0.212, 8: 0.0947, 12: 0.0583, 16: 0.0401, 20: 0.0304},
    "wifi6": {2: 0.474, 4: 0.215, 8: 0.0926, 12: 0.0568, 16: 0.0407, 20: 0.0302},
}


def bundled_curve(profile: str) -> dict:
    """ns-3's curve at the bundled profile's MCS as a measured curve."""
    pts = sorted({1: 1.0, **BUNDLED_NS3[profile]}.items())
    return {"profile": profile, "mcs": BUNDLED_MCS[profile], "stations": [n for n, _ in pts],
            "fraction": [f for _, f in pts], "fraction_lo": [None] * len(pts), "fraction_hi": [None] * len(pts),
            "runs": 3, "seconds": 2.0, "source": "bundled profile curve"}


def load() -> dict:
    return json.loads(RAW.read_text()) if RAW.exists() else {"curves": [], "jain": []}


def collect(which: str, data: dict) -> None:
    from splitimpera.latency.ns3 import wifi

    sets = DEVELOPMENT if which == "development" else TEST
    for profile, mcss in sets.items():
        for mcs in mcss:
            if which == "development" and mcs == BUNDLED_MCS[profile]:
                continue
            if any(c["profile"] == profile and c["mcs"] == mcs for c in data["curves"]):
                continue
            c = wifi.contention_curve(profile, STATIONS, runs=RUNS, seconds=seconds_for(phy_of(profile, mcs)),
                                      warmup=WARMUP, mcs=mcs)
            c["set"] = which
            data["curves"].append(c)
            RAW.write_text(json.dumps(data, indent=1))
            print(f"{profile} MCS {mcs}: {c['setup']}, single {c['single_station_mbps']:.1f} Mbit/s, "
                  f"wall {c['wall_s']:.0f} s", flush=True)


def collect_jain(data: dict) -> None:
    from splitimpera.latency.ns3 import wifi

    c = wifi.contention_curve("wifi4", (2, 4, 8, 16, 32), runs=2, seconds=2.0, warmup=0.5)
    data["jain"] = [c]
    RAW.write_text(json.dumps(data, indent=1))


def rows(data: dict) -> list[dict]:
    out = []
    curves = [dict(bundled_curve(p), set="development") for p in DEVELOPMENT] + data["curves"]
    for c in curves:
        phy = phy_of(c["profile"], c["mcs"])
        for i, n in enumerate(c["stations"]):
            if n == 1:
                continue
            ours = station_share(phy, n)
            out.append({"set": c["set"], "profile": c["profile"], "standard": phy.standard, "mcs": c["mcs"],
                        "rate_mbps": phy.rate_mbps, "runs": f"{c['runs']}x{c['seconds']:g}s", "stations": n, "ns3": c["fraction"][i],
                        "lo": c["fraction_lo"][i], "hi": c["fraction_hi"][i], "ours": ours,
                        "error": ours / c["fraction"][i] - 1.0})
    return out


def report(data: dict) -> str:
    lines = [f"Wi-Fi contention: per-station share (n stations / 1), air-time model vs ns-3 3.44; "
             f"runs x measured seconds per point (after {WARMUP:g} s warm-up) in the runs column",
             f"{'set':11} {'profile':7} {'MCS':>3} {'Mbit/s':>7} {'runs':>7} {'n':>3} {'ns-3':>7} {'ns-3 runs':>17} "
             f"{'model':>7} {'error':>7}"]
    rs = rows(data)
    for r in rs:
        span = "" if r["lo"] is None else f"[{r['lo']:.4f}, {r['hi']:.4f}]"
        lines.append(f"{r['set']:11} {r['profile']:7} {r['mcs']:3d} {r['rate_mbps']:7.1f} {r['runs']:>7} {r['stations']:3d} "
                     f"{r['ns3']:7.4f} {span:>17} {r['ours']:7.4f} {r['error']:+7.1%}")
    lines.append("")
    for which in ("development", "test"):
        sel = [r for r in rs if r["set"] == which]
        if not sel:
            lines.append(f"{which}: not run")
            continue
        for profile in PHY:
            for mcs in sorted({r["mcs"] for r in sel if r["profile"] == profile}):
                errs = [abs(r["error"]) for r in sel if r["profile"] == profile and r["mcs"] == mcs]
                verdict = "within" if max(errs) <= TARGET else "MISSES"
                lines.append(f"{which:11} {profile} MCS {mcs:2d}: median |error| {statistics.median(errs):.1%}, "
                             f"max {max(errs):.1%} over {len(errs)} station counts ({verdict} {TARGET:.0%})")
        errs = [abs(r["error"]) for r in sel]
        lines.append(f"{which:11} all: median |error| {statistics.median(errs):.1%}, max {max(errs):.1%}, "
                     f"{sum(e <= TARGET for e in errs)}/{len(errs)} points within {TARGET:.0%}")
    spread = [(hi - lo) / f for r in rs if r["lo"] is not None for lo, hi, f in [(r["lo"], r["hi"], r["ns3"])]]
    if spread:
        lines.append(f"ns-3 run spread (max - min over runs) / mean: median {statistics.median(spread):.1%}, "
                     f"max {max(spread):.1%}")
    for c in data.get("jain") or []:
        lines.append("ns-3 Jain fairness of per-station goodput, wifi4 MCS 15 ("
                     f"{c['runs']} x {c['seconds']:g} s): " + ", ".join(
                         f"{n} stations {j:.2f} [{lo:.2f}, {hi:.2f}]" for n, j, lo, hi in
                         zip(c["stations"], c["jain_fairness"], c["jain_lo"], c["jain_hi"]) if n > 1))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", choices=["development", "test"], help="run ns-3 for that MCS set first")
    ap.add_argument("--jain", action="store_true", help="run ns-3 fairness points (wifi4 at 2-32 stations)")
    a = ap.parse_args(argv)
    data = load()
    if a.collect or a.jain:
        if not ns3.available():
            print("ns-3 is not installed: pip install 'splitimpera[ns3]'", file=sys.stderr)
            return 2
        if a.collect:
            collect(a.collect, data)
        if a.jain:
            collect_jain(data)
    print(report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
