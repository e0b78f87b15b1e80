"""The `report` and `dashboard` commands: the report's counts, comparison and figures, its
help, and the Streamlit flags the dashboard starts with."""

import re

import pytest

from splitimpera.cli import dashboard_command, main

FAST = ["--set", "data.source=none", "--set", "qos.min_accuracy=null", "--set", "analysis.engine=analytic"]


def test_report_counts_comparison_and_every_png(tmp_path, capsys):
    assert main(["simulate", "demo", *FAST, "-o", str(tmp_path / "res")]) == 0
    assert main(["simulate", "demo_mcu", *FAST, "--set", "bottleneck.name=none", "-o", str(tmp_path / "res")]) == 0
    capsys.readouterr()
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "res"), "-o", str(out), "--png"]) == 0
    said = capsys.readouterr().out
    assert str(out.resolve()) in said  # the path written, in full
    page = out.read_text()
    assert "uplink Mbit/s" in page and "FLOPs on device" in page and "uplink_mbps" not in page.split("<details>")[0]
    assert re.search(r"<td[^>]*>\d+(\.\d+)? %</td>", page)  # the FLOPs share as a percentage
    figures = {p.name for p in (tmp_path / "r_figures").iterdir()}
    assert "comparison.png" in figures and {"demo_breakdown.png", "demo_mcu_breakdown.png"} <= figures
    # No column of the main tables is empty.
    for table in re.findall(r"<table>(.*?)</table>", page, re.S):
        head = re.findall(r"<th[^>]*>(.*?)</th>", table)
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table)[1:]]
        for i, h in enumerate(head):
            assert any(r[i] != "" for r in rows if len(r) == len(head)), h


def test_report_help_states_the_default_path(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "report.html inside DIR when one DIR is given" in out and "else in the current" in out


def test_count_is_an_integer():
    from splitimpera.report.html import count_text

    assert count_text(15.0) == "15" and count_text(None) == "" and count_text(float("nan")) == ""


def test_dashboard_hides_deploy_and_sends_no_statistics():
    cmd = dashboard_command()
    assert cmd[cmd.index("--client.toolbarMode") + 1] in ("viewer", "minimal")
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.fileWatcherType") + 1] == "none"
