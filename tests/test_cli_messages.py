"""Issue 17's polish: every rejected value named, no pydantic prefix, no silent no-ops,
torch threads capped by --threads or $SPLITIMPERA_THREADS."""

import pytest
import torch

from splitimpera.cli import main

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
