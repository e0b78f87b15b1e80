"""Issue 17's polish, second part: output that fits the terminal, numbers that read as numbers,
errors and silent no-ops said, predicted accuracies starred, the report's counts and
comparison, the dashboard command's flags, stray warnings."""

import logging
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import splitimpera as si
from splitimpera.cli import _said_once, dashboard_command, main
from splitimpera.plain import human, num
from splitimpera.report.term import fit, grid

FAST = ["--set", "data.source=none", "--set", "qos.min_accuracy=null", "--set", "analysis.engine=analytic"]
# Far past every limit without overloading anything: latencies of seconds, energies of joules.
HUGE = [*FAST, "--set", "network.uplink_mbps=0.001", "--set", "workload.rate_hz=0.00001",
        "--set", "qos.max_latency_ms=1"]


def _widths(text: str) -> list[int]:
    return [len(line) for line in text.splitlines()]


# --------------------------------------------------------------------------------------------
# Terminal width


@pytest.mark.parametrize("cols", [80, 120])
def test_simulate_efficientnet_fits_the_terminal(repo_root, capsys, monkeypatch, cols):
    monkeypatch.setenv("COLUMNS", str(cols))
    assert main(["simulate", str(repo_root / "scenarios/efficientnet_5g.yaml"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert max(_widths(out)) <= cols
    # The table is still there, with its key columns, and says what it left out.
    assert re.search(r"^rank +split .*mean ms", out, re.M) and "left out to fit" in out


def test_a_matrix_too_wide_comes_in_blocks_and_keeps_every_value():
    header = ["split", *(f"bottleneck_{i:02d}" for i in range(16))]
    rows = [[f"features_{r}", *(f"{r}.{i}" for i in range(16))] for r in range(5)]
    text = grid(header, rows, "l" + "r" * 16, cols=80)
    assert max(_widths(text)) <= 80
    for h in header[1:]:
        assert text.count(h) == 1  # every column once
    assert text.count("features_3") >= 2  # each block led by the split column
    for i in range(16):
        assert f"3.{i}" in text
    # It fits: the same table, untouched, in one block.
    wide = grid(header, rows, "l" + "r" * 16, cols=400)
    assert len(wide.splitlines()) == 2 + len(rows)


def test_a_long_verdict_wraps_and_dropped_columns_are_named():
    header = ["rank", "split", "dev wait ms", "mean ms", "verdict"]
    rows = [["", "features_0", "0.1", "381.5", "latency 381.5 ms > 80 ms; bytes sent 401 kB > 200 kB; " * 2]]
    text = grid(header, rows, "rlrrl", cols=60, drop=("dev wait ms",))
    assert max(_widths(text)) <= 60 and "dev wait ms" not in text.splitlines()[0]
    assert "left out to fit 60 columns: dev wait ms" in text.replace("\n  ", " ")
    assert "bytes sent 401 kB > 200 kB" in " ".join(text.split())


def test_prose_wraps_with_an_indent():
    line = "Recommended: output — " + "word " * 40
    out = fit(line, 50)
    assert max(_widths(out)) <= 50 and out.splitlines()[1].startswith("  ")
    assert " ".join(out.split()) == " ".join(line.split())


# --------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize("v, digits, want", [(1090.3, 3, "1090"), (7544000.0, 4, "7544000"), (36.51, 3, "36.5"),
                                              (0.0123, 3, "0.0123"), (2.0, 3, "2"), (0, 3, "0"),
                                              (float("inf"), 3, "∞"), (float("nan"), 3, "—")])
def test_num_never_uses_exponents(v, digits, want):
    assert num(v, digits) == want


@pytest.mark.parametrize("v, unit, want", [(1.0903, "J", "1.09 J"), (0.0365, "s", "36.5 ms"), (7544.0, "s", "7544 s"),
                                           (4100, "B", "4.1 kB"), (5e-6, "s", "5 µs"), (0.99996, "J", "1 J"),
                                           (9.7e6, "FLOP", "9.7 MFLOP"), (0.2303, "s", "230 ms")])
def test_human_picks_the_prefix(v, unit, want):
    assert human(v, unit) == want


def test_no_exponent_in_simulate_or_the_report(tmp_path, capsys):
    assert main(["simulate", "demo", *HUGE, "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " s > 1 ms" in out  # latencies of seconds, said in seconds
    assert "e+" not in out and "e-0" not in out
    assert main(["report", str(tmp_path / "demo"), "-o", str(tmp_path / "r.html")]) == 0
    page = re.sub(r'src="data:image/png;base64,[^"]*"', "", (tmp_path / "r.html").read_text())
    page = page.split("<details>")[0]  # the resolved scenario below is the YAML as written (rate_hz: 1.0e-05)
    assert not re.search(r"\de[+-]\d", page)


# --------------------------------------------------------------------------------------------
# Errors and messages


def test_a_folder_as_the_scenario_is_one_line(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text("name: x\n")
    assert main(["simulate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a folder, not a YAML file" in err and "mine.yaml" in err


def test_output_naming_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("keep")
    assert main(["simulate", "demo", *FAST, "-o", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-o" in err and f.read_text() == "keep"


def test_unknown_accuracy_reason_has_no_nested_brackets():
    from splitimpera.qos import constraints

    sc = si.load_scenario("demo")
    acc = next(c for c in constraints(sc.qos) if c.column == "accuracy")
    reason = acc.reason(float("nan"))
    assert reason.startswith("accuracy unknown") and "(" not in reason and "≥ 95" in reason


def test_accuracy_marks_and_footnote():
    from splitimpera.report.view import accuracy_footnote, accuracy_text

    assert accuracy_text(0.9751, "predicted (CUI)") == "97.5 %*"
    assert accuracy_text(0.9751, "measured") == "97.5 %"
    assert accuracy_text(float("nan"), "predicted (CUI)") == "—"
    assert accuracy_footnote(["measured", "predicted (CUI)", "predicted (CUI)"]).startswith("* predicted")
    assert accuracy_footnote(["measured"]) == ""


def test_a_missing_profiles_folder_is_said(tmp_path, repo_root):
    import os

    missing = tmp_path / "nowhere"
    env = {**os.environ, "SPLITIMPERA_PROFILES": str(missing), "PYTHONPATH": str(repo_root)}
    r = subprocess.run([sys.executable, "-m", "splitimpera.cli", "profiles", "devices"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "rpi4" in r.stdout
    said = [line for line in r.stderr.splitlines() if str(missing) in line]
    assert len(said) == 1 and "not a folder" in said[0]  # once, however often the profiles are looked up


def test_imagefolder_class_names():
    from splitimpera.accuracy.cui import class_name
    from splitimpera.data import class_names

    class Folder:
        classes = ["a_three", "b_five"]

    class Sub:
        dataset = Folder()

    assert class_names(Sub()) == ["a_three", "b_five"] and class_names(object()) is None
    assert class_name(1, ["a_three", "b_five"]) == "b_five" and class_name(7, None) == "7"


# --------------------------------------------------------------------------------------------
# Report, dashboard command


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


def test_breakdown_splits_the_uplink(repo_root):
    from splitimpera.report.view import UPLINK_PARTS, View

    res = si.run(si.load_scenario("demo", {"data.source": "none", "qos.min_accuracy": None,
                                           "analysis.engine": "analytic"}))
    v = View.of(res)
    st = v.stages()
    sent = res.table["uplink_s"] > 0
    half = res.scenario.network.rtt_s / 2
    np.testing.assert_allclose(st.loc[sent, UPLINK_PARTS[0]], half)
    np.testing.assert_allclose(st[list(UPLINK_PARTS)].sum(axis=1), res.table["uplink_s"].fillna(0), rtol=1e-12)
    np.testing.assert_allclose(st.sum(axis=1), res.table["latency_s"], rtol=1e-9)


# --------------------------------------------------------------------------------------------
# Stray warnings, calibrate


def test_fvcore_import_shows_no_future_warning(repo_root):
    code = "from splitimpera.model.cost import _fvcore_nn; _fvcore_nn()"
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], cwd=repo_root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_implausible_fits_are_flagged():
    from splitimpera.calibrate import implausible, once

    ok = {"memory": {"bandwidth_gbps": 20.0}, "compute": {"efficiency": {"conv": 0.4, "linear": 0.7}}}
    assert implausible(ok, cores=2) == []
    bad = {"memory": {"bandwidth_gbps": 230.0}, "compute": {"efficiency": {"conv": 1.0, "linear": 0.7}}}
    lines = implausible(bad, cores=2)
    assert len(lines) == 2 and "230 GB/s" in lines[0] and "conv 1" in lines[1]
    # A 64-core server may well copy at 230 GB/s.
    assert len(implausible(bad, cores=64)) == 1
    assert once(["a", "b", "a"]) == ["a", "b"]


def test_calibrate_says_each_warning_once(caplog):
    log = logging.getLogger("splitimpera.calibrate")
    with caplog.at_level(logging.WARNING):
        with _said_once(log) as said:
            for _ in range(3):
                log.warning("slow clock")
                warnings.warn("noisy", UserWarning)
            log.warning("printed with the fit")
        said(skip=["printed with the fit"])
    msgs = [r.getMessage() for r in caplog.records if r.name == "splitimpera.calibrate"]
    assert msgs == ["slow clock"]
