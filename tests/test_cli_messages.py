"""What the CLI says when something is off: every rejected value named in one line, no
pydantic prefix, no silent no-ops, torch threads capped by --threads or
$SPLITIMPERA_THREADS, a missing profiles folder said once, and the calibration's warnings
said once with implausible fits flagged; no stray FutureWarning on import."""

import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch

import splitimpera as si
from splitimpera.cli import _said_once, main

FAST = ["--set", "data.source=none", "--set", "qos.min_accuracy=null"]


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("override, got", [("workload.num_devices=0", "(got 0)"), ("network.uplink_mbps=0", "(got 0)"),
                                           ("workload.rate_hz=-1", "(got -1)")])
def test_every_rejected_value_is_named(capsys, override, got):
    rc, err = _err(capsys, ["simulate", "demo", "--set", override])
    assert rc == 2 and len(err.splitlines()) == 1 and err.endswith(got)


def test_no_pydantic_prefix(capsys):
    rc, err = _err(capsys, ["simulate", "demo", "--set", "network.tcp.mss_bytes=99999"])
    assert rc == 2 and "Value error" not in err and "must be <= mtu_bytes" in err


@pytest.mark.parametrize("argv, field", [(["simulate", "demo", "--top", "0"], "--top: must be at least 1 (got 0)"),
                                         (["profiles", "--include", "xx*"], "--include: no device or network profile"),
                                         (["profiles", "devices", "--include", "lte*"], "no device profile matches"),
                                         (["bottlenecks", "--include", "zz*"], "no bottleneck matches 'zz*'")])
def test_silent_no_ops_are_messages(capsys, argv, field):
    rc, err = _err(capsys, argv)
    assert rc == 2 and len(err.splitlines()) == 1 and field in err


def test_threads_cap_torch(capsys, monkeypatch):
    """--threads / $SPLITIMPERA_THREADS cap torch while the command runs; main() gives the
    process its thread count back afterwards."""
    import splitimpera.cli as cli

    seen = []
    original = cli._cmd_simulate

    def spy(args):
        seen.append(torch.get_num_threads())
        return original(args)

    monkeypatch.setattr(cli, "_cmd_simulate", spy)
    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1, so that the cap and its undoing both show
    before = 2
    try:
        assert main(["simulate", "demo", *FAST, "--set", "analysis.engine=analytic", "--threads", "1"]) == 0
        assert seen[-1] == 1 and torch.get_num_threads() == before
        monkeypatch.setenv("SPLITIMPERA_THREADS", "1")
        assert main(["simulate", "demo", *FAST, "--set", "analysis.engine=analytic"]) == 0
        assert seen[-1] == 1 and torch.get_num_threads() == before
        capsys.readouterr()
        monkeypatch.setenv("SPLITIMPERA_THREADS", "many")
        rc, err = _err(capsys, ["simulate", "demo", *FAST])
        assert rc == 2 and "SPLITIMPERA_THREADS: must be a whole number of at least 1 (got 'many')" in err
        rc, err = _err(capsys, ["analyze", "demo", "--threads", "0"])
        assert rc == 2 and "--threads" in err
    finally:
        torch.set_num_threads(outer)


def test_a_folder_as_the_scenario_is_one_line(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text("name: x\n")
    assert main(["simulate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a folder, not a YAML file" in err and "mine.yaml" in err


def test_output_naming_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("keep")
    assert main(["simulate", "demo", *FAST, "--set", "analysis.engine=analytic", "-o", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-o" in err and f.read_text() == "keep"


def test_unknown_accuracy_reason_has_no_nested_brackets():
    from splitimpera.qos import constraints

    sc = si.load_scenario("demo")
    acc = next(c for c in constraints(sc.qos) if c.column == "accuracy")
    reason = acc.reason(float("nan"))
    assert reason.startswith("accuracy unknown") and "(" not in reason and "≥ 95" in reason


def test_a_missing_profiles_folder_is_said(tmp_path, repo_root):
    missing = tmp_path / "nowhere"
    env = {**os.environ, "SPLITIMPERA_PROFILES": str(missing), "PYTHONPATH": str(repo_root)}
    r = subprocess.run([sys.executable, "-m", "splitimpera.cli", "profiles", "devices"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "rpi4" in r.stdout
    said = [line for line in r.stderr.splitlines() if str(missing) in line]
    assert len(said) == 1 and "not a folder" in said[0]  # once, however often the profiles are looked up


# --------------------------------------------------------------------------------------------
# Warnings, calibrate


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
