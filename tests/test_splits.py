"""Split enumeration and exact head/tail construction."""

import pytest
import torch
import torch.nn as nn
import torchvision

import splitimpera as si
from splitimpera.model.splits import trace

# Random weights are fine for exactness; a small input keeps CI fast (the cut rule and the
# head/tail graphs do not depend on the resolution).
BIG_MODELS = ["vgg16", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "densenet121"]


@pytest.mark.parametrize("name", BIG_MODELS)
def test_every_candidate_is_exact(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    shape = (3, 64, 64)
    tm = trace(model, shape)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        ref = model(x)
        assert len(tm.candidates) >= 8
        for sp in tm.candidates:
            head, tail = si.split_model(tm, sp.name, shape)
            h = head(x)
            # What the head sends is what the split point says it sends.
            if sp.name != "output":
                assert tuple(h.shape[1:]) == sp.shape, sp.name
                assert h[0].numel() * 4 == sp.tx_bytes, sp.name
            out = tail(h)
            assert (out - ref).abs().max().item() <= 1e-5, sp.name


def _names(model, shape=(3, 224, 224)):
    return [s.name for s in si.find_splits(model, shape)]


def test_resnet50_candidates():
    names = _names(torchvision.models.resnet50())
    blocks = [f"layer{l}_{b}_relu_2" for l, n in zip(range(1, 5), (3, 4, 6, 3)) for b in range(n)]
    assert len(blocks) == 16
    for expected in ["input", "conv1", "bn1", "relu", "maxpool", *blocks, "avgpool", "flatten", "fc", "output"]:
        assert expected in names
    assert names[0] == "input" and names[-1] == "output"
    # Inside a bottleneck the identity branch is live: no cut there.
    assert "layer1_0_conv1" not in names and "layer2_1_bn2" not in names
    # Topological order: bottleneck outputs appear in network order.
    pos = [names.index(b) for b in blocks]
    assert pos == sorted(pos)


def test_vgg16_every_layer_is_a_candidate():
    model = torchvision.models.vgg16()
    names = _names(model)
    layers = [f"features_{i}" for i in range(len(model.features))] + ["avgpool", "flatten"] + [
        f"classifier_{i}" for i in range(len(model.classifier))]
    assert names == ["input", *layers, "output"]


class Skip(nn.Module):
    """a → b → (b + a) → c: the cut after `b` is invalid because `a` is still needed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        a = self.a(x)
        b = self.b(a)
        s = (b + a) * self.scale  # a get_attr used after the cut must not block it
        return self.c(s)


def test_liveness_rule_on_a_hand_built_dag():
    names = _names(Skip(), (4,))
    assert names == ["input", "a", "add", "mul", "c", "output"]  # `b` is not a valid cut
    m = Skip().eval()
    x = torch.randn(3, 4)
    for n in names:
        head, tail = si.split_model(m, n, (4,))
        assert torch.allclose(tail(head(x)), m(x), atol=0, rtol=0)


def test_split_shares_parameters_with_model():
    m = si.load_model("digits_cnn", "default")
    head, tail = si.split_model(m, "features_9", (1, 32, 32))
    assert head.get_submodule("features.0").weight is m.features[0].weight
    assert tail.get_submodule("classifier.1").weight is m.classifier[1].weight


def test_unknown_split_is_a_user_error():
    m = si.load_model("digits_cnn", "none")
    with pytest.raises(si.UserError, match="unknown split"):
        si.split_model(m, "features_99", (1, 32, 32))


def test_untraceable_model_is_a_user_error():
    class Dynamic(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return x
            return -x

    with pytest.raises(si.UserError, match="cannot be traced"):
        si.find_splits(Dynamic(), (4,))
