"""ns-3 point-to-point transfers: the oracle for :mod:`splitimpera.latency.transport`.

Two nodes joined by a point-to-point link of one rate both ways and a one-way delay of
``rtt/2``; the bottleneck queue is deep (100 000 packets) so that the only losses are the
random ones. Losses: a ``RateErrorModel`` (packet unit) on the receiver's device, so data
segments (and a new connection's SYN) are lost with probability ``loss`` and ACKs are not.

TCP settings (``stack="matched"``; ``"defaults"`` leaves ns-3's own, see
:func:`tcp_transfer_s`), the same as our model's (:class:`~splitimpera.config.hardware.TcpSettings`):
NewReno congestion control (the window halves on a loss), SACK and timestamps on (ns-3's
defaults; MSS = ``mss_bytes``, 1448 on a 1500-byte MTU), PRR recovery and limited transmit
(defaults), an ACK for every segment (``DelAckCount`` 1, as Linux's quick-ACK mode early in
a connection: the window doubles per round trip in slow start), initial window
``init_cwnd_segments``, minimum RTO ``min_rto_ms``, SYN timeout 1 s (RFC 6298's initial
RTO), send buffer larger than the payload, receive buffer ``rwnd_bytes``.

Connections: ``new`` — the client connects at ``t = 0`` and sends as soon as the handshake
completes; the time is measured from 0 (handshake included). ``idle`` — the connection is
opened first and the payload handed to the socket at ``t = 2 s + 4·rtt``, losses switched
on at that instant; the time is measured from then. The time ends when the receiving
application has the payload's last byte (a trace on the sink, not a polling step).

UDP: the payload is cut into datagrams of ``mtu − 28`` bytes sent back to back; a frame
is delivered when all its datagrams arrive. Frames are spaced so that they never overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import compile_cpp

_CPP = r"""
#include "ns3/core-module.h"
#include "ns3/network-module.h"
#include "ns3/internet-module.h"
#include "ns3/point-to-point-module.h"
#include "ns3/applications-module.h"

