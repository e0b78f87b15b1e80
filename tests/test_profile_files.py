"""Profile files in a folder named by $SPLITIMPERA_PROFILES: ``base:`` inheritance, and a broken
file that fails only the runs that use it, named by its own path."""

import logging
import os
import subprocess
import sys

import pytest
import yaml

import splitimpera as si
from splitimpera.cli import main
from splitimpera.config import profile_registry


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    """``write(name, mapping)`` into a fresh $SPLITIMPERA_PROFILES folder; the registries are
    reloaded before and after."""
    folder = tmp_path / "profiles"
    (folder / "devices").mkdir(parents=True)
    monkeypatch.setenv("SPLITIMPERA_PROFILES", str(folder))

    def write(name, data, kind="devices"):
        (folder / kind).mkdir(exist_ok=True)
        path = folder / kind / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
        profile_registry.DEVICES.reset()
        profile_registry.NETWORKS.reset()
        return path

    profile_registry.DEVICES.reset()
    yield write
    monkeypatch.delenv("SPLITIMPERA_PROFILES")
    profile_registry.DEVICES.reset()
    profile_registry.NETWORKS.reset()


def test_a_profile_inherits_from_its_base(profiles, repo_root):
    profiles("mypi", {"name": "mypi", "base": "rpi4", "memory": {"capacity_gb": 2}})
    rpi4 = yaml.safe_load((repo_root / "profiles/devices/rpi4.yaml").read_text())
    dev = si.get_device("mypi")
    assert dev.name == "mypi"
    assert dev.memory.capacity_gb == 2
    assert dev.memory.bandwidth_gbps == rpi4["memory"]["bandwidth_gbps"]  # deep-merged, not replaced
    assert dev.compute.peak_gflops == rpi4["compute"]["peak_gflops"]
    assert dev.power.active_w == rpi4["power"]["active_w"]
    # A scenario's own base: goes over the resolved file.
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                          overrides={"device": {"base": "mypi", "power": {"active_w": 9.0}}})
    assert sc.device.memory.capacity_gb == 2 and sc.device.power.active_w == 9.0


def test_a_chain_of_bases_and_a_cycle(profiles):
    profiles("a", {"name": "a", "base": "rpi4", "memory": {"capacity_gb": 2}})
    profiles("b", {"name": "b", "base": "a", "power": {"idle_w": 1.0, "active_w": 3.0}})
    b = si.get_device("b")
    assert (b.memory.capacity_gb, b.power.active_w) == (2, 3.0)
    path = profiles("c", {"name": "c", "base": "c"})
    with pytest.raises(si.UserError) as e:
        si.get_device("c")
    assert e.value.source == str(path) and e.value.field == "base" and "own base" in e.value.message
    assert si.get_device("b").name == "b"  # the others still load


def test_a_broken_profile_in_use_names_its_file_and_every_error(profiles, capsys):
    path = profiles("broken", {"name": "broken", "base": "rpi4", "compute": {"peak_gflops": -1, "efficiency": 3},
                               "colour": "red"})
    rc = main(["simulate", "demo", "--set", "device=broken"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {path}: ")
    for field in ("compute.peak_gflops", "compute.efficiency", "colour"):
        assert field in lines[0]
    assert "demo" not in lines[0].removeprefix(f"error: {path}")  # the scenario is not blamed


def test_an_unknown_base_is_named(profiles):
    path = profiles("mine", {"name": "mine", "base": "rpi44"})
    with pytest.raises(si.UserError) as e:
        si.load_scenario("demo", overrides={"device": "mine"})
    assert (e.value.source, e.value.field) == (str(path), "base")
    assert "rpi4" in e.value.message  # did you mean


def test_a_broken_profile_not_in_use_warns_once_and_fails_nothing(profiles, caplog):
    path = profiles("broken", "name: broken\ncompute: [\n")  # malformed YAML
    with caplog.at_level(logging.WARNING):
        sc = si.load_scenario("demo")
        si.load_scenario("demo")
    assert sc.device.name == "rpi4"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith(f"{path}: ") and "malformed YAML" in warned[0]
    assert "rpi4" in si.list_devices()


def test_profiles_command_lists_the_good_and_warns_about_the_broken(tmp_path, repo_root):
    folder = tmp_path / "p"
    (folder / "devices").mkdir(parents=True)
    (folder / "devices" / "mypi.yaml").write_text("name: mypi\nbase: rpi4\nmemory: {capacity_gb: 2}\n")
    (folder / "devices" / "bad.yaml").write_text("name: bad\nbase: rpi4\npower: {idle_w: 5, active_w: 1}\n")
    env = {**os.environ, "SPLITIMPERA_PROFILES": str(folder), "PYTHONPATH": str(repo_root)}
    p = subprocess.run([sys.executable, "-m", "splitimpera.cli", "profiles", "devices"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "mypi" in p.stdout and "\n  bad " not in p.stdout
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and str(folder / "devices" / "bad.yaml") in err[0] and "active_w" in err[0]
