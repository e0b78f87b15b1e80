"""ns-3 Wi-Fi uplink contention: the oracle for the Wi-Fi profiles' ``contention`` curves.

One infrastructure BSS: an AP and ``N`` stations on a circle of radius 2 m around it (every
station hears every other: no hidden nodes; the SNR, over 45 dB, is far above what the fixed
MCS needs, so frames are lost to collisions alone). Every station sends saturated UDP uplink
traffic to its own ``PacketSink`` on the AP (1472-byte datagrams = 1500-byte IP packets; an
``OnOffApplication`` always on, offering 1.2 × the PHY rate / N, at least 1.6 × what a
station gets, so that every station always has a full A-MPDU queued). The traffic starts
once every station is associated (checked every 10 ms; with 20-32 stations association
takes ~0.5-1.5 s, and traffic started earlier would keep the last ones out); neighbour
caches are filled, so there is no ARP. Goodput is the bytes each sink receives in
``[start + warmup, start + warmup + seconds]``.

MAC/PHY at ns-3's defaults unless stated: EDCA best effort (AIFSN 3, CWmin 15, CWmax 1023,
no TXOP limit: one A-MPDU per channel access), A-MPDU up to 65 535 bytes (``BE_MaxAmpduSize``,
ns-3's default; ~42 MPDUs of 1538 bytes), no A-MSDU, immediate Block Ack, an explicit Block
Ack Request after a missed Block Ack (``explicit_bar=False`` turns it off), no RTS/CTS, an
800 ns guard interval for HT/VHT (the long one) and 3.2 µs for HE (ns-3's default, HE's
longest), Yans PHY and channel (log-distance loss), WifiMacQueue 500 packets / 500 ms, AP beacons every 102.4 ms.
Rates: a ``ConstantRateWifiManager`` with the MCS below for data and 24 Mbit/s OFDM for
control frames (Block Ack, BAR) — a 2×2 link at short range, each profile's standard:

* ``wifi4`` — 802.11n, 2.4 GHz, 20 MHz, 2 streams, HT MCS 15 (130 Mbit/s);
* ``wifi5`` — 802.11ac, 5 GHz, 80 MHz, 2 streams, VHT MCS 9 (780 Mbit/s);
* ``wifi6`` — 802.11ax, 5 GHz, 80 MHz, 2 streams, HE MCS 11 (1020.8 Mbit/s at 3.2 µs GI), EDCA (single
  user) by default; ``ul_ofdma=True`` adds trigger-based UL OFDMA: ns-3's round-robin
  multi-user scheduler on the AP (BSRP on, up to min(N, 9) stations per trigger, channel
  access requested every 2 ms even without downlink traffic; stations keep their EDCA access
  too) over a spectrum PHY and channel — about 10× slower to simulate.

:func:`wifi_uplink_throughput` runs one point, :func:`contention_curve` a sweep over station
counts (the per-station goodput relative to one station, mean over RNG runs), and
:func:`fidelity_rows` compares those with the bundled profiles' shares
(:func:`splitimpera.latency.link.contention_share`: the air-time model of each profile's PHY).
``python -m splitimpera.latency.ns3.wifi`` prints that table with the median and max |error| per
profile; the measured curves in the profiles' comments are its output with
``--stations 1,2,3,4,5,6,8,10,12,14,16,20,32 --runs 3 --seconds 2``; ``--mcs`` runs another MCS
of the profile's link (``benchmarks/bench_wifi_contention.py`` runs several).

Each point is seeded on its own (seed 20261201, run ``seed_run``, stream indices reset), so
it gives the same numbers whatever ran before it in the process, and a sweep over several
worker processes equals one run in a single process. Cost on 2 shared cores: a point of
1.5 simulated seconds takes ~2-5 s of wall time for wifi4 and ~4-15 s for wifi5/wifi6 at
1-20 stations (UL OFDMA ~10x that); the default sweep (14 station counts x 2 runs x 1 s,
2 workers) took 82, 227 and 250 s for wifi4, wifi5 and wifi6.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, replace

from . import compile_cpp, require


@dataclass(frozen=True)
class WifiSetup:
    """One profile's ns-3 link: standard, band, channel width, streams and fixed MCS."""

    standard: str          # ns-3 WifiStandard: 80211n, 80211ac, 80211ax
    band_ghz: float        # 2.4 or 5
    width_mhz: int
    streams: int
    data_mode: str         # ConstantRateWifiManager DataMode
    control_mode: str      # ConstantRateWifiManager ControlMode
    phy_mbps: float        # the data mode's PHY rate (sets the offered load)

    @property
    def ieee(self) -> str:
        return {"80211n": "802.11n", "80211ac": "802.11ac", "80211ax": "802.11ax"}[self.standard]

    def with_mcs(self, mcs: int) -> "WifiSetup":
        """The same link at another data MCS (802.11n: the index carries the streams)."""
        from ...config.wifi_phy import WifiPhy

        prefix = {"80211n": "Ht", "80211ac": "Vht", "80211ax": "He"}[self.standard]
        phy = WifiPhy(self.ieee, int(mcs), self.width_mhz, self.streams, self.band_ghz)
        return replace(self, data_mode=f"{prefix}Mcs{int(mcs)}", phy_mbps=round(phy.rate_mbps, 1))

    def describe(self) -> str:
        return (f"{self.standard[:3]}.{self.standard[3:]} {self.band_ghz:g} GHz {self.width_mhz} MHz "
                f"{self.streams}x{self.streams} {self.data_mode} ({self.phy_mbps:g} Mbit/s), "
                f"control {self.control_mode}")


