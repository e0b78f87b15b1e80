"""What the smaller commands print and where they write: bundled sweeps by name, `report DIR`
into DIR, `--version`, the `profiles` table, `measure`'s summary, `serve`'s stop, and sweep
progress bars only on a terminal."""

import re
import time
from collections import Counter

import pandas as pd
import pytest
import yaml

from splitimpera import cli
from splitimpera.cli import main


def test_a_bundled_sweep_is_addressable_by_name(repo_root, capsys):
    from splitimpera.sweep import load_sweep

    by_name = load_sweep("demo_uplink")
    by_path = load_sweep(repo_root / "scenarios/sweeps/demo_uplink.yaml")
    assert by_name.spec == by_path.spec and by_name.values == by_path.values
    assert main(["sweep", "demo_uplinkk"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: demo_uplinkk: file not found, nor a bundled sweep (") and "demo_uplink" in err


def test_sweep_progress_bar_only_on_a_terminal(monkeypatch):
    import importlib

    sw_mod = importlib.import_module("splitimpera.sweep")
    seen = {}

    class Stop(Exception):
        pass

    def fake_sweep(*a, progress, **kw):
        seen["progress"] = progress
        raise Stop

    monkeypatch.setattr(sw_mod, "sweep", fake_sweep)
    for tty in (False, True):
        monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: tty, raising=False)
        with pytest.raises(Stop):
            cli.main(["sweep", "demo_uplink", "--workers", "0"])
        assert seen["progress"] is tty


def test_report_without_o_writes_into_the_folder(repo_root, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["simulate", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path / "res")]) == 0
    assert main(["report", str(tmp_path / "res" / "demo")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "res" / "demo" / "report.html").is_file()
    assert not (cwd / "report.html").exists()
    assert str(tmp_path / "res" / "demo" / "report.html") in out


def test_version(repo_root, capsys):
    text = (repo_root / "splitimpera/_version.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', text).group(1)
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"splitimpera {version}"


def test_profiles_table_has_headers_units_and_one_flop_per_multiply_add(repo_root, capsys):
    assert main(["profiles", "devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "1 FLOP per multiply-add" in lines[0]
    header = lines[1].split()
    assert header[:2] == ["name", "kind"] and "description" in header
    rows = {ln.split()[0]: ln for ln in lines[2:]}
    raw = yaml.safe_load((repo_root / "profiles/devices/stm32h7.yaml").read_text())
    row = rows["stm32h7"]
    # 0.001 GB of SRAM is 1 MB, not "0.0 GB"; 0.96 GFLOP/s at 2 per FMA × 0.25 conv efficiency / 2.
    assert " 1 MB " in row and " 0.0 GB" not in row
    assert f" {raw['compute']['peak_gflops'] * raw['compute']['efficiency']['conv'] / 2:.3g} " in row
    # Descriptions are cut at a word, never inside one.
    for name, line in rows.items():
        desc = " ".join(yaml.safe_load((repo_root / f"profiles/devices/{name}.yaml").read_text())
                        .get("description", "").split())
        shown = line[lines[1].index("description"):].strip()
        if shown.endswith(" …"):
            cut = shown.removesuffix(" …")
            assert desc.startswith(cut) and desc[len(cut)] == " ", (name, shown)
        else:
            assert shown == desc.splitlines()[0] if desc else shown == ""


def _fidelity(sc, mbps: float):
    from splitimpera.runtime.compare import COMPONENTS, Fidelity

    row = {"split": "features_4", "bottleneck": "none", "mode": "measured", "rate_hz": 10.0, "server_rho": 0.1,
           "requests": 54, "lost": 0}
    for m in ["latency_mean_s", "latency_p95_s", *COMPONENTS]:
        row.update({f"sim_{m}": 1e-3, f"meas_{m}": 1e-3, f"err_{m}": 0.0})
    setup = {"link": {"kind": "loopback", "uplink_mbps": mbps}, "cores": {"device": 0, "server": 1}, "threads": 1,
             "server_counters": {"requests": 60, "replies": 60, "connections": 1}, "requests_per_device": 60,
             "devices": 1, "warmup_per_device": 6}
    return Fidelity(scenario=sc, measured=pd.DataFrame(), simulated=pd.DataFrame(), table=pd.DataFrame([row]),
                    timings=pd.DataFrame(), setup=setup)


def test_measure_summary_in_human_units_and_says_why_requests_are_dropped(demo_scenario):
    from splitimpera.runtime.compare import render

    text = render(_fidelity(demo_scenario(), 10810.0))
    assert "10.8 Gbit/s" in text and "e+" not in text
    assert "60 per device × 1 device, less each device's first 6, dropped as warm-up" in text
    assert "60 requests, 60 replies, warm-up included" in text


def test_serve_stops_promptly_and_says_what_it_did(demo_scenario):
    from splitimpera.runtime.server import SplitServer

    srv = SplitServer(demo_scenario(), ["features_4"])
    srv.start()
    time.sleep(0.2)  # the accept thread is blocked in accept()
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 1.5
    assert not any(t.is_alive() for t in srv._threads)
    assert cli.serve_summary(srv.stats) == "stopped after 0 requests, 0 replies over 0 connections"
    assert cli.serve_summary(Counter(requests=60, replies=59, connections=1, idle_timeout=1)) == \
        "stopped after 60 requests, 59 replies over 1 connection; closed or refused: idle timeout 1"
