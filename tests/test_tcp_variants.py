"""The TCP variants (``network.tcp.variant``: linux, newreno) against closed forms, without ns-3,
and the setting's way through the scenario, the command line and the reports."""

import math

import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.latency.tcp_rounds import CUBIC_BETA, ConnState, Losses, tcp_transfer
from splitimpera.latency.transport import Path, expected_transfer, path_for
from splitimpera.report.html import render_report

MSS, HDR = 1448, 52


def _path(variant, rate=1e9, rtt=0.1, loss=0.0, **kw):
    return Path(rate_bps=rate, ack_rate_bps=rate, rtt_s=rtt, loss=loss, mss=MSS, header=HDR, variant=variant, **kw)


class _At(Losses):
    """Exactly these transmission numbers are lost."""

    def __init__(self, *positions):
        self.pending = sorted(positions)
        super().__init__(0.5, None)
        self.next = self.pending[0] if self.pending else math.inf

    def gap(self, after):
        rest = [p for p in self.pending if p > after]
        return rest[0] if rest else math.inf


def test_one_loss_in_the_first_window_costs_linux_fewer_rounds():
    """16 segments over an idle connection (window 10), the first one lost; nine behind it
    give the duplicate ACKs. NewReno halves the window (flight 10 → 5): the 7 left take two
    rounds (5, then 2). Linux keeps β = 0.7 of it (7): they take one."""
    n = 16
    nr, lx = _path("newreno"), _path("linux")
    assert math.floor(10 * CUBIC_BETA) == 7 and 10 // 2 == 5
    t_nr = tcp_transfer(nr, n * MSS, ConnState.initial(nr, "idle"), _At(0))
    t_lx = tcp_transfer(lx, n * MSS, ConnState.initial(lx, "idle"), _At(0))
    s = nr.seg_s
    # NewReno: the lossy round, the round of 5, the last round of 2.
    assert t_nr.time_s == pytest.approx(2 * nr.base_rtt_s + 2 * s + nr.rtt_s / 2, rel=1e-12)
    # Linux: the lossy round (its first ACK, delayed, comes one segment later), the last round of 7.
    assert t_lx.time_s == pytest.approx((lx.base_rtt_s + s) + 7 * s + lx.rtt_s / 2, rel=1e-12)
    assert t_lx.time_s < t_nr.time_s - 0.9 * nr.rtt_s
    assert t_nr.tx_segments == t_lx.tx_segments == n + 1


def test_a_loss_late_in_a_round_is_recovered_not_timed_out_under_linux():
    """The last segment of the first window lost, more data to send: under linux the ACKs of
    the nine before it released new segments (slow start: two each), whose duplicate ACKs
    recover it in a round; the newreno model counts only limited transmit's two and waits
    for the RTO."""
    n = 40
    lx, nr = _path("linux", min_rto_s=1.0), _path("newreno", min_rto_s=1.0)
    t_lx = tcp_transfer(lx, n * MSS, ConnState.initial(lx, "idle"), _At(9)).time_s
    t_nr = tcp_transfer(nr, n * MSS, ConnState.initial(nr, "idle"), _At(9)).time_s
    assert t_lx < 4 * lx.base_rtt_s
    assert t_nr > 1.0 + nr.base_rtt_s


def test_delayed_acks_add_a_segment_time_per_round_in_slow_start():
    """Lossless, 30 segments from window 10: rounds of 10 and 20. With an ACK per 2 segments the
    first ACK of the round returns one segment time later."""
    b = 30 * MSS
    nr, lx = _path("newreno"), _path("linux")
    t_nr = expected_transfer(nr, b, "idle").time_s
    assert t_nr == pytest.approx(nr.base_rtt_s + 20 * nr.seg_s + nr.rtt_s / 2, rel=1e-12)
    assert expected_transfer(lx, b, "idle").time_s == pytest.approx(t_nr + lx.seg_s, rel=1e-12)


def test_newreno_is_the_model_before_the_variants():
    """NewReno's closed forms: slow-start rounds doubling from 10 and, under loss, the mean that
    counts one loss exactly (E[T] = T0 + p·RTO + O(p²) for one segment)."""
    p = _path("newreno", rate=1e9)
    for segments in (10, 11, 31, 150):
        rounds = math.ceil(math.log2(segments / 10 + 1))
        last = segments - 10 * (2 ** (rounds - 1) - 1)
        expect = (rounds - 1) * p.base_rtt_s + last * p.seg_s + p.rtt_s / 2
        assert expected_transfer(p, segments * MSS, "idle").time_s == pytest.approx(expect, rel=1e-12)
    lossy = _path("newreno", rate=10e6, loss=1e-3)
    t0 = expected_transfer(_path("newreno", rate=10e6), 1000, "idle").time_s
    assert expected_transfer(lossy, 1000, "idle").time_s == pytest.approx(
        t0 + 1e-3 * max(0.2, 3 * lossy.base_rtt_s), rel=2e-4)


def test_linux_is_the_default_and_a_bad_variant_is_refused():
    assert si.get_network("lte").tcp.variant == "linux"
    assert path_for(si.get_network("lte")).variant == "linux"
    with pytest.raises(ValueError, match="variant"):
        _path("vegas")


def test_variant_round_trips_through_set_and_the_reports(repo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"network.tcp.variant": "newreno"})
    assert sc.network.tcp.variant == "newreno" and path_for(sc.network).variant == "newreno"
    fast = ["--set", "workload.num_requests=20", "--set", "analysis.engine=analytic"]
    out = tmp_path / "out"
    assert main(["simulate", "scenarios/demo.yaml", "-o", str(out), "--set", "network.tcp.variant=newreno", *fast]) == 0
    assert "transport: TCP newreno" in capsys.readouterr().out
    text = render_report([out / "demo"])
    assert "variant: newreno" in text
    assert main(["simulate", "scenarios/demo.yaml", "--set", "network.tcp.variant=bbr", *fast]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scenarios/demo.yaml" in err[0] and "network.tcp.variant" in err[0]