SETUPS: dict[str, WifiSetup] = {
    "wifi4": WifiSetup("80211n", 2.4, 20, 2, "HtMcs15", "ErpOfdmRate24Mbps", 130.0),
    "wifi5": WifiSetup("80211ac", 5, 80, 2, "VhtMcs9", "OfdmRate24Mbps", 780.0),
    "wifi6": WifiSetup("80211ax", 5, 80, 2, "HeMcs11", "OfdmRate24Mbps", 1020.8),
}
# Aliases: the IEEE names map to the profile whose standard they are.
ALIASES = {"802.11n": "wifi4", "802.11ac": "wifi5", "802.11ax": "wifi6"}

DEFAULT_STATIONS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20)
ASSOC_DEADLINE_S = 10.0
RADIUS_M = 2.0
UDP_PAYLOAD = 1472
OFFERED_FACTOR = 1.2

_CPP = r"""
#include "ns3/core-module.h"
#include "ns3/network-module.h"
#include "ns3/internet-module.h"
#include "ns3/wifi-module.h"
#include "ns3/mobility-module.h"
#include "ns3/applications-module.h"
#include "ns3/spectrum-module.h"
#include "ns3/propagation-module.h"
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace si_wifi {
using namespace ns3;

struct Result {
  std::vector<double> rx_bytes;  // per station, inside the measurement window
  double app_start = -1;         // when every station is associated and the traffic starts, s
  double window_end = -1;        // when the measurement window closed, s
  int associated = 0;            // stations associated when the measurement window opens
  int associated_end = 0;        // ... when it closes
  double tb_ppdus = 0, su_ppdus = 0;  // station PPDUs (HE TB = UL OFDMA) in the window
  std::string error;
};

static void MarkRx(std::vector<Ptr<PacketSink>>* sinks, std::vector<uint64_t>* out) {
  for (size_t i = 0; i < sinks->size(); ++i) (*out)[i] = (*sinks)[i]->GetTotalRx();
}

static double g_tb = 0, g_su = 0, g_t0 = 0;
static void OnStaTx(WifiConstPsduMap m, WifiTxVector v, double) {
  if (Simulator::Now().GetSeconds() < g_t0) return;
  if (v.GetPreambleType() == WIFI_PREAMBLE_HE_TB) g_tb++; else g_su++;
}

static void CountAssociated(NetDeviceContainer* dev, int* out) {
  *out = 0;
  for (uint32_t i = 0; i < dev->GetN(); ++i) {
    Ptr<WifiNetDevice> d = DynamicCast<WifiNetDevice>(dev->Get(i));
    Ptr<StaWifiMac> m = DynamicCast<StaWifiMac>(d->GetMac());
    if (m && m->IsAssociated()) (*out)++;
  }
}

struct Run {
  int n = 0;
  double warmup = 0, seconds = 0, deadline = 0;
  NodeContainer* sta = nullptr;
  NetDeviceContainer* staDev = nullptr;
  Ipv4Address ap;
  double offered_bps = 0;
  int payload = 0;
  std::vector<Ptr<PacketSink>> sinks;
  std::vector<uint64_t> a, b;
  Result* res = nullptr;
};

static void OpenWindow(Run* c) {
  MarkRx(&c->sinks, &c->a);
  CountAssociated(c->staDev, &c->res->associated);
  g_t0 = Simulator::Now().GetSeconds();
}

static void CloseWindow(Run* c) {
  MarkRx(&c->sinks, &c->b);
  CountAssociated(c->staDev, &c->res->associated_end);
  c->res->window_end = Simulator::Now().GetSeconds();
  Simulator::Stop();
}

// Every 10 ms until every station is associated; then the uplink traffic starts (one
// always-on OnOff source per station, 0.1 ms apart) and the window is scheduled.
static void Poll(Run* c) {
  int k = 0;
  CountAssociated(c->staDev, &k);
  double now = Simulator::Now().GetSeconds();
  if (k < c->n) {
    if (now >= c->deadline) {
      std::ostringstream os;
      os << "only " << k << " of " << c->n << " stations associated by " << now << " s";
      c->res->error = os.str();
      Simulator::Stop();
      return;
    }
    Simulator::Schedule(MilliSeconds(10), &Poll, c);
    return;
  }
  c->res->app_start = now;
  for (int i = 0; i < c->n; ++i) {
    OnOffHelper oo("ns3::UdpSocketFactory", InetSocketAddress(c->ap, 9000 + i));
    oo.SetAttribute("OnTime", StringValue("ns3::ConstantRandomVariable[Constant=1]"));
    oo.SetAttribute("OffTime", StringValue("ns3::ConstantRandomVariable[Constant=0]"));
    oo.SetAttribute("DataRate", DataRateValue(DataRate((uint64_t) c->offered_bps)));
    oo.SetAttribute("PacketSize", UintegerValue(c->payload));
    ApplicationContainer app = oo.Install(c->sta->Get(i));  // initialised now, starts after the delay
    app.Start(Seconds(1e-4 * i));
  }
  Simulator::Schedule(Seconds(c->warmup), &OpenWindow, c);
  Simulator::Schedule(Seconds(c->warmup + c->seconds), &CloseWindow, c);
}

// Channel, antennas and spatial streams: the same for the spectrum and the YANS PHY helpers.
template <class PhyHelper> static void SetPhy(PhyHelper &phy, const std::string &channel, int nss) {
  phy.Set("ChannelSettings", StringValue(channel));
  phy.Set("Antennas", UintegerValue(nss));
  phy.Set("MaxSupportedTxSpatialStreams", UintegerValue(nss));
  phy.Set("MaxSupportedRxSpatialStreams", UintegerValue(nss));
}

Result uplink(std::string standard, int n, double seconds, double warmup, double assoc_deadline, int run,
              std::string data_mode, std::string control_mode, int width, int nss, double band_ghz,
              double radius, double offered_bps, int payload, bool ul_ofdma, bool explicit_bar) {
  Result res;
  Simulator::Destroy();
  RngSeedManager::SetSeed(20261201);
  RngSeedManager::SetRun(run);
  RngSeedManager::ResetNextStreamIndex();  // a point's result must not depend on earlier points

  NodeContainer apNode; apNode.Create(1);
  NodeContainer sta; sta.Create(n);

  WifiHelper wifi;
  if (standard == "80211n") wifi.SetStandard(WIFI_STANDARD_80211n);
  else if (standard == "80211ac") wifi.SetStandard(WIFI_STANDARD_80211ac);
  else if (standard == "80211ax") wifi.SetStandard(WIFI_STANDARD_80211ax);
  else { res.error = "unknown ns-3 Wi-Fi standard " + standard; return res; }
  wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                               "DataMode", StringValue(data_mode), "ControlMode", StringValue(control_mode));

  std::ostringstream cs;
  cs << "{0, " << width << ", " << (band_ghz < 3.0 ? "BAND_2_4GHZ" : "BAND_5GHZ") << ", 0}";
  WifiMacHelper mac;
  Ssid ssid("splitimpera");
  NetDeviceContainer staDev, apDev;
  if (ul_ofdma) {
    SpectrumWifiPhyHelper phy;
    Ptr<MultiModelSpectrumChannel> ch = CreateObject<MultiModelSpectrumChannel>();
    ch->AddPropagationLossModel(CreateObject<LogDistancePropagationLossModel>());
    ch->SetPropagationDelayModel(CreateObject<ConstantSpeedPropagationDelayModel>());
    phy.SetChannel(ch);
    SetPhy(phy, cs.str(), nss);
    mac.SetType("ns3::StaWifiMac", "Ssid", SsidValue(ssid));
    staDev = wifi.Install(phy, mac, sta);
    mac.SetMultiUserScheduler("ns3::RrMultiUserScheduler",
                              "EnableUlOfdma", BooleanValue(true), "EnableBsrp", BooleanValue(true),
                              "NStations", UintegerValue(std::min(n, 9)),
                              "AccessReqInterval", TimeValue(MilliSeconds(2)));
    mac.SetType("ns3::ApWifiMac", "Ssid", SsidValue(ssid));
    apDev = wifi.Install(phy, mac, apNode);
  } else {
    YansWifiChannelHelper chh = YansWifiChannelHelper::Default();
    YansWifiPhyHelper phy;
    phy.SetChannel(chh.Create());
    SetPhy(phy, cs.str(), nss);
    mac.SetType("ns3::StaWifiMac", "Ssid", SsidValue(ssid));
    staDev = wifi.Install(phy, mac, sta);
    mac.SetType("ns3::ApWifiMac", "Ssid", SsidValue(ssid));
    apDev = wifi.Install(phy, mac, apNode);
  }
  NetDeviceContainer all(apDev, staDev);
  for (uint32_t i = 0; i < all.GetN(); ++i)
    DynamicCast<WifiNetDevice>(all.Get(i))->GetMac()->GetQosTxop(AC_BE)->SetAttribute(
        "UseExplicitBarAfterMissedBlockAck", BooleanValue(explicit_bar));
  int64_t stream = 1000;
  stream += wifi.AssignStreams(apDev, stream);
  stream += wifi.AssignStreams(staDev, stream);

  MobilityHelper mob;
  Ptr<ListPositionAllocator> pos = CreateObject<ListPositionAllocator>();
  pos->Add(Vector(0, 0, 0));
  for (int i = 0; i < n; ++i) {
    double a = 2 * M_PI * i / n;
    pos->Add(Vector(radius * std::cos(a), radius * std::sin(a), 0));
  }
  mob.SetPositionAllocator(pos);
  mob.SetMobilityModel("ns3::ConstantPositionMobilityModel");
  mob.Install(apNode);
  mob.Install(sta);

  InternetStackHelper inet;
  inet.Install(apNode);
  inet.Install(sta);
  Ipv4AddressHelper addr;
  addr.SetBase("10.1.0.0", "255.255.0.0");
  Ipv4InterfaceContainer apIf = addr.Assign(apDev);
  addr.Assign(staDev);
  NeighborCacheHelper nch;
  nch.PopulateNeighborCache();

  Run ctx;
  ctx.n = n; ctx.warmup = warmup; ctx.seconds = seconds; ctx.deadline = assoc_deadline;
  ctx.sta = &sta; ctx.staDev = &staDev; ctx.ap = apIf.GetAddress(0);
  ctx.offered_bps = offered_bps; ctx.payload = payload; ctx.res = &res;
  ctx.a.assign(n, 0); ctx.b.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    PacketSinkHelper sh("ns3::UdpSocketFactory", InetSocketAddress(Ipv4Address::GetAny(), 9000 + i));
    ApplicationContainer s = sh.Install(apNode.Get(0));
    s.Start(Seconds(0.0));
    ctx.sinks.push_back(DynamicCast<PacketSink>(s.Get(0)));
  }
  g_tb = g_su = 0; g_t0 = 1e18;
  for (uint32_t i = 0; i < staDev.GetN(); ++i)
    DynamicCast<WifiNetDevice>(staDev.Get(i))->GetPhy()->TraceConnectWithoutContext(
        "PhyTxPsduBegin", MakeCallback(&OnStaTx));
  Simulator::Schedule(MilliSeconds(10), &Poll, &ctx);
  Simulator::Stop(Seconds(assoc_deadline + warmup + seconds + 1.0));
  Simulator::Run();
  Simulator::Destroy();
  if (res.error.empty() && res.window_end < 0)
    res.error = "the simulation stopped before the measurement window closed";
  for (int i = 0; i < n; ++i) res.rx_bytes.push_back((double) (ctx.b[i] - ctx.a[i]));
  res.tb_ppdus = g_tb; res.su_ppdus = g_su;
  return res;
}
}  // namespace si_wifi
"""

