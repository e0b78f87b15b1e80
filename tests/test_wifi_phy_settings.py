"""``network.mcs`` (and the other Wi-Fi PHY fields) through ``--set``, the saved scenario and
the report; a bad value refused in one line naming the file and the field."""

import pytest
import yaml

import splitimpera as si
from splitimpera.cli import main
from splitimpera.latency.link import contention_share
from splitimpera.latency.wifi_airtime import station_share

FAST = ["--set", "network=wifi4", "--set", "workload.num_requests=20", "--set", "analysis.engine=analytic",
        "--set", "workload.num_devices=8"]


def test_mcs_round_trips_through_set_the_saved_scenario_and_the_report(repo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"network": "wifi4", "network.mcs": 7})
    assert sc.network.mcs == 7 and sc.network.wifi_phy.rate_mbps == pytest.approx(65.0)
    assert contention_share(sc.network, 8) == pytest.approx(station_share(sc.network.wifi_phy, 8))
    assert contention_share(sc.network, 8) != contention_share(si.get_network("wifi4"), 8)
    again = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"network": sc.resolved()["network"]})
    assert again.network.mcs == 7 and again.network.contention is None  # the model, not a frozen list

    out = tmp_path / "out"
    assert main(["simulate", "scenarios/demo.yaml", "-o", str(out), "--set", "network.mcs=7", *FAST]) == 0
    text = capsys.readouterr().out
    assert "contention: the Wi-Fi air-time model (802.11n MCS 7, 20 MHz, 2.4 GHz" in text
    assert "equal shares" in text
    saved = yaml.safe_load(next(out.rglob("scenario.yaml")).read_text())
    assert saved["network"]["mcs"] == 7 and saved["network"]["wifi_standard"] == "802.11n"


@pytest.mark.parametrize("override, needle", [("network.mcs=40", "802.11n MCS (0-31)"),
                                              ("network.channel_width_mhz=80", "not an 802.11n width"),
                                              ("network.spatial_streams=2", "from the MCS index"),
                                              ("network.mcs=seven", "integer")])
def test_a_bad_phy_value_is_one_line_naming_file_and_field(repo_root, capsys, monkeypatch, override, needle):
    monkeypatch.chdir(repo_root)
    assert main(["simulate", "scenarios/demo.yaml", "--set", override, *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    field = override.partition("=")[0]
    assert len(err) == 1 and "scenarios/demo.yaml" in err[0] and field in err[0] and needle in err[0], err


def test_a_phy_field_without_a_wifi_standard_is_refused(repo_root, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["simulate", "scenarios/demo.yaml", "--set", "network.mcs=3", "--set", "analysis.engine=analytic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "network.mcs" in err[0] and "needs wifi_standard" in err[0], err


def test_mcs_0_survives_a_save_and_a_reload(repo_root):
    """MCS 0 is a valid index (0 == False in Python: the dump must not take it for unset)."""
    import yaml

    from splitimpera.config.scenario import parse_overrides, scenario_from_dict

    sc = si.load_scenario(repo_root / "scenarios" / "many_devices_wifi4.yaml",
                          overrides=parse_overrides(["network.mcs=0"]))
    again = scenario_from_dict(yaml.safe_load(sc.to_yaml()))
    assert again.network.mcs == 0 and again.network == sc.network
