"""Device and network profiles: schema, sources, registry behaviour."""

import pytest
import yaml

import splitimpera as si
from splitimpera.config.hardware import DeviceProfile, NetworkProfile
from splitimpera.config.profile_registry import DEVICES, resolve_relative_paths


def test_bundled_profiles_are_valid_and_sourced(repo_root):
    for kind, cls in (("devices", DeviceProfile), ("networks", NetworkProfile)):
        files = sorted((repo_root / "profiles" / kind).glob("*.yaml"))
        assert len(files) >= 5
        for f in files:
            data = resolve_relative_paths(kind, yaml.safe_load(f.read_text()), f.parent)  # trace_csv
            prof = cls.model_validate(data)
            assert prof.name == f.stem
            assert prof.sources, f"{f.name} cites no source"
            assert prof.description


def test_registry_lists_filters_and_rejects():
    assert "rpi4" in si.list_devices()
    assert set(si.list_devices(include="jetson*")) >= {"jetson_nano", "jetson_orin_nano"}
    assert all(n.startswith("server") for n in si.list_devices(include="server*"))
    assert "lte" in si.list_networks()
    with pytest.raises(si.UserError, match="unknown device profile 'rpi9'.*rpi4"):
        si.get_device("rpi9")
    with pytest.raises(ValueError, match="already registered"):
        si.register_device(si.get_device("rpi4"))


def test_register_a_new_profile():
    p = si.get_device("rpi4").model_copy(update={"name": "test_board_x"})
    try:
        si.register_device(p)
        assert si.get_device("test_board_x").compute == p.compute
    finally:
        DEVICES.reset()
    with pytest.raises(si.UserError):
        si.get_device("test_board_x")


def test_macs_rate_uses_two_flops_per_multiply_add():
    d = si.get_device("rpi4")
    assert d.macs_per_s("conv") == pytest.approx(d.compute.peak_gflops * 1e9 * d.compute.efficiency.conv / 2)
