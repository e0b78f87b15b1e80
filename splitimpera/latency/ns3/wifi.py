"""ns-3 Wi-Fi uplink contention: the oracle for the Wi-Fi profiles' ``contention`` curves.

One infrastructure BSS: an AP and ``N`` stations on a circle of radius 2 m around it (every
station hears every other: no hidden nodes; the SNR, ~40 dB, is far above what the fixed
MCS needs, so frames are lost only to collisions). Every station sends saturated UDP uplink
traffic to its own ``PacketSink`` on the AP (1472-byte datagrams = 1500-byte IP packets; an
``OnOffApplication`` always on, offering 1.2 × the PHY rate / N, several times the share a
station gets, so that every station always has a full A-MPDU queued). The applications
start at 0.5 s, after association (neighbour caches are filled, so no ARP); goodput is the
bytes each sink receives in ``[0.5 + warmup, 0.5 + warmup + seconds]``.

MAC/PHY at ns-3's defaults unless stated: EDCA best effort (AIFSN 3, CWmin 15, CWmax 1023,
no TXOP limit: one A-MPDU per channel access), A-MPDU up to 65 535 bytes (``BE_MaxAmpduSize``,
ns-3's default; ~42 MPDUs of 1538 bytes), no A-MSDU, immediate Block Ack, an explicit Block
Ack Request after a missed Block Ack, no RTS/CTS, long guard interval (HT/VHT 800 ns, HE
0.8 µs), Yans PHY and channel (log-distance loss), WifiMacQueue 500 packets / 500 ms.
Rates: a ``ConstantRateWifiManager`` with the MCS below for data and 24 Mbit/s OFDM for
control frames (Block Ack, BAR) — a 2×2 link at short range, each profile's standard:

* ``wifi4`` — 802.11n, 2.4 GHz, 20 MHz, 2 streams, HT MCS 15 (130 Mbit/s);
* ``wifi5`` — 802.11ac, 5 GHz, 80 MHz, 2 streams, VHT MCS 9 (780 Mbit/s);
* ``wifi6`` — 802.11ax, 5 GHz, 80 MHz, 2 streams, HE MCS 11 (1201 Mbit/s), EDCA (single
  user) by default; ``ul_ofdma=True`` adds ns-3's round-robin multi-user scheduler on the
  AP with trigger-based UL OFDMA (spectrum PHY, much slower; see :data:`SETUPS`).

:func:`wifi_uplink_throughput` runs one point, :func:`contention_curve` a sweep over station
counts (the per-station goodput relative to one station, mean over RNG runs), and
:func:`fidelity_rows` compares those with the bundled profiles' curves
(:func:`splitimpera.latency.link.contention_share`). ``python -m splitimpera.latency.ns3.wifi``
prints that table with the median and max |error| per profile.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from dataclasses import dataclass

from . import require


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

    def describe(self) -> str:
        return (f"{self.standard[:4]}.{self.standard[4:]} {self.band_ghz:g} GHz {self.width_mhz} MHz "
                f"{self.streams}x{self.streams} {self.data_mode} ({self.phy_mbps:g} Mbit/s), control {self.control_mode}")


SETUPS: dict[str, WifiSetup] = {
    "wifi4": WifiSetup("80211n", 2.4, 20, 2, "HtMcs15", "ErpOfdmRate24Mbps", 130.0),
    "wifi5": WifiSetup("80211ac", 5, 80, 2, "VhtMcs9", "OfdmRate24Mbps", 780.0),
    "wifi6": WifiSetup("80211ax", 5, 80, 2, "HeMcs11", "OfdmRate24Mbps", 1201.0),
}
# Aliases: the IEEE names map to the profile whose standard they are.
ALIASES = {"802.11n": "wifi4", "802.11ac": "wifi5", "802.11ax": "wifi6"}

DEFAULT_STATIONS = (1, 2, 4, 8, 12, 16, 20)
APP_START_S = 0.5
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
  int associated = 0;            // stations associated when the window opens
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

Result uplink(std::string standard, int n, double seconds, double warmup, double app_start, int run,
              std::string data_mode, std::string control_mode, int width, int nss, double band_ghz,
              double radius, double offered_bps, int payload, bool ul_ofdma) {
  Result res;
  Simulator::Destroy();
  RngSeedManager::SetSeed(20261201);
  RngSeedManager::SetRun(run);

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
    phy.Set("ChannelSettings", StringValue(cs.str()));
    phy.Set("Antennas", UintegerValue(nss));
    phy.Set("MaxSupportedTxSpatialStreams", UintegerValue(nss));
    phy.Set("MaxSupportedRxSpatialStreams", UintegerValue(nss));
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
    phy.Set("ChannelSettings", StringValue(cs.str()));
    phy.Set("Antennas", UintegerValue(nss));
    phy.Set("MaxSupportedTxSpatialStreams", UintegerValue(nss));
    phy.Set("MaxSupportedRxSpatialStreams", UintegerValue(nss));
    mac.SetType("ns3::StaWifiMac", "Ssid", SsidValue(ssid));
    staDev = wifi.Install(phy, mac, sta);
    mac.SetType("ns3::ApWifiMac", "Ssid", SsidValue(ssid));
    apDev = wifi.Install(phy, mac, apNode);
  }
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

  std::vector<Ptr<PacketSink>> sinks;
  for (int i = 0; i < n; ++i) {
    uint16_t port = 9000 + i;
    PacketSinkHelper sh("ns3::UdpSocketFactory", InetSocketAddress(Ipv4Address::GetAny(), port));
    ApplicationContainer s = sh.Install(apNode.Get(0));
    s.Start(Seconds(0.0));
    sinks.push_back(DynamicCast<PacketSink>(s.Get(0)));
    OnOffHelper oo("ns3::UdpSocketFactory", InetSocketAddress(apIf.GetAddress(0), port));
    oo.SetAttribute("OnTime", StringValue("ns3::ConstantRandomVariable[Constant=1]"));
    oo.SetAttribute("OffTime", StringValue("ns3::ConstantRandomVariable[Constant=0]"));
    oo.SetAttribute("DataRate", DataRateValue(DataRate((uint64_t) offered_bps)));
    oo.SetAttribute("PacketSize", UintegerValue(payload));
    ApplicationContainer c = oo.Install(sta.Get(i));
    c.Start(Seconds(app_start + 1e-4 * i));
  }
  std::vector<uint64_t> a(n, 0), b(n, 0);
  double t0 = app_start + warmup, t1 = t0 + seconds;
  g_tb = g_su = 0; g_t0 = t0;
  for (uint32_t i = 0; i < staDev.GetN(); ++i)
    DynamicCast<WifiNetDevice>(staDev.Get(i))->GetPhy()->TraceConnectWithoutContext("PhyTxPsduBegin", MakeCallback(&OnStaTx));
  Simulator::Schedule(Seconds(t0), &MarkRx, &sinks, &a);
  Simulator::Schedule(Seconds(t0), &CountAssociated, &staDev, &res.associated);
  Simulator::Schedule(Seconds(t1), &MarkRx, &sinks, &b);
  Simulator::Stop(Seconds(t1 + 1e-6));
  Simulator::Run();
  Simulator::Destroy();
  for (int i = 0; i < n; ++i) res.rx_bytes.push_back((double) (b[i] - a[i]));
  res.tb_ppdus = g_tb; res.su_ppdus = g_su;
  return res;
}
}  // namespace si_wifi
"""

