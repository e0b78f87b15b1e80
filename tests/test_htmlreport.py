"""Self-contained HTML reports over result folders."""

import base64
import json
import logging
import re

import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.report.figures import comparison
from splitimpera.report.html import render_report, write_report
from splitimpera.report.view import View
from splitimpera.results import load_result


@pytest.fixture(scope="module")
def results(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("results")
    demo = si.load_scenario(repo_root / "scenarios/demo.yaml")
    si.run(demo).save(out)
    from splitimpera.accuracy.design_points import analyze
    from splitimpera.report.analysis import save_analysis

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
    rec = summary["recommended"]
    assert rec["bottleneck"] == "none"
    assert f"Recommended: {rec['split']} — " in text
    table = load_result(results / "demo").table
    assert list(table.index.names) == ["split", "bottleneck"]
    for split, _ in table.index:
        assert f">{split}<" in text
    assert "Scenario (fully resolved)" in text and "digits_cnn" in text


def test_infeasible_scenario_says_so_with_the_closest(results):
    text = render_report([results / "demo_tight"])
    assert "No split meets the QoS" in text
    closest = json.loads((results / "demo_tight/result.json").read_text())["summary"]["closest"]
    assert closest and all(c["split"] in text for c in closest)
    assert "what would have to change" in text and "a latency limit of" in text


def test_batch_report_compares_scenarios(results, tmp_path):
    dirs = [results / "demo", results / "demo_tight"]
    df = comparison([View.of(load_result(d)) for d in dirs])
    assert list(df["scenario"]) == ["demo", "demo_tight"]
    for d, (_, row) in zip(dirs, df.iterrows()):
        rec = json.loads((d / "result.json").read_text())["summary"]["recommended"]
        # One bottleneck: a design point is labelled by its split alone.
        assert row["recommended"] == (rec["split"] if rec else "— none —")
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


def _sc(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def test_report_margin_uses_the_constrained_statistic(repo_root, tmp_path):
    res = si.run(_sc(repo_root, **{"qos.max_latency_ms": 80, "qos.latency_statistic": "p95"}))
    folder = res.save(tmp_path)
    rec = res.recommended
    p95 = res.table.loc[rec, "latency_p95_s"]
    text = render_report([folder])
    assert f"p95 latency {p95 * 1e3:.3g} ms" in text and f"{80 - p95 * 1e3:.3g} ms under the 80 ms limit" in text
    assert "p95 latency ≤ 80 ms" in text


def test_no_stale_files_in_a_result_folder(repo_root, tmp_path):
    si.run(_sc(repo_root)).save(tmp_path)  # simpy: writes requests.parquet
    assert (tmp_path / "demo/requests.parquet").exists()
    si.run(_sc(repo_root, **{"analysis.engine": "analytic"})).save(tmp_path)
    assert not (tmp_path / "demo/requests.parquet").exists()
    # An analysis of another model in the same folder is not shown beside these results.
    from splitimpera.accuracy.design_points import analyze
    from splitimpera.report.analysis import save_analysis

    other = _sc(repo_root, **{"model.weights": "none"})
    save_analysis(other, analyze(other), tmp_path)
    si.run(_sc(repo_root)).save(tmp_path)
    assert load_result(tmp_path / "demo").analysis is None
    same = _sc(repo_root)
    save_analysis(same, analyze(same), tmp_path)
    assert load_result(tmp_path / "demo").analysis.cui is not None
    assert json.loads((tmp_path / "demo/nominations.json").read_text())["inputs"]["model"]["weights"] == "default"


def test_report_over_the_folder_given_to_simulate(repo_root, tmp_path, capsys, caplog):
    sc = str(repo_root / "scenarios/demo.yaml")
    out = tmp_path / "results"
    fast = ["--set", "analysis.engine=analytic"]
    assert main(["simulate", sc, "-o", str(out), *fast]) == 0
    assert main(["simulate", sc, "-o", str(out), *fast, "--set", "name=demo_3g", "--set", "network=3g"]) == 0
    (out / "notes").mkdir()  # not a result folder: left out
    with caplog.at_level(logging.INFO, logger="splitimpera.results.folder"):
        assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert re.findall(r'<h2 id="([^"]+)">', text) == ["demo", "demo_3g"]  # both, sorted by name
    assert "<h2>Comparison</h2>" in text
    assert "reporting its result folders demo, demo_3g" in caplog.text
    # The same folders named one by one (and one of them twice) give the same report.
    assert main(["report", str(out / "demo"), str(out / "demo_3g"), str(out / "demo"),
                 "-o", str(tmp_path / "r2.html")]) == 0
    assert (tmp_path / "r2.html").read_text() == text


def test_report_over_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "results" / "notes").mkdir(parents=True)
    (tmp_path / "results" / "notes" / "readme.txt").write_text("not a result")
    assert main(["report", str(tmp_path / "results"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "results") in err[0]
    assert "not a simulate result folder" in err[0]
    assert not (tmp_path / "r.html").exists()