def _lib():
    """The compiled C++ scenario (ns-3 imported and the code above compiled once)."""
    return compile_cpp(_CPP, "si_wifi")


def setup_for(standard: str) -> tuple[str, WifiSetup]:
    """(profile name, ns-3 setup) for ``wifi4|wifi5|wifi6`` or ``802.11n|802.11ac|802.11ax``."""
    name = ALIASES.get(standard, standard)
    if name not in SETUPS:
        raise ValueError(f"unknown Wi-Fi standard {standard!r}; one of {sorted(SETUPS) + sorted(ALIASES)}")
    return name, SETUPS[name]


def wifi_uplink_throughput(standard: str, stations: int, *, seconds: float = 1.0, warmup: float = 0.5,
                           seed_run: int = 1, ul_ofdma: bool = False, explicit_bar: bool = True,
                           mcs: int | None = None) -> dict:
    """Saturated UDP uplink goodput of ``stations`` stations to one AP in ns-3 (module docstring).

    ``explicit_bar=False`` turns off ns-3's Block Ack Request after a missed Block Ack
    (``QosTxop::UseExplicitBarAfterMissedBlockAck``, default on): the unacknowledged MPDUs
    then go again in the next A-MPDU, one channel access fewer per collision. ``mcs``: another
    data MCS than the profile's (:meth:`WifiSetup.with_mcs`).

    Returns a dict: ``profile``, ``setup`` (words), ``stations``, ``seed_run``, ``seconds``,
    ``warmup``, ``per_station_mbps`` (list), ``aggregate_mbps``, ``mean_per_station_mbps``,
    ``jain_fairness`` (1 = equal shares), ``app_start_s`` (simulated time the traffic
    started), ``tb_ppdus``/``su_ppdus`` (station PPDUs in the window: HE trigger-based, i.e.
    UL OFDMA, and single-user) and ``wall_s``. Raises ``RuntimeError`` where a station is not
    associated during the window, or not at all within 10 simulated seconds.
    """
    if stations < 1:
        raise ValueError(f"stations must be >= 1, got {stations}")
    if seconds <= 0 or warmup < 0:
        raise ValueError("seconds must be > 0 and warmup >= 0")
    name, s = setup_for(standard)
    if mcs is not None:
        s = s.with_mcs(mcs)
    if ul_ofdma and s.standard != "80211ax":
        raise ValueError("ul_ofdma needs 802.11ax (wifi6)")
    lib = _lib()
    offered_bps = OFFERED_FACTOR * s.phy_mbps * 1e6 / stations
    t = time.perf_counter()
    r = lib.uplink(s.standard, int(stations), float(seconds), float(warmup), ASSOC_DEADLINE_S, int(seed_run),
                   s.data_mode, s.control_mode, int(s.width_mhz), int(s.streams), float(s.band_ghz),
                   RADIUS_M, float(offered_bps), UDP_PAYLOAD, bool(ul_ofdma), bool(explicit_bar))
    wall = time.perf_counter() - t
    if str(r.error):
        raise RuntimeError(str(r.error))
    if int(r.associated) != stations or int(r.associated_end) != stations:
        raise RuntimeError(f"ns-3: {int(r.associated)} and {int(r.associated_end)} of {stations} stations "
                           f"associated when the window opened and closed (run {seed_run})")
    per = [float(x) * 8.0 / seconds / 1e6 for x in r.rx_bytes]
    agg = sum(per)
    sq = sum(x * x for x in per)
    return {
        "profile": name,
        "setup": s.describe() + (", UL OFDMA (RR scheduler)" if ul_ofdma else "")
                 + ("" if explicit_bar else ", no explicit BAR"),
        "stations": int(stations),
        "seed_run": int(seed_run),
        "seconds": float(seconds),
        "warmup": float(warmup),
        "per_station_mbps": per,
        "aggregate_mbps": agg,
        "mean_per_station_mbps": agg / stations,
        "jain_fairness": (agg * agg / (stations * sq)) if sq > 0 else math.nan,
        "app_start_s": float(r.app_start),
        "associated": int(r.associated),
        "associated_end": int(r.associated_end),
        "tb_ppdus": float(r.tb_ppdus),
        "su_ppdus": float(r.su_ppdus),
        "wall_s": wall,
    }