_LOADED = None


@contextlib.contextmanager
def _quiet_stderr():
    """cppyy prints "Failed to materialize symbols" lines on import: harmless, hidden."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _lib():
    """The compiled C++ scenario (ns-3 imported and the code above compiled once)."""
    global _LOADED
    if _LOADED is None:
        require()
        with _quiet_stderr():
            from ns import ns  # noqa: F401  (loads the ns-3 libraries)
            import cppyy

            cppyy.cppdef(_CPP)
        _LOADED = cppyy.gbl.si_wifi
    return _LOADED


def setup_for(standard: str) -> tuple[str, WifiSetup]:
    """(profile name, ns-3 setup) for ``wifi4|wifi5|wifi6`` or ``802.11n|802.11ac|802.11ax``."""
    name = ALIASES.get(standard, standard)
    if name not in SETUPS:
        raise ValueError(f"unknown Wi-Fi standard {standard!r}; one of {sorted(SETUPS) + sorted(ALIASES)}")
    return name, SETUPS[name]


def wifi_uplink_throughput(standard: str, stations: int, *, seconds: float = 1.0, warmup: float = 0.5,
                           seed_run: int = 1, ul_ofdma: bool = False) -> dict:
    """Saturated UDP uplink goodput of ``stations`` stations to one AP in ns-3 (module docstring).

    Returns a dict: ``profile``, ``setup`` (words), ``stations``, ``seed_run``, ``seconds``,
    ``warmup``, ``per_station_mbps`` (list), ``aggregate_mbps``, ``mean_per_station_mbps``,
    ``jain_fairness`` (1 = equal shares), ``associated`` and ``wall_s``.
    """
    if stations < 1:
        raise ValueError(f"stations must be >= 1, got {stations}")
    if seconds <= 0 or warmup < 0:
        raise ValueError("seconds must be > 0 and warmup >= 0")
    name, s = setup_for(standard)
    if ul_ofdma and s.standard != "80211ax":
        raise ValueError("ul_ofdma needs 802.11ax (wifi6)")
    lib = _lib()
    offered_bps = OFFERED_FACTOR * s.phy_mbps * 1e6 / stations
    t = time.perf_counter()
    r = lib.uplink(s.standard, int(stations), float(seconds), float(warmup), APP_START_S, int(seed_run),
                   s.data_mode, s.control_mode, int(s.width_mhz), int(s.streams), float(s.band_ghz),
                   RADIUS_M, float(offered_bps), UDP_PAYLOAD, bool(ul_ofdma))
    wall = time.perf_counter() - t
    if str(r.error):
        raise RuntimeError(str(r.error))
    per = [float(x) * 8.0 / seconds / 1e6 for x in r.rx_bytes]
    agg = sum(per)
    sq = sum(x * x for x in per)
    return {
        "profile": name,
        "setup": s.describe() + (", UL OFDMA (RR scheduler)" if ul_ofdma else ""),
        "stations": int(stations),
        "seed_run": int(seed_run),
        "seconds": float(seconds),
        "warmup": float(warmup),
        "per_station_mbps": per,
        "aggregate_mbps": agg,
        "mean_per_station_mbps": agg / stations,
        "jain_fairness": (agg * agg / (stations * sq)) if sq > 0 else math.nan,
        "associated": int(r.associated),
        "tb_ppdus": float(r.tb_ppdus),
        "su_ppdus": float(r.su_ppdus),
        "wall_s": wall,
    }
