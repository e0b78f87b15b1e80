"""Device and network profiles: the schema.

A profile is read from YAML (:mod:`splitimpera.config.profile_registry` finds, loads and
registers the files). The YAML edge uses the units named in the keys (``peak_gflops``,
``uplink_mbps``, ``rtt_ms``); the methods of the profile classes return SI values (FLOP/s,
bit/s, seconds, watts).

FLOP convention: ``peak_gflops`` counts 2 FLOP per multiply-add, as datasheets do. The
model profile (fvcore) counts 1 per multiply-add, so :meth:`DeviceProfile.macs_per_s`
halves the datasheet rate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_serializer, model_validator

from .op_kinds import OP_KINDS
from .rate_trace import RateTrace, read_trace_csv
from .strict import StrictModel
from .wifi_phy import STANDARDS, WifiPhy, check_phy


class Efficiency(StrictModel):
    """Fraction of peak sustained by the framework at batch 1, per op class, in (0, 1]."""

    conv: float = Field(gt=0, le=1)
    linear: float = Field(gt=0, le=1)
    other: float = Field(gt=0, le=1)


class KindCoefficients(StrictModel):
    """One op kind of the per-kind compute model (:mod:`splitimpera.latency.kind_model`)."""

    overhead_us: float = Field(ge=0, description="fixed cost per call, µs")
    gmacs_per_s: float | None = Field(None, gt=0, description="multiply-adds per second, 1e9 (None: MACs cost nothing)")
    gbytes_per_s: float | None = Field(None, gt=0, description="bytes moved per second, 1e9 (None: bytes cost nothing)")


class TimingTable(StrictModel):
    """A per-node timing table of one model on this device (``calibrate --for-model``)."""

    file: str = Field(min_length=1, description="CSV: node, pos, kind, measured_s (seconds, median)")
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, description="input shape, CxHxW")
    structure: str = Field(min_length=1, description="hash of the traced graph the table was measured on")
    noise_pct: float = Field(0.0, ge=0, description="run-to-run spread of the whole model (IQR / median), %")


class Compute(StrictModel):
    peak_gflops: float = Field(gt=0, description="fp32 peak, 2 FLOP per multiply-add, GFLOP/s")
    efficiency: Efficiency
    layer_overhead_us: float = Field(ge=0, description="fixed cost per executed layer, µs")
    kinds: dict[str, KindCoefficients] | None = Field(
        None, description="per-kind compute model (replaces the roofline when set; needs an 'all' entry; "
                          "kind/operator entries, e.g. act/silu, for operators measured apart)")
    residual_table: str | None = Field(None, description="CSV of measured nodes the residual model is fitted from")
    residual_kinds: list[str] | None = Field(
        None, description="kinds that get a residual regressor (None: every kind with enough measured nodes)")
    error_pct: float | None = Field(
        None, ge=0, description="held-out whole-model error of this profile's compute model, % (median |error|)")
    timings: list[TimingTable] = Field(default_factory=list, description="measured per-node tables (measured mode)")
    measured_on: dict[str, str | int | list[int]] | None = Field(
        None, description="where calibrate measured kinds: cpu, threads, cpus, torch, date, rounds")

    @model_validator(mode="after")
    def _kinds_all(self) -> "Compute":
        if self.kinds is not None:
            unknown = sorted(k for k in self.kinds if k != "all" and k.partition("/")[0] not in OP_KINDS)
            if unknown:
                raise ValueError(f"unknown op kind(s) {', '.join(unknown)} in kinds; known: all, {', '.join(OP_KINDS)} "
                                 "(an operator of a kind as kind/operator, e.g. act/silu)")
            if "all" not in self.kinds:
                raise ValueError("kinds needs an 'all' entry (used for kinds the fit did not see)")
        if self.residual_table is not None and self.kinds is None:
            raise ValueError("residual_table needs kinds")
        if self.residual_kinds is not None:
            unknown = sorted(set(self.residual_kinds) - set(OP_KINDS))
            if unknown:
                raise ValueError(f"unknown op kind(s) {', '.join(unknown)} in residual_kinds; "
                                 f"known: {', '.join(OP_KINDS)}")
        return self


class Memory(StrictModel):
    capacity_gb: float = Field(gt=0, description="usable memory, GB (1e9 bytes)")
    bandwidth_gbps: float = Field(gt=0, description="sustained memory bandwidth, GB/s")


class Power(StrictModel):
    idle_w: float = Field(ge=0)
    active_w: float = Field(gt=0)

    @model_validator(mode="after")
    def _active_above_idle(self) -> "Power":
        if self.active_w < self.idle_w:
            raise ValueError(f"active_w ({self.active_w}) must be >= idle_w ({self.idle_w})")
        return self


class Overhead(StrictModel):
    """Per-request software cost of one side of the split run, outside the model itself.

    ``request_us + per_byte_us × payload bytes`` is added to the side's service time
    (frame building or parsing, socket calls, thread hand-offs and the interpreter lock: CPU
    time the side spends per request, so it counts against capacity too). ``dispatch_us``
    (server) is the wait for a worker to take a request off the queue: latency, not work.
    ``service_cv`` is the coefficient of variation of the side's service time, drawn from a
    log-normal of that mean (None: constant service times). ``source`` says how the figures
    were obtained (measured by ``calibrate``, or an estimate and from what).
    """

    request_us: float = Field(0.0, ge=0, description="fixed cost per request, µs")
    per_byte_us: float = Field(0.0, ge=0, description="cost per payload byte framed and sent or read and parsed, µs")
    dispatch_us: float = Field(0.0, ge=0, description="server: wait for a worker to take a request, µs")
    service_cv: float | None = Field(None, ge=0, le=10, description="coefficient of variation of the service time "
                                                                    "(log-normal); None: constant")
    source: str = Field("", description="measured (where, when) or estimated (from what)")


class DeviceProfile(StrictModel):
    """A compute platform (edge device or server). ``overhead`` (optional): its per-request
    software cost and service-time spread (:class:`Overhead`); absent, neither is modelled."""

    name: str = Field(min_length=1)
    kind: Literal["device", "server"] = "device"
    description: str = ""
    compute: Compute
    memory: Memory
    power: Power
    overhead: Overhead | None = None
    sources: list[str] = Field(default_factory=list)
    estimates: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Leave out an absent ``overhead``: a profile without one dumps as it did before the field."""
        d = handler(self)
        if isinstance(d, dict) and self.overhead is None:
            d.pop("overhead", None)
        return d

    def macs_per_s(self, op_class: str) -> float:
        """Sustained multiply-adds per second for an op class (``conv``, ``linear``, ``other``)."""
        eff = getattr(self.compute.efficiency, op_class)
        return self.compute.peak_gflops * 1e9 * eff / 2.0

    @property
    def layer_overhead_s(self) -> float:
        return self.compute.layer_overhead_us * 1e-6

    @property
    def memory_bytes(self) -> float:
        return self.memory.capacity_gb * 1e9


