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


def test_overrides_apply_parents_before_children(repo_root):
    for items in (["network.uplink_mbps=50", "network=wifi5"], ["network=wifi5", "network.uplink_mbps=50"]):
        from splitimpera.config.scenario import parse_overrides

        sc = si.load_scenario(repo_root / "scenarios/demo.yaml", parse_overrides(items))
        assert sc.network.uplink_mbps == 50, items  # the child survives whatever the order
        assert sc.network.name.startswith("wifi5") and sc.network.rtt_ms == si.get_network("wifi5").rtt_ms


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path, capsys):
    from splitimpera.cli import main

    text = ("name: d\nmodel: {name: digits_cnn}\ndevice: rpi4\nserver: server_t4\nnetwork: lte\n"
            "qos:\n  max_latency_ms: 90\nqos:\n  min_accuracy: 0.9\n")
    (tmp_path / "s.yaml").write_text(text)
    assert main(["simulate", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "duplicate key 'qos' (lines 6 and 8)" in err
    # Merge keys are not duplicates.
    (tmp_path / "m.yaml").write_text("base: &b {a: 1, c: 2}\nx:\n  <<: *b\n  a: 3\n")
    from splitimpera.config.yaml_files import read_yaml

    assert read_yaml(tmp_path / "m.yaml")["x"] == {"a": 3, "c": 2}


@pytest.mark.parametrize("over, hint", [({"qos.max_latncy_ms": 5}, "did you mean max_latency_ms"),
                                        ({"workload.num_device": 2}, "did you mean num_devices"),
                                        ({"bottleneck.nominl": True}, "did you mean nominal")])
def test_unknown_keys_suggest_the_known_one(repo_root, over, hint):
    with pytest.raises(si.UserError, match=hint):
        si.load_scenario(repo_root / "scenarios/demo.yaml", over)
