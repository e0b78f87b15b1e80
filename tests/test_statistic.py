"""The latency statistic: what ``qos.latency_statistic`` names is what is
ranked, shown, drawn and named, in the terminal, the HTML report and the dashboard."""

import html

import pandas as pd
import pytest

import splitimpera as si
from splitimpera.config.scenario import QoSSpec
from splitimpera.qos import rank
from splitimpera.report.html import render_report
from splitimpera.report.text import render_result
from splitimpera.report.view import View

FAST = {"data.source": "none", "qos.min_accuracy": None, "qos.latency_statistic": "p95"}


@pytest.mark.parametrize("stat, best", [("mean", "a"), ("p95", "b"), ("p99", "b")])
def test_the_ranking_uses_the_statistic_the_limit_applies_to(stat, best):
    # a: lower mean, longer tail; b: the other way round.
    t = pd.DataFrame({"index": [0, 1], "latency_s": [0.010, 0.020], "latency_p95_s": [0.050, 0.030],
                      "latency_p99_s": [0.060, 0.035], "energy_j": [1.0, 1.0], "bytes_sent": [10, 10]},
                     index=["a", "b"])
    out = rank(t, QoSSpec(max_latency_ms=100, latency_statistic=stat, fit_device_memory=False))
    assert out["rank"].idxmin() == best
    weighted = rank(t, QoSSpec(max_latency_ms=100, latency_statistic=stat, fit_device_memory=False,
                               objective="weighted", weights={"latency": 1}))
    assert weighted["rank"].idxmin() == best


@pytest.fixture(scope="module")
def p95_result(demo_scenario):
    return si.run(demo_scenario(**FAST))


def test_terminal_and_report_name_and_show_the_statistic(p95_result, tmp_path):
    res = p95_result
    t = res.table
    feas = t[t["feasible"]]
    rec = res.recommended
    assert rec == feas["latency_p95_s"].idxmin()  # independent of rank(): the smallest p95
    p95 = t.loc[rec, "latency_p95_s"]
    out = render_result(res)
    assert "objective: min p95 latency" in out and "latency limit on the p95" in out
    assert f"— p95 latency {p95 * 1e3:.3g} ms (mean {t.loc[rec, 'latency_s'] * 1e3:.3g} ms), " in out
    assert f"{(0.090 - p95) * 1e3:.3g} ms under the 90 ms limit" in out
    page = render_report([res.save(tmp_path)])
    assert ">p95 ms</th>" in page and "objective: min p95 latency" in page
    assert html.escape(View.of(res).verdict().headline) in page


def test_dashboard_breakdown_draws_the_statistic_beside_the_mean_bars(p95_result):
    pytest.importorskip("streamlit")
    from splitimpera.dashboard.charts import breakdown_chart

    view = View.of(p95_result)
    points = view.chart_frame()
    spec = breakdown_chart(view, points)
    ticks = [layer for layer in spec["layer"] if layer["mark"].get("type") == "tick"]
    assert len(ticks) == 1
    got = {r["label"]: r["latency_qos_s"] for r in ticks[0]["data"]["values"]}
    want = p95_result.table["latency_p95_s"]
    assert got == pytest.approx({view.label(p): v for p, v in want.items()})
    mean_view = View.of(si.run(p95_result.scenario.model_copy(update={
        "qos": p95_result.scenario.qos.model_copy(update={"latency_statistic": "mean"})})))
    assert not [x for x in breakdown_chart(mean_view, mean_view.chart_frame())["layer"] if x["mark"].get("type") == "tick"]


def test_a_percentile_limit_on_the_analytic_engine_is_said_everywhere(demo_scenario, tmp_path):
    res = si.run(demo_scenario(**FAST, **{"analysis.engine": "analytic"}))
    note = View.of(res).statistic_note
    assert note and "no spread" in note and "p95" in note
    assert note in View.of(res).verdict().details
    assert note in render_result(res)
    assert html.escape(note) in render_report([res.save(tmp_path)])
    # Nothing to say on the simulation, or on the mean.
    assert View.of(si.run(demo_scenario(**{**FAST, "qos.latency_statistic": "mean",
                                           "analysis.engine": "analytic"}))).statistic_note is None
