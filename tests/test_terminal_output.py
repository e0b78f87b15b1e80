"""What the terminal shows: output that fits the terminal's width, numbers that read as
numbers (no exponents, SI prefixes), predicted accuracies starred."""

import re

import pytest

from splitimpera.cli import main
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
# Accuracy marks


def test_accuracy_marks_and_footnote():
    from splitimpera.report.view import accuracy_footnote, accuracy_text

    assert accuracy_text(0.9751, "predicted (CUI)") == "97.5 %*"
    assert accuracy_text(0.9751, "measured") == "97.5 %"
    assert accuracy_text(float("nan"), "predicted (CUI)") == "—"
    assert accuracy_footnote(["measured", "predicted (CUI)", "predicted (CUI)"]).startswith("* predicted")
    assert accuracy_footnote(["measured"]) == ""
