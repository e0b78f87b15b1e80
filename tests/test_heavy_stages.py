"""The heavy stages of `simulate`: reported while they run (one plain line each in a log), each
bottleneck fit cached on its own so that another scenario over the same model, calibration data
and split reuses it, and a note when a busy machine makes torch's default thread count slow."""

import argparse
import os
import subprocess
import sys

import pytest
import torch
import yaml

import splitimpera as si
from splitimpera import cli
from splitimpera.accuracy.bottlenecks.autoencoder import Autoencoder
from splitimpera.config.scenario import scenario_from_dict

SPLITS = ["features_9", "features_14"]


def _tiny(name: str, bottlenecks: list[str], coder: str = "raw") -> dict:
    return {"name": name, "seed": 0, "model": {"name": "digits_cnn", "weights": "default"},
            "data": {"source": "digits", "split": "test", "limit": 96}, "device": "rpi4", "server": "server_t4",
            "network": "lte", "analysis": {"engine": "analytic"},
            "bottleneck": {"name": bottlenecks, "coder": coder, "splits": SPLITS, "predictor": "mean",
                           "calibration_limit": 32, "autoencoder": {"epochs": 1}},
            "qos": {"max_latency_ms": 200}}


def test_simulate_reports_each_heavy_stage_in_one_plain_line(tmp_path, repo_root):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny("tiny", ["none", "int8", "autoencoder"])))
    env = {**os.environ, "PYTHONPATH": str(repo_root), "SPLITIMPERA_CACHE": str(tmp_path / "cache"),
           "SPLITIMPERA_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "splitimpera.cli", "simulate", str(path)], env=env,
                       capture_output=True, text=True, timeout=600)  # stderr a pipe: not a terminal
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "\x1b" not in p.stderr  # no progress bar in a log
    lines = p.stderr.splitlines()
    fitting = [ln for ln in lines if ln.startswith("fitting autoencoder at 2 splits: ")]
    # Two fits: the line comes after the first, with the estimate for both at that pace.
    assert len(fitting) == 1 and " s per fit)" in fitting[0] and ": about " in fitting[0]
    measuring = [ln for ln in lines if ln.startswith("measuring accuracy at ")]
    assert len(measuring) == 1
    assert lines.index(fitting[0]) < lines.index(measuring[0])
    # A second run finds everything in the cache: no stage to report.
    p2 = subprocess.run([sys.executable, "-m", "splitimpera.cli", "simulate", str(path)], env=env,
                        capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0 and "fitting" not in p2.stderr and "measuring" not in p2.stderr, p2.stderr
    assert p2.stdout == p.stdout


def test_another_scenario_reuses_the_fitted_autoencoder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(tmp_path / "cache"))
    fits = []
    real_fit = Autoencoder.fit
    monkeypatch.setattr(Autoencoder, "fit", lambda self, ctx: fits.append(ctx.split) or real_fit(self, ctx))
    a = si.run(scenario_from_dict(_tiny("mcu_like", ["none", "int8", "autoencoder"], "raw")))
    assert sorted(fits) == sorted(SPLITS)
    # Another bottleneck list and coder (the joint demo's), the same model, data, splits, settings.
    b = si.run(scenario_from_dict(_tiny("joint_like", ["none", "int8", "int4", "autoencoder"], "zstd")))
    assert sorted(fits) == sorted(SPLITS), "the autoencoder was trained again"
    acc_a = a.for_bottleneck("autoencoder")["accuracy"]
    acc_b = b.for_bottleneck("autoencoder")["accuracy"]
    assert acc_a.loc[SPLITS].tolist() == acc_b.loc[SPLITS].tolist()
    # Other fit settings are another fit.
    c = _tiny("longer", ["none", "autoencoder"])
    c["bottleneck"]["autoencoder"]["epochs"] = 2
    si.run(scenario_from_dict(c))
    assert len(fits) == 4


def test_a_cached_fit_is_the_fit(tmp_path):
    """The state an autoencoder keeps in the cache rebuilds it bit for bit."""
    from splitimpera.accuracy.bottlenecks.base import FitContext

    torch.manual_seed(0)
    z, y = torch.randn(40, 8, 6, 6), torch.randint(0, 3, (40,))
    tail = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 36, 3))
    ae = Autoencoder(epochs=1).fit(FitContext(split="s", shape=(8, 6, 6), tail=tail, calibration=lambda: (z, y),
                                              seed=1))
    back = Autoencoder(epochs=1).from_fit_state(ae.fit_state(), (8, 6, 6))
    for (k, v), (k2, v2) in zip(ae.net.state_dict().items(), back.net.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(ae.roundtrip(z)[0], back.roundtrip(z)[0]) and back.history == ae.history


@pytest.mark.parametrize("load,threads,said", [(2.0, None, True), (1.0, None, True), (0.2, None, False),
                                               (2.0, 1, False)])
def test_a_busy_machine_gets_a_note_on_threads(monkeypatch, capsys, load, threads, said):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    cli._warn_if_busy(cli._busy_note(argparse.Namespace(threads=threads)))
    err = capsys.readouterr().err
    if said:
        assert err.count("\n") == 1 and f"load {load:.1f} on 2 cores" in err and "--threads 1" in err
    else:
        assert err == ""


def test_on_a_busy_machine_an_error_is_still_one_line(monkeypatch, capsys, tmp_path, repo_root):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # where the note would be printed
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("split,accuracy\nnope,0.5\n")
    rc = cli.main(["simulate", str(repo_root / "scenarios/demo.yaml"), "--set", f"bottleneck.accuracy_csv={bad}",
                   "--set", "bottleneck.name=int8"])
    err = capsys.readouterr().err
    assert rc == 2 and "machine was busy" not in err
    assert err.splitlines()[-1].startswith("error: ") and "nope" in err.splitlines()[-1]
