"""Profile figures against independent references."""

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import splitimpera as si
from splitimpera.model import cost as profile_mod


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_total_flops_match_torchvision_published(name):
    """torchvision's weights metadata publishes GFLOPS (1 per multiply-add) at 224×224."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    published = weights.meta["_ops"] * 1e9
    prof = si.profile_model(torchvision.models.get_model(name).eval(), (3, 224, 224))
    total = prof.loc["output", "head_flops"]
    assert abs(total - published) / published < 0.05
    assert (prof["head_flops"] + prof["tail_flops"] == total).all()
    assert prof["head_flops"].is_monotonic_increasing


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 64, 64)), ("digits_cnn", (1, 32, 32)),
                                        ("mobilenet_v3_small", (3, 64, 64))])
def test_head_flops_match_torch_flop_counter(name, shape):
    """torch.utils.flop_counter counts 2 per multiply-add, for conv and matmul only."""
    model = si.load_model(name, "none")
    prof = si.profile_model(model, shape)
    x = torch.randn(1, *shape)
    for split in prof.index[:: max(1, len(prof) // 7)]:
        head, _ = si.split_model(model, split, shape)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            head(x)
        ours = prof.loc[split, "head_flops_conv"] + prof.loc[split, "head_flops_linear"]
        assert ours * 2 == fc.get_total_flops(), split


def test_params_and_bytes_match_the_split_modules():
    model = si.load_model("resnet18", "none")
    shape = (3, 64, 64)
    prof = si.profile_model(model, shape)
    total = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, *shape)
    for split in prof.index:
        head, tail = si.split_model(model, split, shape)
        assert prof.loc[split, "head_params"] == sum(p.numel() for p in head.parameters()), split
        assert prof.loc[split, "tail_params"] == sum(p.numel() for p in tail.parameters()), split
        assert prof.loc[split, "head_params"] + prof.loc[split, "tail_params"] == total
        if split != "output":
            with torch.no_grad():
                sent = head(x)
            assert prof.loc[split, "tx_bytes"] == sent.numel() * 4
            assert prof.loc[split, "tx_bytes_fp16"] == sent.numel() * 2
            assert prof.loc[split, "tx_bytes_int8"] == sent.numel()
    assert prof.loc["output", "tx_bytes"] == 8


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)      # 1×16×16 → 8×16×16
        self.r1 = nn.ReLU(inplace=True)              # in place: no new storage
        self.p1 = nn.MaxPool2d(2)                    # 8×8×8
        self.c2 = nn.Conv2d(8, 32, 3, padding=1)     # 32×8×8

    def forward(self, x):
        return self.c2(self.p1(self.r1(self.c1(x))))


def test_peak_activation_closed_form():
    """In a chain, the live set at each op is its input and its output (in-place ops add none)."""
    prof = si.profile_model(Chain(), (1, 16, 16))
    b = {"x": 1 * 256 * 4, "c1": 8 * 256 * 4, "p1": 8 * 64 * 4, "c2": 32 * 64 * 4}
    expect = {
        "input": b["x"],
        "c1": b["x"] + b["c1"],
        "r1": b["x"] + b["c1"],          # r1 aliases c1
        "c2": max(b["x"] + b["c1"], b["c1"] + b["p1"], b["p1"] + b["c2"]),
    }
    expect["p1"] = max(b["x"] + b["c1"], b["c1"] + b["p1"])
    for split, v in expect.items():
        assert prof.loc[split, "head_peak_act_bytes"] == v, split


def test_flops_are_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(tmp_path))
    model = Chain()
    first = si.profile_model(model, (1, 16, 16))
    assert list(tmp_path.glob("flops/*.json"))

    def boom(*a, **k):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(profile_mod, "_node_flops", boom)
    again = si.profile_model(model, (1, 16, 16))
    assert again.equals(first)
    # Another input shape is another key.
    with pytest.raises(AssertionError, match="recomputed"):
        si.profile_model(model, (1, 24, 24))


def _strided(stride):
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=stride, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1))


def test_cache_key_sees_module_configuration(monkeypatch, tmp_path):
    """Same graph code and parameter shapes, different stride: a different FLOP count."""
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(tmp_path))
    one = si.profile_model(_strided(1), (3, 16, 16)).loc["output", "head_flops"]
    two = si.profile_model(_strided(2), (3, 16, 16)).loc["output", "head_flops"]
    fresh = si.profile_model(_strided(2), (3, 16, 16), use_cache=False).loc["output", "head_flops"]
    assert two == fresh and one != two


def test_profiling_leaves_a_training_model_untouched():
    model = _strided(1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    si.profile_model(model, (3, 16, 16), use_cache=False)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics not updated by the profiler