class Radio(StrictModel):
    """Huang et al. (MobiSys 2012) power model: P = a_up*t_up + a_down*t_down + beta (mW, Mbit/s)."""

    alpha_up_mw_per_mbps: float = Field(ge=0)
    alpha_down_mw_per_mbps: float = Field(ge=0)
    beta_mw: float = Field(ge=0)


class TcpSettings(StrictModel):
    """TCP as the link's transport sees it (:mod:`splitimpera.latency.transport`).

    ``variant``: ``linux`` (default: Cubic, SACK, PRR, delayed ACKs, what a Raspberry Pi or a
    Jetson runs) or ``newreno`` (NewReno, an ACK per segment, the window halved per loss).
    Defaults are Linux's: initial window 10 segments (RFC 6928), minimum RTO 200 ms (ns-3's
    own default is 1 s), SYN timeout 1 s (RFC 6298's initial RTO), a 4 MiB receive window.
    ``mss_bytes`` defaults to the MTU less the headers. ``connection``: ``persistent`` (one
    connection carries every request; after an idle gap longer than the RTO its window
    restarts at the initial window, RFC 2861) or ``new`` (a handshake round trip per request).
    """

    variant: Literal["linux", "newreno"] = "linux"
    init_cwnd_segments: int = Field(10, ge=1, le=10000)
    min_rto_ms: float = Field(200.0, ge=1.0, le=60000.0)
    syn_rto_ms: float = Field(1000.0, ge=1.0, le=60000.0)
    mss_bytes: int | None = Field(None, gt=0)
    rwnd_bytes: int = Field(4 * 1024 * 1024, gt=0)
    connection: Literal["persistent", "new"] = "persistent"


OPTIONAL_LINK_FIELDS = ("contention", "wifi_standard", "band_ghz", "mcs", "channel_width_mhz", "spatial_streams",
                        "unequal_shares")
WIDTHS_DEFAULT = {"802.11n": 20, "802.11ac": 80, "802.11ax": 80}  # a width every MCS exists at (checks one field)

