"""Self-contained HTML reports over result folders."""

import base64
import json
import re

import pytest

import splitimpera as si
from splitimpera.report.html import comparison, load_result_dir, render_report, write_report


@pytest.fixture(scope="module")
def results(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("results")
    demo = si.load_scenario(repo_root / "scenarios/demo.yaml")
    si.run(demo).save(out)
    from splitimpera.pipeline import analyze, save_analysis

    save_analysis(demo, analyze(demo), out)
    tight = si.load_scenario(repo_root / "scenarios/demo.yaml",
                             overrides={"name": "demo_tight", "qos.max_latency_ms": 5, "network": "3g"})
    si.run(tight).save(out)
    return out


def _pngs(text):
    return re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)


def test_single_report_is_self_contained(results):
    text = render_report([results / "demo"])
    # Opens offline: no script, no external reference of any kind.
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    pngs = _pngs(text)
    assert len(pngs) == 5  # breakdown, accuracy vs latency, energy vs latency, bytes, CUI curve
    for p in pngs:
        assert base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((results / "demo/result.json").read_text())["summary"]
    assert f"Recommended split: {summary['recommended']}" in text
    table = load_result_dir(results / "demo").table
    for name in table.index:
        assert f">{name}<" in text
    assert "Scenario (fully resolved)" in text and "digits_cnn" in text


def test_infeasible_scenario_says_so_with_the_closest(results):
    text = render_report([results / "demo_tight"])
    assert "No split meets the QoS" in text
    closest = json.loads((results / "demo_tight/result.json").read_text())["summary"]["closest"]
    assert closest and all(c["split"] in text for c in closest)
    assert "what would have to change" in text and "a latency limit of" in text


def test_batch_report_compares_scenarios(results, tmp_path):
    dirs = [results / "demo", results / "demo_tight"]
    df = comparison([load_result_dir(d) for d in dirs])
    assert list(df["scenario"]) == ["demo", "demo_tight"]
    for d, (_, row) in zip(dirs, df.iterrows()):
        rec = json.loads((d / "result.json").read_text())["summary"]["recommended"]
        assert row["recommended"] == (rec or "— none —")
    out = write_report(dirs, tmp_path / "sub" / "report.html")
    text = out.read_text()
    assert "<h2>Comparison</h2>" in text and text.count("<h2 id=") == 2
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary file left


def test_not_a_result_folder(tmp_path):
    with pytest.raises(si.UserError, match="not a result folder"):
        render_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(si.UserError, match="missing splits.csv"):
        render_report([tmp_path / "empty"])