namespace si_ns3 {
using namespace ns3;

static uint64_t g_target = 0, g_rx = 0;
static double g_done = -1.0;
static double g_gap = 1.0;
static std::vector<uint32_t> g_frame_pkts;
static std::vector<double> g_frame_last;

static void OnRx(Ptr<const Packet> p, const Address &) {
  g_rx += p->GetSize();
  if (g_done < 0 && g_rx >= g_target) { g_done = Simulator::Now().GetSeconds(); Simulator::Stop(); }
}

static void OnUdpRx(Ptr<const Packet> p, const Address &) {
  double now = Simulator::Now().GetSeconds();
  size_t k = (size_t) std::floor(now / g_gap);
  if (k < g_frame_pkts.size()) { g_frame_pkts[k] += 1; g_frame_last[k] = now; }
}

static void SendBytes(Ptr<Socket> s, uint32_t bytes) { s->Send(Create<Packet>(bytes)); }
static void ConnectTo(Ptr<Socket> s, Ipv4Address server) { s->Bind(); s->Connect(InetSocketAddress(server, 9)); }
static void EnableLoss(Ptr<RateErrorModel> em) { em->Enable(); }
static void SendFrame(Ptr<Socket> s, uint64_t bytes, uint32_t dgram) {
  uint64_t left = bytes;
  while (left > 0) { uint32_t n = (uint32_t) std::min<uint64_t>(left, dgram); s->Send(Create<Packet>(n)); left -= n; }
}

static NodeContainer MakeLink(double rate_bps, double one_way_s, double loss, int run,
                              Ptr<RateErrorModel> &em, Ipv4Address &server) {
  RngSeedManager::SetSeed(12345);
  RngSeedManager::SetRun(run);
  NodeContainer nodes; nodes.Create(2);
  PointToPointHelper p2p;
  p2p.SetDeviceAttribute("DataRate", DataRateValue(DataRate((uint64_t) rate_bps)));
  p2p.SetChannelAttribute("Delay", TimeValue(Seconds(one_way_s)));
  p2p.SetQueue("ns3::DropTailQueue", "MaxSize", QueueSizeValue(QueueSize("100000p")));
  NetDeviceContainer dev = p2p.Install(nodes);
  em = CreateObject<RateErrorModel>();
  em->SetUnit(RateErrorModel::ERROR_UNIT_PACKET);
  em->SetRate(loss);
  em->AssignStreams(run);
  dev.Get(1)->SetAttribute("ReceiveErrorModel", PointerValue(em));
  InternetStackHelper st; st.Install(nodes);
  Ipv4AddressHelper a; a.SetBase("10.1.1.0", "255.255.255.0");
  Ipv4InterfaceContainer ifs = a.Assign(dev);
  server = ifs.GetAddress(1);
  return nodes;
}

// A packet sink on node 1 port 9 whose receptions call `on_rx`, and node 0's socket, connected
// to it once the simulation runs (connecting before Simulator::Run crashes in traffic control).
static Ptr<Socket> SinkAndSocket(NodeContainer &nodes, Ipv4Address server, const char *factory, TypeId tid,
                                 void (*on_rx)(Ptr<const Packet>, const Address &)) {
  PacketSinkHelper sk(factory, InetSocketAddress(Ipv4Address::GetAny(), 9));
  ApplicationContainer sa = sk.Install(nodes.Get(1)); sa.Start(Seconds(0.0));
  DynamicCast<PacketSink>(sa.Get(0))->TraceConnectWithoutContext("Rx", MakeCallback(on_rx));
  Ptr<Socket> s = Socket::CreateSocket(nodes.Get(0), tid);
  Simulator::Schedule(Seconds(0.0), &ConnectTo, s, server);
  return s;
}

double tcp(double rate_bps, double one_way_s, uint64_t bytes, double loss, int run, bool idle,
           uint32_t mss, uint32_t init_cwnd, double min_rto_s, uint32_t rwnd_bytes, bool ns3_defaults) {
  Simulator::Destroy();
  // Config::SetDefault outlives the simulation: every call sets each of these, either way.
  Config::SetDefault("ns3::TcpL4Protocol::SocketType",
                     TypeIdValue(TypeId::LookupByName(ns3_defaults ? "ns3::TcpCubic" : "ns3::TcpNewReno")));
  Config::SetDefault("ns3::TcpSocket::SegmentSize", UintegerValue(mss));
  Config::SetDefault("ns3::TcpSocket::InitialCwnd", UintegerValue(init_cwnd));
  Config::SetDefault("ns3::TcpSocket::DelAckCount", UintegerValue(ns3_defaults ? 2 : 1));
  Config::SetDefault("ns3::TcpSocket::SndBufSize", UintegerValue((uint32_t) std::max<uint64_t>(bytes + 65536, 1u << 20)));
  Config::SetDefault("ns3::TcpSocket::RcvBufSize", UintegerValue(rwnd_bytes));
  Config::SetDefault("ns3::TcpSocket::ConnTimeout", TimeValue(Seconds(ns3_defaults ? 3.0 : 1.0)));
  Config::SetDefault("ns3::TcpSocketBase::MinRto", TimeValue(Seconds(ns3_defaults ? 1.0 : min_rto_s)));
  Ptr<RateErrorModel> em; Ipv4Address server;
  NodeContainer nodes = MakeLink(rate_bps, one_way_s, loss, run, em, server);
  Ptr<Socket> s = SinkAndSocket(nodes, server, "ns3::TcpSocketFactory", TcpSocketFactory::GetTypeId(), &OnRx);
  double t_send = idle ? 2.0 + 8.0 * one_way_s : 0.0;
  if (idle) { em->Disable(); Simulator::Schedule(Seconds(t_send), &EnableLoss, em); }
  Simulator::Schedule(Seconds(t_send), &SendBytes, s, (uint32_t) bytes);
  g_target = bytes; g_rx = 0; g_done = -1.0;
  Simulator::Stop(Seconds(t_send + 3600.0));
  Simulator::Run();
  double done = g_done;
  Simulator::Destroy();
  return done < 0 ? -1.0 : done - t_send;
}

double udp_gap() { return g_gap; }
uint32_t udp_frame_packets(size_t k) { return g_frame_pkts[k]; }
double udp_frame_last(size_t k) { return g_frame_last[k]; }

void udp(double rate_bps, double one_way_s, uint64_t bytes, double loss, int run, uint32_t frames,
         uint32_t dgram) {
  Simulator::Destroy();
  Ptr<RateErrorModel> em; Ipv4Address server;
  NodeContainer nodes = MakeLink(rate_bps, one_way_s, loss, run, em, server);
  Ptr<Socket> s = SinkAndSocket(nodes, server, "ns3::UdpSocketFactory", UdpSocketFactory::GetTypeId(), &OnUdpRx);
  uint64_t packets = (bytes + dgram - 1) / dgram;
  double frame_s = (double) (bytes + packets * 30) * 8.0 / rate_bps;
  g_gap = std::ceil((2.0 * frame_s + 2.0 * one_way_s + 0.01) * 1000.0) / 1000.0;
  g_frame_pkts.assign(frames, 0); g_frame_last.assign(frames, -1.0);
  for (uint32_t k = 0; k < frames; ++k)
    Simulator::Schedule(Seconds(k * g_gap + 1e-6), &SendFrame, s, bytes, dgram);
  Simulator::Stop(Seconds(frames * g_gap + 1.0));
  Simulator::Run();
  Simulator::Destroy();
}
}  // namespace si_ns3
"""

def _lib():
    """The compiled C++ helpers (ns-3 imported and the code above compiled once)."""
    return compile_cpp(_CPP, "si_ns3")


@dataclass(frozen=True)
class TcpConfig:
    """The TCP settings both ns-3 and the model use (defaults: Linux-like, RFC 6928)."""

    mss_bytes: int = 1448
    init_cwnd_segments: int = 10
    min_rto_ms: float = 200.0
    rwnd_bytes: int = 4 * 1024 * 1024


STACKS = ("matched", "defaults")
NS3_DEFAULT_MIN_RTO_MS, NS3_DEFAULT_SYN_RTO_MS = 1000.0, 3000.0  # ns-3's MinRto and ConnTimeout


def tcp_transfer_s(rate_bps: float, rtt_s: float, payload_bytes: int, loss: float = 0.0, *,
                   connection: str = "new", run: int = 1, tcp: TcpConfig = TcpConfig(),
                   stack: str = "matched") -> float:
    """ns-3's time for one TCP transfer of ``payload_bytes`` (see the module docstring), s.

    ``stack``: ``matched`` (NewReno, an ACK per segment, ``tcp``'s minimum RTO, SYN timeout
    1 s) or ``defaults`` (ns-3's own: Cubic with HyStart, a delayed ACK every 2 segments,
    minimum RTO 1 s, SYN timeout 3 s); SACK, PRR and limited transmit either way, MSS,
    initial window and buffers from ``tcp``."""
    if connection not in ("new", "idle"):
        raise ValueError(f"connection must be 'new' or 'idle', got {connection!r}")
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {STACKS}, got {stack!r}")
    t = float(_lib().tcp(float(rate_bps), rtt_s / 2.0, int(payload_bytes), float(loss), int(run),
                         connection == "idle", int(tcp.mss_bytes), int(tcp.init_cwnd_segments),
                         tcp.min_rto_ms * 1e-3, int(tcp.rwnd_bytes), stack == "defaults"))
    if t < 0:
        raise RuntimeError(f"ns-3 transfer of {payload_bytes} B did not complete within an hour (run {run})")
    return t


def udp_frames(rate_bps: float, rtt_s: float, payload_bytes: int, loss: float = 0.0, *, frames: int = 1,
               run: int = 1, mtu_bytes: int = 1500) -> tuple[float, float]:
    """``frames`` UDP frames of ``payload_bytes`` through ns-3: (mean latency of the delivered
    frames in seconds — from handing the frame to the socket to its last datagram —, the
    fraction of frames that lost a datagram)."""
    lib = _lib()
    dgram = mtu_bytes - 28
    lib.udp(float(rate_bps), rtt_s / 2.0, int(payload_bytes), float(loss), int(run), int(frames), int(dgram))
    packets = math.ceil(payload_bytes / dgram)
    gap = float(lib.udp_gap())
    lat, lost = [], 0
    for k in range(frames):
        if int(lib.udp_frame_packets(k)) == packets:
            lat.append(float(lib.udp_frame_last(k)) - k * gap)
        else:
            lost += 1
    mean = sum(lat) / len(lat) if lat else math.nan
    return mean, lost / frames