# Per-packet overhead of IPv4 (20 B) and the transport: TCP 20 B + timestamps option 12 B; UDP 8 B.
DEFAULT_HEADER_BYTES = {"tcp": 52, "udp": 28}


class NetworkProfile(StrictModel):
    """A link between the devices and the server.

    ``transport``: ``tcp`` (default; slow start, loss recovery and retransmission timeouts,
    settings in ``tcp``) or ``udp`` (no handshake, no retransmission: a frame with a lost
    packet is lost). ``header_bytes`` defaults to the transport's IPv4 + TCP/UDP headers.

    ``message_floor_ms`` (optional): no message, however small, takes less than this from the
    sender's send to the receiver having parsed it (two threads waking up on loopback).

    ``trace_csv`` (optional) names a rate trace (:mod:`splitimpera.config.rate_trace`): the simulation
    replays it as the link's rate over time, and ``uplink_mbps`` (and ``downlink_mbps`` when
    the trace has that column) are set to the trace's time-weighted mean, which the analytic
    model uses; values given for them are replaced. A relative path is relative to the YAML
    file that names it (resolved when that file is loaded); the file is read and checked when
    the profile is validated.

    Contention (the share of the rate one of ``n`` stations gets): an explicit ``contention``
    list ``[[stations, fraction], ...]`` is used as given. Without one, a Wi-Fi link
    (``wifi_standard``, ``mcs``, ``channel_width_mhz``, optionally ``spatial_streams`` and
    ``band_ghz``) gets the air-time model's curve for that PHY
    (:mod:`splitimpera.latency.wifi_airtime`), and any other link an even split (1/n).
    ``unequal_shares``: the simulation gives each station its own share, drawn with the
    spread of ns-3's per-station shares (:mod:`splitimpera.latency.share_draw`); off by
    default (every station gets the same share).
    """

    name: str = Field(min_length=1)
    description: str = ""
    # Before the rates: a bad trace is the first error reported, not a missing uplink_mbps.
    trace_csv: str | None = Field(None, description="CSV of time_s, uplink_mbps[, downlink_mbps] the link follows")
    uplink_mbps: float = Field(gt=0)
    downlink_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    loss: float = Field(default=0.0, ge=0, lt=1)
    mtu_bytes: int = Field(default=1500, gt=0)
    transport: Literal["tcp", "udp"] = "tcp"
    tcp: TcpSettings = TcpSettings()
    header_bytes: int | None = Field(default=None, ge=0)
    radio: Radio = Radio(alpha_up_mw_per_mbps=0.0, alpha_down_mw_per_mbps=0.0, beta_mw=0.0)
    contention: list[tuple[int, float]] | None = Field(
        None, description="[[stations, fraction of the rate each gets], ...] from [1, 1.0] (None: the Wi-Fi "
                          "air-time model where the PHY is given, else an even split)")
    wifi_standard: Literal[STANDARDS] | None = Field(None, description="802.11n, 802.11ac or 802.11ax")
    band_ghz: Literal[2.4, 5, 6] | None = Field(None, description="None: 2.4 for 802.11n, else 5")
    mcs: int | None = Field(None, ge=0, description="data MCS index (802.11n: 0-31, the index carries the streams)")
    channel_width_mhz: int | None = Field(None, description="20, 40, 80 or 160 MHz")
    spatial_streams: int | None = Field(None, ge=1, description="802.11ac/ax streams (None: 1; 802.11n: from mcs)")
    unequal_shares: bool = Field(False, description="draw per-station shares with ns-3's spread (simulation)")
    message_floor_ms: float = Field(0.0, ge=0, description="the least time a message takes end to end, ms "
                                                           "(sender and receiver software; 0: none)")
    sources: list[str] = Field(default_factory=list)
    estimates: list[str] = Field(default_factory=list)

    _trace: RateTrace | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _rates_from_trace(cls, data):
        if isinstance(data, dict) and isinstance(data.get("trace_csv"), str):
            try:
                tr = read_trace_csv(data["trace_csv"])
            except ValueError:
                # The trace_csv field validator reports it, naming the field; stand-in rates
                # keep a trace-only profile from adding "uplink_mbps: Field required" to it.
                return {"uplink_mbps": 1.0, "downlink_mbps": 1.0, **data}
            data = dict(data)
            data["uplink_mbps"] = tr.mean_mbps("up")
            if tr.downlink_mbps is not None:
                data["downlink_mbps"] = tr.mean_mbps("down")
        return data

    @field_validator("trace_csv")
    @classmethod
    def _trace_file(cls, v):
        if v is not None:
            read_trace_csv(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> "NetworkProfile":
        if self.header_bytes is None:
            object.__setattr__(self, "header_bytes", DEFAULT_HEADER_BYTES[self.transport])
        if self.header_bytes >= self.mtu_bytes:
            raise ValueError(f"header_bytes ({self.header_bytes}) must be < mtu_bytes ({self.mtu_bytes})")
        mss = self.tcp.mss_bytes
        if mss is not None and mss + self.header_bytes > self.mtu_bytes:
            raise ValueError(f"tcp.mss_bytes ({mss}) + header_bytes ({self.header_bytes}) must be <= mtu_bytes "
                             f"({self.mtu_bytes})")
        if self.trace_csv is not None:
            self._trace = read_trace_csv(self.trace_csv)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Leave out a ``header_bytes`` the profile did not set: it follows ``transport``, so a
        saved scenario reloaded with another transport gets that transport's headers. Leave
        out the Wi-Fi fields and ``contention`` where unset (None, or ``unequal_shares`` off)."""
        d = handler(self)
        if isinstance(d, dict) and "header_bytes" not in self.model_fields_set:
            d.pop("header_bytes", None)
        if isinstance(d, dict):  # unset optional link fields: a profile without them dumps as before they existed
            for k in OPTIONAL_LINK_FIELDS:
                if d.get(k) in (None, False):
                    d.pop(k, None)
        if isinstance(d, dict) and not self.message_floor_ms:  # as before the field existed
            d.pop("message_floor_ms", None)
        return d

    @property
    def trace(self) -> RateTrace | None:
        """The parsed rate trace (bit/s over seconds), or None for a constant-rate link."""
        return self._trace

    @field_validator("contention")
    @classmethod
    def _contention(cls, pts):
        if pts is None:
            return pts
        if not pts or tuple(pts[0]) != (1, 1.0):
            raise ValueError("must start with [1, 1.0]")
        for (n0, f0), (n1, f1) in zip(pts, pts[1:]):
            if n1 <= n0 or not (0 < f1 <= f0):
                raise ValueError("stations must increase and fractions must be non-increasing in (0, 1]")
        return pts

    @field_validator("mcs", "channel_width_mhz", "spatial_streams")
    @classmethod
    def _phy_field(cls, v, info):
        std = info.data.get("wifi_standard")
        if v is None:
            return v
        if std is None:
            raise ValueError(f"{info.field_name} needs wifi_standard (802.11n, 802.11ac or 802.11ax)")
        if info.field_name == "mcs":
            check_phy(std, v, WIDTHS_DEFAULT[std], 1)
        elif info.field_name == "channel_width_mhz":
            check_phy(std, 0, v, 1)
        elif std == "802.11n":
            raise ValueError("802.11n takes its spatial streams from the MCS index (mcs // 8 + 1): leave it out")
        else:
            check_phy(std, 0, WIDTHS_DEFAULT[std], v)
        return v

    @model_validator(mode="after")
    def _wifi(self) -> "NetworkProfile":
        if self.wifi_standard is None:
            return self
        missing = [k for k in ("mcs", "channel_width_mhz") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"wifi_standard {self.wifi_standard} needs {' and '.join(missing)}")
        check_phy(self.wifi_standard, self.mcs, self.channel_width_mhz, self.spatial_streams or 1)
        return self

    @property
    def wifi_phy(self) -> WifiPhy | None:
        """The Wi-Fi PHY the profile states, or None (not Wi-Fi, or not stated)."""
        if self.wifi_standard is None:
            return None
        band = self.band_ghz if self.band_ghz is not None else (2.4 if self.wifi_standard == "802.11n" else 5.0)
        return WifiPhy(self.wifi_standard, self.mcs, self.channel_width_mhz, self.spatial_streams or 1, band)

    @property
    def uplink_bps(self) -> float:
        return self.uplink_mbps * 1e6

    @property
    def downlink_bps(self) -> float:
        return self.downlink_mbps * 1e6

    @property
    def rtt_s(self) -> float:
        return self.rtt_ms * 1e-3

    @property
    def payload_per_packet(self) -> int:
        """Payload bytes per packet: the TCP MSS (``tcp.mss_bytes`` when set), else MTU − headers."""
        if self.transport == "tcp" and self.tcp.mss_bytes is not None:
            return self.tcp.mss_bytes
        return self.mtu_bytes - self.header_bytes
