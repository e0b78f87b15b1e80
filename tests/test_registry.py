"""One Registry[T] (splitimpera.config.registry) and the five registries built on it: device and
network profiles, importance methods, bottlenecks and zoo models. Their entries' metadata is
checked against the entries themselves, torchvision style (names, kinds, traces, shapes)."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import splitimpera.accuracy.bottlenecks as bn
from splitimpera.accuracy import gradcam
from splitimpera.config import checks, profile_registry, scenario
from splitimpera.config.registry import Registry
from splitimpera.errors import UserError
from splitimpera.model import zoo

DEFAULT_BOTTLENECKS = ["none", "fp16", "int8", "int4", "int2", "int8_channel", "int4_channel", "int2_channel",
                       "int8_pct", "int4_pct", "int2_pct", "top50_gradcam", "top50_random", "top25_gradcam",
                       "top25_random", "autoencoder"]


def _filled(*names: str, **kw) -> Registry[str]:
    reg: Registry[str] = Registry("widget", **kw)
    for n in names:
        reg.register(n, f"obj-{n}")
    return reg


# --------------------------------------------------------------------------------------------
# The Registry class


def test_register_get_and_duplicate():
    reg = _filled("alpha")
    assert reg.register("beta", "B") == "B"  # register returns the object
    assert reg.get("beta") == "B" and reg.get("alpha") == "obj-alpha"
    with pytest.raises(ValueError, match="widget named 'beta' is already registered"):
        reg.register("beta", "other")
    assert reg.get("beta") == "B"  # the refused registration changed nothing
    reg.register("beta", "C", overwrite=True)
    assert reg.get("beta") == "C" and len(reg) == 2
    with pytest.raises(ValueError):
        reg.register("", "empty name")
    assert reg.pop("beta") == "C" and "beta" not in reg
    assert reg.pop("beta", None) is None
    with pytest.raises(KeyError):
        reg.pop("beta")


def test_unknown_name_is_one_line_with_a_suggestion_and_the_known_names():
    reg = _filled("jetson_nano", "rpi4", "rpi5")
    with pytest.raises(UserError) as e:
        reg.get("rpi9")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("unknown widget 'rpi9'")
    assert set(msg.split("did you mean ")[1].split("?")[0].split(", ")) == {"rpi4", "rpi5"}
    assert msg.endswith("(known: jetson_nano, rpi4, rpi5)")
    with pytest.raises(UserError) as e:
        reg.get("zzzzzz")
    assert "did you mean" not in str(e.value) and "jetson_nano" in str(e.value)
    hinted = _filled("a", hint="also b<n>")
    with pytest.raises(UserError, match=r"\(known: a; also b<n>\)$"):
        hinted.get("x")
    with pytest.raises(UserError, match="known: none"):
        Registry("widget").get("x")


def test_list_sorts_and_filters_with_include_and_exclude_globs():
    reg = _filled("rpi5", "jetson_nano", "server_a100", "rpi4", "jetson_orin_nano")
    assert reg.list() == ["jetson_nano", "jetson_orin_nano", "rpi4", "rpi5", "server_a100"]
    assert list(reg) == reg.list()
    assert reg.list(include="jetson*") == ["jetson_nano", "jetson_orin_nano"]
    assert reg.list(include=["rpi*", "server_?100"]) == ["rpi4", "rpi5", "server_a100"]
    assert reg.list(exclude="jetson*") == ["rpi4", "rpi5", "server_a100"]
    assert reg.list(include="*o*", exclude=["*orin*", "server*"]) == ["jetson_nano"]
    assert reg.list(include="RPI*") == []  # case-sensitive on every platform
    unsorted = _filled("b", "c", "a", sort=False)
    assert unsorted.list() == ["b", "c", "a"]
    assert unsorted.list(exclude="c") == ["b", "a"]


def test_match_keeps_the_order_given_and_drops_duplicates():
    reg = _filled("int8", "int4", "fp16", "none", sort=False,
                  fallback=lambda n: f"parsed-{n}" if n.startswith("int") and n[3:].isdigit() else None)
    assert reg.match("fp16") == ["fp16"]
    assert reg.match("int*") == ["int8", "int4"]  # a glob expands in list order
    assert reg.match(["none", "int*", "fp16", "int4", "int5"]) == ["none", "int8", "int4", "fp16", "int5"]
    assert reg.match([]) == []
    with pytest.raises(UserError, match=r"no widget matches 'jpeg\*' \(known: int8, int4, fp16, none\)"):
        reg.match(["int8", "jpeg*"])
    with pytest.raises(UserError, match="unknown widget 'fp61'; did you mean fp16"):
        reg.match(["int8", "fp61"])


def test_fallback_answers_get_but_not_membership():
    reg = _filled("a", fallback=lambda n: n.upper() if n.startswith("p") else None)
    assert reg.get("p7") == "P7"
    assert "p7" not in reg and reg.list() == ["a"]
    with pytest.raises(UserError, match="unknown widget 'q7'"):
        reg.get("q7")


def test_loader_runs_once_lazily_and_again_after_reset():
    calls = []

    def loader(reg):
        calls.append(1)
        reg.register("default", "D", meta={"path": "x.yaml"})

    reg: Registry[str] = Registry("widget", loader=loader)
    assert calls == []  # nothing loaded at construction
    assert "default" in reg and calls == [1]
    reg.register("extra", "E")
    assert reg.list() == ["default", "extra"] and reg.get("default") == "D" and calls == [1]
    assert reg.meta("default") == {"path": "x.yaml"} and reg.meta("extra") == {}
    reg.meta("default")["path"] = "changed"
    assert reg.meta("default") == {"path": "x.yaml"}  # meta() hands out a copy
    reg.reset()
    assert calls == [1]  # reset is lazy too
    assert reg.list() == ["default"] and calls == [1, 1]  # the code-registered entry is gone


def test_a_failing_loader_leaves_nothing_half_loaded():
    state = {"fail": True}

    def loader(reg):
        reg.register("first", 1)
        if state["fail"]:
            raise UserError("bad profile", source="x.yaml")
        reg.register("second", 2)

    reg: Registry[int] = Registry("widget", loader=loader)
    for _ in range(2):  # the same error each time, not a registry holding "first" only
        with pytest.raises(UserError, match="bad profile"):
            reg.list()
    state["fail"] = False
    assert reg.list() == ["first", "second"]


# --------------------------------------------------------------------------------------------
# The five registries


@pytest.mark.parametrize("reg, expected", [
    (profile_registry.DEVICES, {"rpi4", "rpi5", "jetson_nano", "jetson_orin_nano", "server_a100", "server_cpu"}),
    (profile_registry.NETWORKS, {"3g", "lte", "lte_drive", "wifi5", "ethernet"}),
    (gradcam.METHODS, {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "gradcam-elementwise"}),
    (bn.BOTTLENECKS, set(DEFAULT_BOTTLENECKS)),
    (zoo.ZOO, {"digits_cnn", "letters_vgg", "letters_resnet"}),
], ids=["devices", "networks", "methods", "bottlenecks", "zoo"])
def test_each_registry_is_a_registry_listing_its_entries(reg, expected):
    assert isinstance(reg, Registry)
    names = reg.list()
    assert expected <= set(names)
    assert len(names) == len(set(names)) == len(reg)
    for name in names:
        assert name in reg


def test_list_functions_answer_from_the_registries():
    assert profile_registry.list_devices(include="server*", exclude="server_cpu") == \
        [n for n in profile_registry.DEVICES.list() if n.startswith("server") and n != "server_cpu"]
    assert profile_registry.list_networks(include=["lte*", "3g"]) == ["3g", "lte", "lte_drive"]
    assert gradcam.list_methods(include="gradcam*") == ["gradcam", "gradcam++", "gradcam-elementwise"]
    assert zoo.list_zoo_models() == zoo.ZOO.list() == ["digits_cnn", "letters_resnet", "letters_vgg"]
    assert bn.list_bottlenecks()[:len(DEFAULT_BOTTLENECKS)] == DEFAULT_BOTTLENECKS  # registration order
    assert bn.list_bottlenecks(include="int*", exclude="*_pct") == \
        ["int8", "int4", "int2", "int8_channel", "int4_channel", "int2_channel"]


def test_unknown_names_are_user_errors_in_every_registry():
    for get, bad, hint in ((profile_registry.get_device, "rpi9", "rpi4"), (profile_registry.get_network, "lte5", "lte"),
                           (gradcam.get_method, "gradcamm", "gradcam"), (zoo.get_zoo_entry, "digits_cn", "digits_cnn"),
                           (bn.get_bottleneck, "fp61", "fp16")):
        with pytest.raises(UserError, match=f"unknown .*'{bad}'; did you mean [^?]*\\b{hint}\\b"):
            get(bad)


@pytest.mark.parametrize("name", profile_registry.list_devices())
def test_device_profile_metadata(name):
    prof = profile_registry.get_device(name)
    assert prof.name == name
    # list_devices(include="server*") is how front ends pick servers: the names must say the kind.
    assert (prof.kind == "server") == name.startswith("server")
    assert prof.sources, f"{name} cites no source"
    path = profile_registry.profile_path("devices", name)
    assert path is not None and path.is_file() and path.stem == name
    # The raw mapping a scenario's `base:` merges over is the profile itself.
    assert profile_registry.parse_profile("devices", profile_registry.profile_raw("devices", name), str(path)) == prof
    assert prof.macs_per_s("conv") == pytest.approx(prof.compute.peak_gflops * 1e9 * prof.compute.efficiency.conv / 2)


@pytest.mark.parametrize("name", profile_registry.list_networks())
def test_network_profile_metadata(name):
    prof = profile_registry.get_network(name)
    assert prof.name == name
    assert prof.sources, f"{name} cites no source"
    path = profile_registry.profile_path("networks", name)
    assert path is not None and path.is_file() and path.stem == name
    assert profile_registry.parse_profile("networks", profile_registry.profile_raw("networks", name), str(path)) == prof
    if prof.trace is not None:  # the analytic rate is the trace's time-weighted mean
        assert prof.uplink_mbps == pytest.approx(prof.trace.mean_mbps("up"))


def test_profile_raw_is_a_copy_and_code_profiles_have_no_file():
    raw = profile_registry.profile_raw("devices", "rpi4")
    raw["compute"]["peak_gflops"] = -1
    assert profile_registry.profile_raw("devices", "rpi4")["compute"]["peak_gflops"] > 0
    p = profile_registry.get_device("rpi4").model_copy(update={"name": "test_registry_board"})
    try:
        profile_registry.register_device(p)
        assert profile_registry.profile_path("devices", "test_registry_board") is None
        assert profile_registry.profile_raw("devices", "test_registry_board")["name"] == "test_registry_board"
        assert "test_registry_board" in profile_registry.list_devices(include="test_*")
    finally:
        profile_registry.DEVICES.reset()
    assert "test_registry_board" not in profile_registry.DEVICES


@pytest.mark.parametrize("name", zoo.list_zoo_models())
def test_zoo_entry_metadata(name):
    entry = zoo.get_zoo_entry(name)
    assert entry.name == name and entry.description
    if entry.weights_file:
        assert entry.weights_path.is_file()
    model = entry.builder().eval()
    if entry.weights_path is not None:
        model.load_state_dict(torch.load(entry.weights_path, weights_only=True))
    with torch.no_grad():
        out = model(torch.zeros(2, *entry.input_shape))
    assert tuple(out.shape) == (2, entry.num_classes)
    # The parameter count the weights' metadata records is the model's own.
    meta = entry.weights_path.with_suffix(".json") if entry.weights_path is not None else None
    if meta is not None and meta.is_file() and "params" in json.loads(meta.read_text()):
        assert json.loads(meta.read_text())["params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", gradcam.list_methods())
def test_importance_method_metadata(name):
    from pytorch_grad_cam.base_cam import BaseCAM

    cls = gradcam.get_method(name)
    assert issubclass(cls, BaseCAM)
    assert callable(getattr(cls, "get_cam_weights", None))


@pytest.mark.parametrize("name", DEFAULT_BOTTLENECKS)
def test_bottleneck_entries_are_fresh_and_named(name):
    a, b = bn.get_bottleneck(name), bn.get_bottleneck(name)
    assert isinstance(a, bn.Bottleneck) and a is not b and a.name == name
    assert a.is_identity == (name == "none")
    assert a.describe()
    shape = (8, 6, 6)
    if a.applicable(shape, "features_1") is None:
        assert 0 < a.nominal_bytes(shape) <= 4 * 8 * 6 * 6 + 8 * 8  # at most fp32 plus per-channel ranges


def test_is_identity_only_for_the_plain_base_class():
    assert bn.Bottleneck().is_identity
    assert not bn.Quantize(8).is_identity
    assert not bn.Fp16().is_identity
    assert not bn.TopChannels(1.0, "random").is_identity  # keeps everything, but is still a selection


def test_resolve_bottlenecks_names_globs_and_parametric_names():
    assert bn.resolve_bottlenecks("fp16") == ["fp16"]
    assert bn.resolve_bottlenecks("int*_pct") == ["int8_pct", "int4_pct", "int2_pct"]
    assert bn.resolve_bottlenecks(["autoencoder", "top50*", "int5_channel", "autoencoder", "top50_random"]) == \
        ["autoencoder", "top50_gradcam", "top50_random", "int5_channel"]
    assert isinstance(bn.get_bottleneck("int5_channel"), bn.Quantize)
    with pytest.raises(UserError, match=r"no bottleneck matches 'jpeg\*'"):
        bn.resolve_bottlenecks(["fp16", "jpeg*"])
    with pytest.raises(UserError, match="unknown bottleneck 'int9'.*also int<bits>"):
        bn.resolve_bottlenecks("int9")


# --------------------------------------------------------------------------------------------
# Validation hooks (config/checks.py): the schema asks the layers that own the names


def test_each_layer_registers_its_scenario_check():
    owners = {s: {fn.__module__ for fn in checks.registered_checks(s)} for s in ("model", "analysis", "bottleneck")}
    assert "splitimpera.model.loading" in owners["model"]
    assert "splitimpera.accuracy.gradcam" in owners["analysis"]
    assert "splitimpera.accuracy.bottlenecks" in owners["bottleneck"]


def test_a_check_registered_twice_runs_once_and_errors_get_source_and_field():
    calls = []

    def check(sc, src_for):
        calls.append(sc)
        raise UserError("nope")

    section = "_test_registry_section"
    try:
        checks.register_check(check, section=section)
        checks.register_check(check, section=section)
        with pytest.raises(UserError) as e:
            checks.run_checks("sc", lambda f: f"file.yaml (--set {f})", section)
        assert calls == ["sc"]
        assert (e.value.source, e.value.field) == (f"file.yaml (--set {section})", section)
    finally:
        checks._CHECKS.pop(section, None)


def _bottleneck_scenario(name, measure="all"):
    return SimpleNamespace(bottleneck=SimpleNamespace(name=name, measure=measure))


def test_bottleneck_check_accepts_a_name_or_a_list_of_names_and_globs():
    src_for = lambda f: "s.yaml"  # noqa: E731
    bn._check_scenario_bottlenecks(_bottleneck_scenario("int4_channel"), src_for)
    bn._check_scenario_bottlenecks(_bottleneck_scenario(["none", "int*", "top10_random"], ["fp16"]), src_for)
    for name, measure, field, needle in (
            (["int*", "jpeg*"], "all", "bottleneck.name", "'jpeg*'"),
            ("int9", "all", "bottleneck.name", "'int9'"),
            ([], "all", "bottleneck.name", "at least one"),
            ("fp16", ["int8", "jpeg90"], "bottleneck.measure", "'jpeg90'")):
        with pytest.raises(UserError) as e:
            bn._check_scenario_bottlenecks(_bottleneck_scenario(name, measure), src_for)
        assert (e.value.source, e.value.field) == ("s.yaml", field) and needle in e.value.message


def test_scenario_validation_imports_no_later_stage():
    """The scenario's checks ask config.checks, not the model or accuracy layer (config sits below both)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(scenario._semantic_checks) +
                                     inspect.getsource(scenario._check_bottleneck)))
    imported = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imported == []
    for mod in (checks, sys.modules[Registry.__module__]):
        src = Path(mod.__file__).read_text()
        assert "..model" not in src and "..accuracy" not in src


def test_importing_the_scenario_module_alone_still_validates(tmp_path, repo_root):
    """A fresh interpreter that imports only splitimpera.config.scenario gets every hook (the
    package __init__ runs first and imports all layers)."""
    code = textwrap.dedent("""
        import json, sys
        from splitimpera.config.scenario import scenario_from_dict
        from splitimpera.errors import UserError
        out = {}
        base = {"name": "t", "model": {"name": "digits_cnn"}, "device": "rpi4", "server": "server_cpu", "network": "lte"}
        for key, bad in (("model", {"name": "resnet9000"}),
                         ("analysis", {"cui": {"method": "gradcam+++"}}),
                         ("bottleneck", {"name": "jpeg90"})):
            try:
                scenario_from_dict({**base, key: bad}, source="s.yaml")
                out[key] = None
            except UserError as e:
                out[key] = [e.field, e.message]
        print(json.dumps(out))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["model"][0] == "model.name" and "resnet9000" in out["model"][1]
    assert out["analysis"][0] == "analysis.cui.method" and "gradcam+++" in out["analysis"][1]
    assert out["bottleneck"][0] == "bottleneck.name" and "jpeg90" in out["bottleneck"][1]