def _point(kw: dict) -> dict:
    """One :func:`wifi_uplink_throughput` call (a worker process's task)."""
    return wifi_uplink_throughput(**kw)


def contention_curve(standard: str, stations=DEFAULT_STATIONS, *, runs: int = 2, seconds: float = 1.0,
                     warmup: float = 0.5, ul_ofdma: bool = False, explicit_bar: bool = True,
                     workers: int = 1, progress=None, mcs: int | None = None) -> dict:
    """Per-station goodput at each station count relative to one station, from ns-3.

    ``runs`` RNG runs (ns-3 run numbers 1..runs) per station count; one station is always
    simulated (the reference). The fraction at ``n`` is the mean over runs of the mean
    per-station goodput at ``n`` divided by the mean single-station goodput; ``fraction_lo``
    and ``fraction_hi`` are the smallest and largest single-run values. ``workers`` > 1 runs
    the points in that many fresh processes (each imports ns-3 once, ~10 s; the results are
    the same, ns-3 being seeded per point). ``progress`` (a callable taking the point's result
    dict) is called after each simulation.
    Returns a dict of lists indexed like ``stations`` (sorted, 1 included) plus ``profile``,
    ``setup``, ``runs``, ``seconds``, ``warmup``, ``single_station_mbps``, ``wall_s``.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    name, _ = setup_for(standard)
    counts = sorted({1, *(int(n) for n in stations)})
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t = time.perf_counter()
    tasks = [dict(standard=name, stations=n, seconds=seconds, warmup=warmup, seed_run=run, ul_ofdma=ul_ofdma,
                  explicit_bar=explicit_bar, mcs=mcs) for n in counts for run in range(1, runs + 1)]
    points: dict[int, list[dict]] = {n: [] for n in counts}

    def done(r):
        points[r["stations"]].append(r)
        if progress is not None:
            progress(r)

    if workers == 1:
        for kw in tasks:
            done(_point(kw))
    else:
        import concurrent.futures as cf
        import multiprocessing

        # Fresh processes (spawn): ns-3 and cppyy are not safe to fork once loaded. The largest
        # points first, so that no worker is left with a long one at the end.
        order = sorted(tasks, key=lambda kw: -kw["stations"])
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            for fut in cf.as_completed([pool.submit(_point, kw) for kw in order]):
                done(fut.result())
    for n in counts:
        points[n].sort(key=lambda r: r["seed_run"])
    setup = points[1][0]["setup"]
    base = statistics.fmean(p["mean_per_station_mbps"] for p in points[1])
    per = [[p["mean_per_station_mbps"] for p in points[n]] for n in counts]
    return {
        "profile": name,
        "setup": setup,
        "runs": runs,
        "seconds": seconds,
        "warmup": warmup,
        "stations": counts,
        "single_station_mbps": base,
        "per_station_mbps": [statistics.fmean(v) for v in per],
        "aggregate_mbps": [statistics.fmean(p["aggregate_mbps"] for p in points[n]) for n in counts],
        "fraction": [statistics.fmean(v) / base for v in per],
        "fraction_lo": [min(v) / base for v in per],
        "fraction_hi": [max(v) / base for v in per],
        "jain_fairness": [statistics.fmean(p["jain_fairness"] for p in points[n]) for n in counts],
        "jain_lo": [min(p["jain_fairness"] for p in points[n]) for n in counts],
        "jain_hi": [max(p["jain_fairness"] for p in points[n]) for n in counts],
        "point_wall_s": [statistics.fmean(p["wall_s"] for p in points[n]) for n in counts],
        "mcs": mcs,
        "wall_s": time.perf_counter() - t,
    }


QUICK_STATIONS = (1, 2, 4, 8, 14, 20)


def fidelity_rows(profiles=("wifi4", "wifi5", "wifi6"), *, curves: dict | None = None, quick: bool = False,
                  **curve_kw) -> list[dict]:
    """Rows comparing each profile's bundled curve with ns-3's measured one.

    One row per (profile, station count): ``profile`` (``wifi5``), ``standard`` (``802.11ac``),
    ``stations``, ``ns3_fraction`` (with ``ns3_lo``/``ns3_hi``, the run spread),
    ``ours_fraction`` (:func:`splitimpera.latency.link.contention_share` of the bundled
    profile) and ``error`` = ours / ns-3 − 1 (the relative error of our per-station
    throughput). ``curves`` maps a profile name to a :func:`contention_curve` result already
    computed; other profiles are simulated with ``curve_kw`` (``stations``, ``runs``,
    ``seconds``, ``workers``, ...; by default 2 worker processes where there are 2 cores).
    ``quick``: station counts :data:`QUICK_STATIONS`, one run of 1 s each (~1 min a profile
    on 2 cores; wifi4, with 4 ms A-MPDUs, is the noisiest: a few % per point).
    """
    from ...config.profile_registry import get_network
    from ..link import contention_share

    if quick:
        curve_kw = {"stations": QUICK_STATIONS, "runs": 1, "seconds": 1.0, **curve_kw}
    curve_kw.setdefault("workers", min(2, os.cpu_count() or 1))
    ieee = {v: k for k, v in ALIASES.items()}
    rows = []
    for prof in profiles:
        name, _ = setup_for(prof)
        c = (curves or {}).get(name) or contention_curve(name, **curve_kw)
        net = get_network(name)
        if c.get("mcs") is not None:  # measured at another MCS of the profile's link: the model at that MCS
            net = net.model_copy(update={"mcs": int(c["mcs"])})
        for n, f, lo, hi in zip(c["stations"], c["fraction"], c["fraction_lo"], c["fraction_hi"]):
            ours = contention_share(net, n)
            rows.append({"profile": name, "standard": ieee[name], "stations": n, "ns3_fraction": f,
                         "ns3_lo": lo, "ns3_hi": hi, "ours_fraction": ours, "error": ours / f - 1.0})
    return rows


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Median and max |error| per profile, over the rows with more than one station."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["profile"] for r in rows):
        errs = [abs(r["error"]) for r in rows if r["profile"] == name and r["stations"] > 1]
        out[name] = {"median_abs_error": statistics.median(errs) if errs else 0.0,
                     "max_abs_error": max(errs) if errs else 0.0, "points": len(errs)}
    return out


def format_table(rows: list[dict]) -> str:
    """The rows as a text table, then the median and max |error| per profile."""
    lines = [f"{'profile':8} {'standard':9} {'stations':>8} {'ns-3':>8} {'ns-3 runs':>17} {'ours':>8} {'error':>8}"]
    for r in rows:
        lines.append(f"{r['profile']:8} {r['standard']:9} {r['stations']:8d} {r['ns3_fraction']:8.4f} "
                     f"{'[' + format(r['ns3_lo'], '.4f') + ', ' + format(r['ns3_hi'], '.4f') + ']':>17} "
                     f"{r['ours_fraction']:8.4f} {r['error']:+8.1%}")
    lines.append("")
    for name, s in summarize(rows).items():
        lines.append(f"{name}: median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
                     f"({s['points']} station counts > 1)")
    return "\n".join(lines)


def _station_list(text: str) -> list[int]:
    import argparse

    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"station counts must be integers >= 1: {text!r}")
    return counts


def _positive(text: str) -> float:
    import argparse

    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m splitimpera.latency.ns3.wifi",
                                 description="ns-3 Wi-Fi uplink contention vs the profiles' contention curves")
    ap.add_argument("--profiles", default="wifi4,wifi5,wifi6", help="comma-separated (default: %(default)s)")
    ap.add_argument("--stations", type=_station_list, default=list(DEFAULT_STATIONS),
                    help=f"comma-separated station counts (default: {','.join(map(str, DEFAULT_STATIONS))})")
    ap.add_argument("--runs", type=int, choices=range(1, 101), metavar="RUNS", default=2,
                    help="ns-3 RNG runs per point (default: %(default)s)")
    ap.add_argument("--seconds", type=_positive, default=1.0, help="measured simulated seconds (default: %(default)s)")
    ap.add_argument("--warmup", type=_positive, default=0.5, help="simulated warm-up seconds (default: %(default)s)")
    ap.add_argument("--workers", type=int, choices=range(1, 257), metavar="WORKERS",
                    default=min(2, os.cpu_count() or 1),
                    help="processes running points in parallel (default: %(default)s)")
    ap.add_argument("--mcs", type=int, default=None, help="another data MCS of each profile's link")
    ap.add_argument("--ul-ofdma", action="store_true", help="wifi6 with UL OFDMA (slow)")
    ap.add_argument("--no-explicit-bar", action="store_true",
                    help="no Block Ack Request after a missed Block Ack (ns-3 sends one by default)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print each simulated point")
    a = ap.parse_args(argv)

    def progress(r):
        if a.verbose:
            print(f"  {r['profile']} n={r['stations']:2d} run {r['seed_run']}: aggregate {r['aggregate_mbps']:7.1f} "
                  f"Mbit/s, per station {r['mean_per_station_mbps']:7.2f}, Jain {r['jain_fairness']:.2f}, "
                  f"wall {r['wall_s']:.1f} s", flush=True)

    try:
        names = [setup_for(p.strip())[0] for p in a.profiles.split(",") if p.strip()]
        if a.mcs is not None:
            for name in names:
                SETUPS[name].with_mcs(a.mcs)  # a bad MCS for a profile's standard: said before anything runs
        require()
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    curves = {}
    for name in names:
        c = contention_curve(name, a.stations, runs=a.runs, seconds=a.seconds,
                             warmup=a.warmup, ul_ofdma=a.ul_ofdma and name == "wifi6",
                             explicit_bar=not a.no_explicit_bar, workers=a.workers, progress=progress, mcs=a.mcs)
        curves[name] = c
        print(f"{name}: {c['setup']}; single station {c['single_station_mbps']:.1f} Mbit/s; "
              f"{c['runs']} runs x {c['seconds']:g} s; wall {c['wall_s']:.0f} s", flush=True)
    print(format_table(fidelity_rows(list(curves), curves=curves)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
