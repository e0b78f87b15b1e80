"""Results as a layer of their own: a Result saved and read back is the same Result, a folder
written by an earlier version still loads, and rendering runs no latency physics."""

import re
import shutil
from html.parser import HTMLParser
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
        back = load_result(r.save(tmp_path))
        _same(r, back)
        assert render_result(back) == render_result(r)  # the terminal shows a folder as the run itself
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


# --------------------------------------------------------------------------------------------
# One column spec: the terminal, the HTML report and the dashboard show the same columns in
# the same order, with the same numbers.

def _terminal_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The ranked table printed by the terminal: header and rows, cut at the rule's dashes."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("rank  "))
    spans = [m.span() for m in re.finditer(r"─+", lines[i + 1])]
    spans[-1] = (spans[-1][0], None)  # the last column (a verdict) may run past its rule

    def cells(line):
        return [line[a:b].strip() for a, b in spans]

    rows = []
    for line in lines[i + 2:]:
        if not line.strip() or line.startswith("("):
            break
        rows.append(cells(line))
    return cells(lines[i]), rows


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (the header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _html_table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    parser = _Tables()
    parser.feed(page)
    table = next(t for t in parser.tables if t[0][0] == "rank")
    return table[0], {r[1]: [re.sub(r" (≈|± .*)$", "", c) for c in r] for r in table[1:]}


@pytest.mark.parametrize("which", ["demo", "tight"])
def test_terminal_html_and_dashboard_show_one_column_spec(which, demo_scenario, tight, monkeypatch):
    from splitimpera import whatif
    from splitimpera.report.text import cell_text

    monkeypatch.setenv("COLUMNS", "400")  # nothing left out to fit
    res = si.run(demo_scenario(**{"workload.num_devices": 3})) if which == "demo" else tight
    view = View.of(res)
    spec = view.columns()
    labels = [c.label for c in spec]
    if which == "demo":  # the terminal lists the top points, every one ok: no verdict column
        assert view.recommended is not None and spec[-1].key == "reason"
        spec, labels = spec[:-1], labels[:-1]
    head, rows = _terminal_table(render_result(res))
    assert head == labels
    html_head, html_rows = _html_table(render_html([view]))
    assert html_head == [c.label for c in view.columns()]
    dash = whatif.ranked_view(res)
    # The dashboard's rows are labelled by the key (its index), then the same columns in the same
    # order, then the details only it offers.
    keys = [c.key for c in spec if c.key in ("split", "bottleneck", "exit")]
    assert list(dash.index.names) == list(res.table.index.names) and set(keys) <= set(dash.index.names)
    assert list(dash.columns[:len(spec) - len(keys)]) == [c.label for c in spec if c.key not in keys]
    values = view.rows()
    for row in rows:
        split = row[1]
        point = next(p for p in values.index if p[0] == split)
        assert html_rows[split][:len(spec)] == row
        assert [cell_text(c, values.at[point, c.key], res.table.loc[point]) for c in spec] == row
        shown = dash.loc[point]
        for c, cell in zip(spec, row):
            if c.key in ("split", "bottleneck", "exit", "accuracy"):
                continue
            v = shown[c.label]
            assert cell_text(c, v / c.scale if c.unit else v, res.table.loc[point]) == cell, c.label
