"""The Wi-Fi air-time contention model (Bianchi with A-MPDU, Block Ack and Block Ack
Requests) against closed forms, and the profile fields that choose it."""

import pytest

import splitimpera as si
from splitimpera.config.hardware import NetworkProfile
from splitimpera.config.wifi_phy import WifiPhy
from splitimpera.latency.link import contention_share, contention_source
from splitimpera.latency.wifi_airtime import (aggregate_goodput_bps, collision_probability, mpdus_per_ampdu,
                                              single_station_goodput_bps, station_share)


def test_phy_rates_are_the_standard_tables():
    assert WifiPhy("802.11n", 7, 20, band_ghz=2.4).rate_mbps == pytest.approx(65.0)
    assert WifiPhy("802.11n", 15, 20, band_ghz=2.4).rate_mbps == pytest.approx(130.0)
    assert WifiPhy("802.11ac", 9, 80, 2).rate_mbps == pytest.approx(780.0)
    assert WifiPhy("802.11ax", 11, 80, 2, guard_interval_ns=800).rate_mbps == pytest.approx(1201.0, abs=0.1)
    assert WifiPhy("802.11ax", 11, 80, 2).rate_mbps == pytest.approx(1020.8, abs=0.1)  # 3.2 µs GI, ns-3's default
    with pytest.raises(ValueError, match="not defined at 20 MHz"):
        WifiPhy("802.11ac", 9, 20, 1)


def test_one_station_is_the_closed_form_cycle():
    """One station: one A-MPDU per AIFS + CWmin/2 slots + PPDU + SIFS + Block Ack, by hand.

    802.11ac VHT MCS 9, 80 MHz, 2 streams: 42 MPDUs of 1538 B (65 535 B A-MPDU limit),
    PSDU 64 848 B → 167 symbols of 3 120 bits = 668 µs + 44 µs preamble; AIFS 43 µs, mean
    backoff 7.5 × 9 µs, SIFS 16 µs, Block Ack at 24 Mbit/s 32 µs. (ns-3 measured 568.9 Mbit/s.)"""
    phy = WifiPhy("802.11ac", 9, 80, 2)
    assert mpdus_per_ampdu(phy) == 42
    cycle_s = (43 + 7.5 * 9 + 44 + 668 + 16 + 32) * 1e-6
    expected = 42 * 1472 * 8 / cycle_s
    assert single_station_goodput_bps(phy) == pytest.approx(expected, rel=1e-9)
    assert aggregate_goodput_bps(phy, 1) == pytest.approx(expected, rel=1e-9)  # Bianchi with p = 0
    assert station_share(phy, 1) == pytest.approx(1.0)
    # 802.11n at 2.4 GHz: SIFS 10 µs, 6 µs signal extension on every OFDM frame; 65 Mbit/s
    # (MCS 7) fills the 5.484 ms PPDU limit with 28 MPDUs, not 42.
    ht = WifiPhy("802.11n", 7, 20, band_ghz=2.4)
    assert mpdus_per_ampdu(ht) == 28
    assert ht.ppdu_s(28 * 1544 - 2) <= 5.484e-3 < ht.ppdu_s(29 * 1544 - 2)


def test_bianchi_fixed_point():
    p, tau = collision_probability(2)
    assert p == pytest.approx(tau, rel=1e-9)  # two stations: p = 1 − (1 − τ)
    for n in (5, 20):
        p, tau = collision_probability(n)
        assert p == pytest.approx(1 - (1 - tau) ** (n - 1), abs=1e-9)
    assert collision_probability(20)[0] > collision_probability(5)[0]


def test_block_ack_requests_after_collisions_cost_share():
    """A Block Ack Request after each collided A-MPDU is one more access: the share falls
    faster with it than without (ns-3 sends one; plain Bianchi was 3-42 % above ns-3)."""
    phy = WifiPhy("802.11n", 15, 20, band_ghz=2.4)
    for n in (4, 12, 20):
        assert station_share(phy, n) < station_share(phy, n, explicit_bar=False)
    assert station_share(phy, 20) < station_share(phy, 20, explicit_bar=False) * 0.9


def test_share_falls_faster_with_stations_at_higher_phy_rates():
    """Per the model: at a higher PHY rate an A-MPDU of the same bytes is shorter, so the
    fixed per-access costs (backoff, Block Ack, the request after a collision) are a larger
    fraction of the air time, and the per-station share at many stations is lower. The effect
    is small (~3 % between VHT MCS 0 and 9 at 20 stations; ns-3's development runs agree
    within their noise)."""
    shares = [station_share(WifiPhy("802.11ac", m, 80, 2), 20) for m in range(10)]
    assert all(b < a for a, b in zip(shares, shares[1:]))
    assert 0.02 < 1 - shares[-1] / shares[0] < 0.05  # ~3 % lower at MCS 9
    for m in (0, 9):
        curve = [station_share(WifiPhy("802.11ac", m, 80, 2), n) for n in (1, 2, 4, 8, 16, 32)]
        assert all(b < a for a, b in zip(curve, curve[1:]))
        assert all(s * n <= 1.0 + 1e-9 for s, n in zip(curve, (1, 2, 4, 8, 16, 32)))  # collisions cost aggregate


def test_bundled_wifi_profiles_take_the_model_and_a_list_is_kept():
    net = si.get_network("wifi4")
    assert (net.wifi_standard, net.mcs, net.channel_width_mhz, net.band_ghz) == ("802.11n", 15, 20, 2.4)
    assert net.contention is None and "air-time model" in contention_source(net)
    assert contention_share(net, 8) == pytest.approx(station_share(net.wifi_phy, 8))
    # ns-3's measured curve at this PHY (the profile's comment): the model is within 5 % at 2-20.
    for n, measured in ((2, 0.470), (8, 0.0914), (20, 0.0293)):
        assert contention_share(net, n) == pytest.approx(measured, rel=0.05)
    # An explicit list wins over the PHY (backward compatible), and says so.
    listed = NetworkProfile.model_validate({**net.model_dump(), "contention": [[1, 1.0], [8, 0.1]]})
    assert contention_share(listed, 8) == pytest.approx(0.1)
    assert "contention list" in contention_source(listed)
    # Another MCS moves the curve; a link without a PHY or a list splits evenly.
    other = NetworkProfile.model_validate({**net.model_dump(), "mcs": 3})
    assert contention_share(other, 20) != contention_share(net, 20)
    lte = NetworkProfile.model_validate({**si.get_network("lte").model_dump(), "contention": None})
    assert contention_share(lte, 4) == pytest.approx(0.25) and "even split" in contention_source(lte)
