"""Early exit: exit heads, measured exit behaviour, both engines, design points.

References are independent of the code under test where one exists: the split computing
point of the same split (τ above 1 never exits), a refit of the exit head checked on the
model's own head (τ = 0 always exits), closed-form FLOPs of the exit head and the roofline
of the device profile, and the binomial sampling error of the replayed exit decisions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import splitimpera as si
from splitimpera.accuracy.early_exit import ExitHead, exit_behaviour, exit_head_work, fit_exit_head
from splitimpera.latency.compute import compute_time_s



@pytest.fixture(scope="module")
def exit_scenario(repo_root):
    """demo_exit with an exit head at every inner split, τ in {0, 0.5}, analytic engine."""
    tm = si.load_model("digits_cnn")
    names = [sp.name for sp in si.find_splits(tm, (1, 32, 32))][1:-1]

    def make(**over):
        base = {"exit.splits": names, "exit.thresholds": [0.0, 0.5], "exit.head": "linear", "exit.epochs": 5,
                "bottleneck.calibration_limit": 512,
                "analysis.engine": "analytic"}
        return si.load_scenario(repo_root / "scenarios" / "demo_exit.yaml", overrides={**base, **over})

    return make, names


@pytest.fixture(scope="module")
def prepared(exit_scenario):
    make, _ = exit_scenario
    return si.prepare(make())


def _never(sc):
    """The scenario with τ = 1.5 (above every confidence): the schema refuses it, the engine takes it."""
    return sc.model_copy(update={"exit": sc.exit.model_copy(update={"thresholds": [1.5]})})


def test_tau_above_one_never_exits_and_equals_split_computing_at_every_split(exit_scenario, prepared):
    make, names = exit_scenario
    sc = _never(make())
    res = si.evaluate(sc, prepared.__class__(prepared.traced, prepared.profile, prepared.full_accuracy,
                                             prepared.importance, _rebuild(prepared, sc)))
    t = res.table
    dev = sc.device
    for s in names:
        ee, sc_row = t.loc[(s, "none", repr(1.5))], t.loc[(s, "none", "none")]
        assert ee["config"] == "EE" and sc_row["config"] == "SC"
        assert ee["exit_rate"] == 0.0
        assert ee["accuracy"] == sc_row["accuracy"]  # exactly: the same samples, the same server path
        for col in ("bytes_sent", "uplink_s", "server_compute_s", "downlink_s", "frame_loss_ratio"):
            assert ee[col] == sc_row[col], col
        # The device runs the exit head on top of the head: the only difference.
        extra = ee["device_compute_s"] - sc_row["device_compute_s"]
        assert ee["latency_s"] - sc_row["latency_s"] == pytest.approx(extra, rel=1e-9, abs=1e-15)
        work = prepared.points.outcomes.work[s]
        assert extra == pytest.approx(_roofline_s(work, dev), rel=1e-9)


def _rebuild(prep, sc):
    """Design points of ``prep`` re-derived for ``sc``'s thresholds from the stored outcomes."""
    from splitimpera.accuracy.design_points import _with_exits

    base = prep.points.table.xs("none", level="exit")[[c for c in prep.points.table.columns
                                                     if c not in ("exit_threshold", "exit_rate", "exit_accuracy",
                                                                  "rest_accuracy")]]
    table, decisions, info = _with_exits(sc, base, prep.points.outcomes)
    return prep.points.__class__(table, {**prep.points.info, "exit": info}, prep.points.full_accuracy, decisions,
                                 prep.points.outcomes)


def _roofline_s(work: dict, dev) -> float:
    """Seconds of the exit head as one extra node on the device profile (compute.py's model)."""
    compute = sum(work[f"flops_{c}"] / dev.macs_per_s(c) for c in ("conv", "linear", "other"))
    memory = work["bytes_moved"] / (dev.memory.bandwidth_gbps * 1e9)
    return max(compute, memory) + work["layers"] * dev.layer_overhead_s


