"""QoS constraints end to end through si.run, and the report commands."""

import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.latency.link import contention_share, wire_bytes


def _run(repo_root, **over):
    return si.run(si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over))


def test_p95_limit_applies_to_the_simulated_p95(repo_root):
    res = _run(repo_root, **{"qos.max_latency_ms": 58, "qos.latency_statistic": "p95"})
    t = res.table
    assert (t.loc[t["feasible"], "latency_p95_s"] <= 0.058).all()
    bad = t[~t["feasible"] & (t["latency_p95_s"] > 0.058)]
    assert len(bad) and bad["reason"].str.contains("p95 latency").all()
    # The mean alone would have accepted some of them: the statistic matters.
    assert (bad["latency_s"] <= 0.058).any()


def test_deadline_miss_ratio_from_simulation_and_analytic_fallback(repo_root):
    sim = _run(repo_root, **{"qos.max_latency_ms": 50, "qos.max_deadline_miss_ratio": 0.1})
    req = sim.sim.requests
    assert set(req["bottleneck"]) == {"none"}
    for split in ("output", "features_9"):
        mine = (req["split"] == split) & (req["bottleneck"] == "none")
        assert mine.sum() > 0
        miss = (req.loc[mine, "latency_s"] > 0.050).mean()
        assert sim.table.loc[(split, "none"), "deadline_miss_ratio"] == pytest.approx(miss)
    ana = _run(repo_root, **{"qos.max_latency_ms": 50, "qos.max_deadline_miss_ratio": 0.1,
                             "analysis.engine": "analytic"})
    t = ana.table
    assert ((t["deadline_miss_ratio"] == 1.0) == (t["latency_s"] > 0.050)).all()


def test_uplink_utilisation_closed_form(repo_root):
    over = {"workload.num_devices": 4, "workload.rate_hz": 20, "network": "wifi4",
            "qos.max_uplink_utilisation": 0.5, "analysis.engine": "analytic"}
    res = _run(repo_root, **over)
    sc = res.scenario
    net = sc.network
    for split in ("input", "features_4", "output"):
        b = res.table.loc[(split, "none"), "bytes_sent"]
        offered = 4 * 20 * wire_bytes(b, net) * 8 / (1 - net.loss)
        cap = net.uplink_bps * contention_share(net, 4) * 4
        assert res.table.loc[(split, "none"), "uplink_utilisation"] == pytest.approx(offered / cap)
    t = res.table
    assert ((t["uplink_utilisation"] > 0.5) <= ~t["feasible"]).all()


def test_accuracy_and_weighted_objectives(repo_root):
    w = _run(repo_root, **{"qos.objective": "weighted", "qos.weights.latency": 0, "qos.weights.energy": 1})
    feas = w.table[w.table["feasible"]]
    assert w.recommended == feas["energy_j"].idxmin()
    with pytest.raises(si.UserError, match="max_deadline_miss_ratio needs max_latency_ms"):
        si.load_scenario(repo_root / "scenarios/demo.yaml",
                         overrides={"qos.max_latency_ms": None, "qos.max_deadline_miss_ratio": 0.1})


def test_report_commands(repo_root, tmp_path, capsys):
    sc = str(repo_root / "scenarios/demo.yaml")
    assert main(["simulate", sc, "-o", str(tmp_path), "--report"]) == 0
    assert (tmp_path / "demo/report.html").read_text().startswith("<!doctype html>")
    assert main(["simulate", sc, "-o", str(tmp_path / "b"), "--set", "name=demo_3g", "--set", "network=3g"]) == 0
    out = tmp_path / "cmp" / "report.html"
    assert main(["report", str(tmp_path / "demo"), str(tmp_path / "b/demo_3g"), "-o", str(out), "--png"]) == 0
    text = out.read_text()
    assert "<h2>Comparison</h2>" in text and "demo_3g" in text
    figs = sorted(p.name for p in (tmp_path / "cmp/report_figures").iterdir())
    assert {"demo_breakdown.png", "demo_accuracy_latency.png", "demo_3g_energy_latency.png"} <= set(figs)
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["simulate", sc, "--report"]) == 2
    err = capsys.readouterr().err
    assert "not a result folder" in err and "--report: needs -o DIR" in err
