"""A Wi-Fi link's PHY: standard, band, MCS, channel width, spatial streams, guard interval.

Rates and air times from IEEE 802.11-2020: HT (802.11n), VHT (802.11ac) and HE SU
(802.11ax) data PPDUs, legacy OFDM control frames, SIFS, slot and signal extension per band.
The network profile's ``wifi_standard``, ``mcs``, ``channel_width_mhz`` and
``spatial_streams`` describe one; :mod:`splitimpera.latency.wifi_airtime` turns it into a
contention curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STANDARDS = ("802.11n", "802.11ac", "802.11ax")
# Data subcarriers per channel width (MHz): HT/VHT, and HE (4x longer symbols, 4x the tones).
DATA_SUBCARRIERS = {"ht": {20: 52, 40: 108, 80: 234, 160: 468}, "he": {20: 234, 40: 468, 80: 980, 160: 1960}}
# Coded bits per subcarrier per stream (modulation bits x code rate), by MCS (per stream for HT).
BITS_PER_SUBCARRIER = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 20 / 3, 7.5, 25 / 3)
MAX_MCS = {"802.11n": 31, "802.11ac": 9, "802.11ax": 11}
WIDTHS_MHZ = {"802.11n": (20, 40), "802.11ac": (20, 40, 80, 160), "802.11ax": (20, 40, 80, 160)}
MAX_STREAMS = {"802.11n": 4, "802.11ac": 8, "802.11ax": 8}
LTF_COUNT = (1, 2, 4, 4, 6, 6, 8, 8)  # training fields per number of spatial streams

SLOT_S = 9e-6  # OFDM slot (802.11a/g short slot at 2.4 GHz)

@dataclass(frozen=True)
class WifiPhy:
    """One link's PHY: standard, band (GHz), MCS, channel width (MHz) and spatial streams.

    For 802.11n the MCS index (0–31) carries the streams (``mcs // 8 + 1``); for
    802.11ac/ax it is per stream (0–9, 0–11) and ``streams`` says how many.
    """

    standard: str
    mcs: int
    width_mhz: int
    streams: int = 1
    band_ghz: float = 5.0
    guard_interval_ns: int | None = None  # None: 800 (HT/VHT long GI), 3200 (HE: ns-3's default)

    def __post_init__(self):
        check_phy(self.standard, self.mcs, self.width_mhz, self.streams)

    @property
    def nss(self) -> int:
        """Spatial streams actually used (802.11n: from the MCS index)."""
        return self.mcs // 8 + 1 if self.standard == "802.11n" else self.streams

    @property
    def gi_s(self) -> float:
        if self.guard_interval_ns is not None:
            return self.guard_interval_ns * 1e-9
        return 3.2e-6 if self.standard == "802.11ax" else 0.8e-6

    @property
    def symbol_s(self) -> float:
        """Data OFDM symbol with its guard interval: 3.2 µs (HT/VHT) or 12.8 µs (HE) + GI."""
        return (12.8e-6 if self.standard == "802.11ax" else 3.2e-6) + self.gi_s

    @property
    def bits_per_symbol(self) -> float:
        """Data bits per OFDM symbol (N_DBPS)."""
        tones = DATA_SUBCARRIERS["he" if self.standard == "802.11ax" else "ht"][self.width_mhz]
        per_stream = self.mcs % 8 if self.standard == "802.11n" else self.mcs
        return tones * BITS_PER_SUBCARRIER[per_stream] * self.nss

    @property
    def rate_mbps(self) -> float:
        """The data PHY rate, Mbit/s, at this guard interval."""
        return self.bits_per_symbol / self.symbol_s / 1e6

    @property
    def sifs_s(self) -> float:
        return 10e-6 if self.band_ghz < 3 else 16e-6

    @property
    def signal_extension_s(self) -> float:
        return 6e-6 if self.band_ghz < 3 else 0.0

    def preamble_s(self) -> float:
        """Legacy + HT/VHT/HE preamble duration of a data PPDU, seconds."""
        n_ltf = LTF_COUNT[self.nss - 1]
        if self.standard == "802.11n":
            return 20e-6 + 8e-6 + 4e-6 + 4e-6 * n_ltf
        if self.standard == "802.11ac":
            return 20e-6 + 8e-6 + 4e-6 + 4e-6 * n_ltf + 4e-6
        return 20e-6 + 4e-6 + 8e-6 + 4e-6 + (6.4e-6 + self.gi_s) * n_ltf  # RL-SIG, HE-SIG-A, HE-STF, 2x HE-LTFs

    def ppdu_s(self, nbytes: int) -> float:
        """Air time of a data PPDU of ``nbytes`` (PSDU), seconds: preamble, SERVICE + tail, symbols."""
        symbols = math.ceil((16 + 8 * nbytes + 6) / self.bits_per_symbol)
        return self.preamble_s() + symbols * self.symbol_s + self.signal_extension_s

    def legacy_s(self, nbytes: int, mbps: float) -> float:
        """Air time of a legacy OFDM frame of ``nbytes`` at ``mbps`` (6–54), seconds."""
        symbols = math.ceil((16 + 8 * nbytes + 6) / (mbps * 4))
        return 20e-6 + 4e-6 * symbols + self.signal_extension_s


def check_phy(standard: str, mcs: int, width_mhz: int, streams: int) -> None:
    """Raise ``ValueError`` naming what is wrong with a PHY setting."""
    if standard not in STANDARDS:
        raise ValueError(f"unknown Wi-Fi standard {standard!r}; one of {', '.join(STANDARDS)}")
    if not 0 <= mcs <= MAX_MCS[standard]:
        raise ValueError(f"mcs {mcs} is not an {standard} MCS (0-{MAX_MCS[standard]})")
    if width_mhz not in WIDTHS_MHZ[standard]:
        raise ValueError(f"channel_width_mhz {width_mhz} is not an {standard} width "
                         f"({', '.join(map(str, WIDTHS_MHZ[standard]))})")
    if not 1 <= streams <= MAX_STREAMS[standard]:
        raise ValueError(f"spatial_streams {streams} must be 1-{MAX_STREAMS[standard]} for {standard}")
    if standard == "802.11ac":
        bits = DATA_SUBCARRIERS["ht"][width_mhz] * BITS_PER_SUBCARRIER[mcs] * streams
        if abs(bits - round(bits)) > 1e-6:  # VHT leaves out the MCS/width/stream mixes with a fractional N_DBPS
            raise ValueError(f"VHT MCS {mcs} is not defined at {width_mhz} MHz with {streams} stream(s)")