def test_exit_head_flops_are_fvcore_counts_and_match_the_closed_form(prepared):
    tm = prepared.traced
    k = tm.output_width
    for s, work in prepared.points.outcomes.work.items():
        shape = tm.split(s).shape
        c = shape[0] if len(shape) == 3 else shape[-1]
        assert work["flops_linear"] == c * k  # pooling + linear: C·K multiply-adds
        assert work["flops_conv"] == 0
    conv = exit_head_work(ExitHead((16, 8, 8), 10, "conv"))
    assert conv["flops_conv"] == 16 * 16 * 9 * 8 * 8  # 3×3 conv C→C over H×W
    assert conv["flops_linear"] == 16 * 10


def test_exit_head_flops_enter_the_device_time(prepared):
    """A point frame with the exit head's work takes exactly its roofline time more on the device."""
    from splitimpera.latency.engine import point_frame

    t = prepared.points.table
    frame = point_frame(prepared.profile, t)
    dev = si.load_scenario("demo").device
    times = compute_time_s(frame, "head", dev)
    for s, work in prepared.points.outcomes.work.items():
        ee = times.loc[(s, "none", repr(0.5))] - times.loc[(s, "none", "none")]
        assert ee == pytest.approx(_roofline_s(work, dev), rel=1e-9)
        assert ee > 0


@pytest.mark.trained
def test_tau_zero_always_exits_with_the_exit_heads_accuracy_on_the_device_alone(exit_scenario, prepared):
    make, names = exit_scenario
    sc = make()
    res = si.evaluate(sc, prepared)
    t = res.table
    for s in names:
        r = t.loc[(s, "none", repr(0.0))]
        assert r["exit_rate"] == 1.0
        assert r["accuracy"] == r["exit_accuracy"]
        assert r["uplink_s"] == r["server_compute_s"] == r["downlink_s"] == 0.0 and r["bytes_sent"] == 0
        head = t.loc[(s, "none", "none")]["device_compute_s"]
        exit_s = _roofline_s(prepared.points.outcomes.work[s], sc.device)
        assert r["latency_s"] == pytest.approx(head + exit_s, rel=1e-12)
    # The exit head's accuracy, recomputed from scratch on the model's own head at one split.
    s = "features_9"
    assert t.loc[(s, "none", repr(0.0)), "accuracy"] == pytest.approx(_refit_accuracy(sc, prepared, s), abs=1e-12)


def _refit_accuracy(sc, prep, split: str) -> float:
    """Fit the exit head again (same calibration data, same seed) and score it on the head
    from :func:`si.split_model` over the evaluation data: an independent path."""
    from splitimpera.accuracy.early_exit import exit_features
    from splitimpera.accuracy.evaluate import _seed
    from splitimpera.accuracy.design_points import load_calibration
    from splitimpera.data import batches, load_data

    tm = prep.traced
    ds = load_data(sc, tm.input_shape, tm.output_width)
    calib, ev, _ = load_calibration(sc, tm.input_shape, ds)
    head, _ = si.split_model(tm.model, split, tm.input_shape)
    shape = tm.split(split).shape
    with torch.no_grad():
        f, y = zip(*[(exit_features(head(x), shape, "linear"), yb) for x, yb in batches(calib, 64)])
        order = [sp.name for sp in tm.candidates].index(split)
        eh = fit_exit_head(torch.cat(f), torch.cat(y), shape, tm.output_width, "linear",
                           seed=_seed(sc.seed, order, 0xE1), epochs=sc.exit.epochs, lr=sc.exit.lr)
        right = total = 0
        for x, yb in batches(ev, 64):
            right += int((eh(head(x)).argmax(1) == yb).sum())
            total += len(yb)
    return right / total


