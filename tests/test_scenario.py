"""Scenario loading: overrides, profile resolution, SI units, round trip."""

import pytest
import yaml

import splitimpera as si


def test_overrides_on_a_named_profile(repo_root):
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml",
                          overrides={"network.uplink_mbps": 2.5, "qos.max_latency_ms": 40, "seed": 7})
    lte = si.get_network("lte")
    assert sc.network.uplink_mbps == 2.5 and sc.network.uplink_bps == 2.5e6
    assert sc.network.rtt_ms == lte.rtt_ms  # the rest comes from the base profile
    assert sc.qos.max_latency_s == pytest.approx(0.040)
    assert sc.seed == 7


def test_inline_profiles_and_base(tmp_path, repo_root):
    data = yaml.safe_load((repo_root / "scenarios/demo.yaml").read_text())
    data["device"] = {"base": "rpi4", "compute": {"peak_gflops": 96.0}}
    data["network"] = {"name": "mylink", "uplink_mbps": 10, "downlink_mbps": 20, "rtt_ms": 8}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    sc = si.load_scenario(p)
    assert sc.device.compute.peak_gflops == 96.0
    assert sc.device.compute.efficiency == si.get_device("rpi4").compute.efficiency
    assert sc.device.name == "rpi4*"
    assert sc.network.name == "mylink" and sc.network.loss == 0.0


def test_resolved_scenario_round_trips(tmp_path, repo_root):
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"network.rtt_ms": 12})
    p = tmp_path / "resolved.yaml"
    p.write_text(sc.to_yaml())
    again = si.load_scenario(p)
    assert again.model_dump() == sc.model_dump()
    assert again.source == str(p)


def test_relative_weight_path_is_relative_to_the_scenario(tmp_path, repo_root):
    import torch

    (tmp_path / "w").mkdir()
    torch.save(si.load_model("digits_cnn", "none").state_dict(), tmp_path / "w" / "m.pt")
    data = yaml.safe_load((repo_root / "scenarios/demo.yaml").read_text())
    data["model"]["weights"] = "w/m.pt"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    sc = si.load_scenario(tmp_path / "s.yaml")
    assert sc.model.weights == str((tmp_path / "w" / "m.pt").resolve())


def test_every_bundled_scenario_loads(repo_root):
    paths = sorted((repo_root / "scenarios").glob("*.yaml"))
    assert paths
    for p in paths:
        assert si.load_scenario(p).name
