"""Results as a layer of their own: a Result saved and read back is the same Result, a folder
written by an earlier version still loads, and rendering runs no latency physics."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.report.html import render_html
from splitimpera.report.text import render_result
from splitimpera.report.view import View
from splitimpera.results import load_result

OLD = Path(__file__).parent / "data" / "result_before_advice" / "demo"  # written before results/ existed


@pytest.fixture(scope="module")
def tight(repo_root):
    """A run where no point meets the QoS: the advice is not empty."""
    return si.run(si.load_scenario(repo_root / "scenarios/demo.yaml",
                                   overrides={"name": "demo_tight", "qos.max_latency_ms": 5, "network": "3g"}))


def _same(a: si.Result, b: si.Result) -> None:
    pd.testing.assert_frame_equal(a.table, b.table, check_dtype=False)
    assert a.summary() == b.summary()
    assert a.advice == b.advice
    assert a.scenario.to_yaml() == b.scenario.to_yaml()  # (where it was read from differs)


def test_round_trip(demo_scenario, tight, tmp_path):
    res = si.run(demo_scenario())
    for r in (res, tight):
        _same(r, load_result(r.save(tmp_path)))
    assert tight.advice and not res.advice
    # Every closest point's tips are decided with the ranking, in the order the verdict shows them.
    assert [label for label, _, _ in View.of(tight).verdict().closest] == [
        View.of(tight).label(p) for p in list(tight.advice)[:3]]


def test_a_folder_from_before_loads(tmp_path, capsys):
    res = load_result(OLD)
    assert res.recommended == si.DesignPoint("output", "none") and res.simulated and res.advice == {}
    assert main(["report", str(OLD), "-o", str(tmp_path / "r.html")]) == 0
    assert "Recommended: output" in (tmp_path / "r.html").read_text()


def test_a_folder_this_version_cannot_read_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "demo"
    shutil.copytree(OLD, folder)
    text = (folder / "scenario.yaml").read_text()
    (folder / "scenario.yaml").write_text(text.replace("qos:", "qos:\n  no_such_limit: 1", 1))
    assert main(["report", str(folder), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rerun `splitimpera simulate" in err


def test_rendering_runs_no_latency_physics(tight, monkeypatch):
    from splitimpera import qos, whatif
    from splitimpera.latency import transport

    def physics(*a, **k):
        raise AssertionError("a renderer ran the latency model")

    for mod in (transport, qos):
        for name in ("uplink_mbps_for", "transfer_latency_s"):
            monkeypatch.setattr(mod, name, physics)
    assert "would pass with" in View.of(tight).verdict().text()
    assert "What would have to change" in render_result(tight)
    assert "would pass with" in render_html([View.of(tight)])
    assert len(whatif.ranked_view(tight)) == len(tight.table)