def test_simpy_replays_decisions_and_its_mean_matches_the_analytic_mixture(exit_scenario, prepared):
    make, names = exit_scenario
    # 2 Hz: every gap exceeds the RTO, so a forwarded request always finds the connection idle
    # (as the analytic model assumes); no jitter: each forwarded request takes the same time.
    over = {"workload.rate_hz": 2, "workload.num_requests": 400, "workload.stochastic_network": False,
            "analysis.splits": ["features_4", "features_14"]}
    ana = si.evaluate(make(**over), prepared).table
    res = si.evaluate(make(**over, **{"analysis.engine": "simpy"}), prepared)
    sim, req = res.table, res.sim.requests
    checked = 0
    for s in ("features_4", "features_14"):
        point = (s, "none", repr(0.5))
        r = req[(req["split"] == s) & (req["exit"] == repr(0.5))]
        dec = prepared.points.decisions[point]
        assert (r["exited"].to_numpy() == dec[r["sample"].to_numpy()]).all()  # each request replays its sample
        d = ana.loc[point, "device_compute_s"]
        assert np.allclose(r.loc[r["exited"], "latency_s"], d, rtol=1e-12)
        forwarded = r.loc[~r["exited"], "latency_s"].to_numpy()
        full = ana.loc[point, "device_compute_s"] + (ana.loc[point, "latency_s"] - d) / (1 - ana.loc[point, "exit_rate"])
        assert np.allclose(forwarded, full, rtol=1e-9)
        # The simulated mean is the mixture at the replayed exit fraction ...
        n, p_hat, p = len(r), r["exited"].mean(), ana.loc[point, "exit_rate"]
        assert sim.loc[point, "latency_s"] == pytest.approx(d + (1 - p_hat) * (full - d), rel=1e-9)
        # ... so it is the analytic mixture's mean within binomial sampling error.
        se = (full - d) * math.sqrt(p * (1 - p) / n)
        assert abs(sim.loc[point, "latency_s"] - ana.loc[point, "latency_s"]) <= 4 * se + 1e-12
        checked += 0.05 < p < 0.95
    assert checked >= 1  # a mixture, not a point mass
    # The mean falls with the share that exits; p95 falls once more than 95 % of the requests
    # exit (below that, the 95th percentile is a forwarded request).
    for s in ("features_4", "features_14"):
        sc_row = sim.loc[(s, "none", "none")]
        for tau in (0.0, 0.5):
            r = sim.loc[(s, "none", repr(tau))]
            p_hat = req[(req["split"] == s) & (req["exit"] == repr(tau))]["exited"].mean()
            assert (r["latency_s"] < sc_row["latency_s"]) == (p_hat > 0.02)
            if p_hat >= 0.96:
                assert r["latency_p95_s"] == pytest.approx(r["device_compute_s"], rel=1e-12)
                assert r["latency_p95_s"] < sc_row["latency_p95_s"] / 10
            elif p_hat < 0.94:
                assert r["latency_p95_s"] >= sc_row["latency_p95_s"]  # a forwarded request, plus the exit head


def test_exit_behaviour_against_a_direct_count():
    rng = np.random.default_rng(3)
    n = 200
    conf = rng.uniform(size=n)
    ok_exit, ok_srv = rng.uniform(size=n) < 0.7, rng.uniform(size=n) < 0.95
    from splitimpera.accuracy.early_exit import ExitOutcomes

    out = ExitOutcomes({"a": {"max_softmax": conf, "entropy": conf}}, {"a": ok_exit}, {("a", "none"): ok_srv}, {})
    t, dec = exit_behaviour(out, [0.0, 0.3, 1.0, 2.0])
    for tau in (0.0, 0.3, 1.0, 2.0):
        r = t.loc[("a", "none", repr(tau))]
        leave = [c >= tau for c in conf]
        assert r["exit_rate"] == sum(leave) / n
        overall = sum((e if lv else s) for lv, e, s in zip(leave, ok_exit, ok_srv)) / n
        assert r["accuracy"] == pytest.approx(overall, abs=1e-15)
        assert list(dec[("a", "none", repr(tau))]) == leave
    assert t.loc[("a", "none", repr(2.0)), "accuracy"] == pytest.approx(ok_srv.mean(), abs=1e-15)
    assert t.loc[("a", "none", repr(0.0)), "accuracy"] == pytest.approx(ok_exit.mean(), abs=1e-15)


@pytest.mark.trained
def test_exit_heads_are_seeded():
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(300, 8, generator=g), torch.randint(0, 4, (300,), generator=g)
    a, b, c = (fit_exit_head(f, y, (8, 5, 5), 4, seed=s, epochs=3) for s in (7, 7, 8))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_demo_without_exit_keeps_its_key_and_names_lc_rc_sc(demo_scenario):
    t = si.run(demo_scenario(**{"analysis.engine": "analytic"})).table
    assert list(t.index.names) == ["split", "bottleneck"]
    cfg = t["config"].droplevel("bottleneck")
    assert cfg["input"] == "RC" and cfg["output"] == "LC"
    assert set(cfg.drop(["input", "output"])) == {"SC"}
    assert "exit_rate" not in t.columns
