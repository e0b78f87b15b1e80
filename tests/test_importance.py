"""Grad-CAM maps in one pass, checked against pytorch-grad-cam itself (the oracle)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import splitimpera as si
from splitimpera.data import digits
from splitimpera.accuracy.gradcam import MapEngine, get_method, layer_maps, reference_splits
from splitimpera.model.splits import trace

METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam"]


def _without_inplace(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    return m


def _library(method, model, layer, x, targets):
    cam = get_method(method)(model=model, target_layers=[layer])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()


def _library_postprocess(raw, x):
    """The library's own display steps for one layer: clip, min-max + resize, aggregate (min-max again)."""
    from pytorch_grad_cam import GradCAM

    scaled = scale_cam_image(np.maximum(raw, 0), (x.shape[-1], x.shape[-2]))
    return GradCAM.aggregate_multi_layers(None, [scaled[:, None, :]])


def _vgg_case():
    model = si.load_model("digits_cnn", "default")
    x, y = digits("test").tensors
    # features_0 is a conv followed by ReLU(inplace=True): the in-place case.
    return model, x[:6], y[:6], {"features_0": lambda m: m.features[0], "features_4": lambda m: m.features[4],
                                 "features_12": lambda m: m.features[12]}


def _resnet_case():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([1, 3, 5, 7])
    # A residual block's output is our split `layer1_0_relu_1`; the library hooks the block.
    return model, x, y, {"conv1": lambda m: m.conv1, "layer1_0_relu_1": lambda m: m.layer1[0],
                         "layer3_1_relu_1": lambda m: m.layer3[1]}


@pytest.mark.parametrize("case", [_vgg_case, _resnet_case], ids=["vgg-style", "resnet-style"])
@pytest.mark.parametrize("method", METHODS)
def test_maps_equal_pytorch_grad_cam(case, method):
    model, x, y, layers = case()
    ours = layer_maps(model, x, y, list(layers), method=method)
    oracle_model = _without_inplace(model)  # the library keeps a view that in-place ops would overwrite
    for split, get_layer in layers.items():
        expected = _library(method, oracle_model, get_layer(oracle_model), x, y)
        got = _library_postprocess(ours[split].numpy(), x)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4, (method, split)
    # The model we were given is untouched: still eval mode, in-place ops intact.
    assert not any(m.training for m in model.modules())


def test_in_place_op_defeats_hooks_without_a_copy():
    """Why the taps copy: on the in-place model the library cannot give the map at features_0.

    pytorch-grad-cam keeps a view of the conv output and hooks its gradient; ReLU(inplace=True)
    then overwrites that output, so the library either fails (1.5.x: the gradient hook never
    fires) or would return a map of the ReLU'd values. Ours is right on the same model.
    """
    model, x, y, _ = _vgg_case()
    clean = _without_inplace(model)
    truth = _library("gradcam", clean, clean.features[0], x, y)
    try:
        corrupted = _library("gradcam", model, model.features[0], x, y)
    except AttributeError:
        corrupted = None
    if corrupted is not None:
        assert np.abs(corrupted - truth).max() > 1e-2
    ours = _library_postprocess(layer_maps(model, x, y, ["features_0"])["features_0"].numpy(), x)
    assert np.abs(ours - truth).max() <= 1e-4


def test_one_forward_and_one_backward():
    model, x, y, _ = _vgg_case()
    engine = MapEngine(model, (1, 32, 32))  # tracing runs the model once; not part of the pass
    counts = {"fwd": 0, "bwd": 0}
    h1 = model.features[0].register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    h2 = model.features[0].register_full_backward_hook(lambda *a: counts.__setitem__("bwd", counts["bwd"] + 1))
    try:
        maps, _ = engine(x, y)
    finally:
        h1.remove()
        h2.remove()
    assert len(maps) == 15 and counts == {"fwd": 1, "bwd": 1}


def test_raw_maps_match_a_float64_hand_computation():
    """Independent of the library: Grad-CAM by hand, in float64, without in-place ops."""
    model, x, y, _ = _vgg_case()
    ours = layer_maps(model, x, y, ["features_9"], reduction="mean")["features_9"].double()
    m = _without_inplace(model).double()
    h = x.double()
    for layer in list(m.features)[:10]:
        h = layer(h)
    a = h
    a.retain_grad()
    for layer in list(m.features)[10:]:
        h = layer(h)
    m.classifier(h).gather(1, y[:, None]).sum().backward()
    w = a.grad.mean((2, 3), keepdim=True)
    ref = torch.relu((w * a).mean(1))  # reduction "mean": I-SPLIT's reference code
    assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_model_state_is_restored():
    model = si.load_model("digits_cnn", "default").train()
    model.features[0].weight.requires_grad_(False)
    layer_maps(model, digits("test").tensors[0][:2], [0, 1])
    assert all(m.training for m in model.modules())
    assert not model.features[0].weight.requires_grad and model.features[2].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_predicted_targets_and_engine_reuse():
    model, x, y, _ = _vgg_case()
    eng = MapEngine(model, (1, 32, 32), ["features_14"])
    a, logits = eng(x, None)
    b, _ = eng(x, logits.argmax(1))
    assert torch.equal(a["features_14"], b["features_14"])


def test_reference_layers_are_isplits():
    vgg = trace(torchvision.models.vgg16(), (3, 224, 224))
    ref = reference_splits(vgg)
    convs_pools = [f"features_{i}" for i, m in enumerate(torchvision.models.vgg16().features)
                   if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    assert ref == convs_pools and len(ref) == 18
    r50 = reference_splits(trace(torchvision.models.resnet50(), (3, 224, 224)))
    assert r50[:2] == ["conv1", "maxpool"] and len(r50) == 18
    assert all(n.endswith("_relu_2") for n in r50[2:])


def test_unknown_method_and_bad_split():
    model = si.load_model("digits_cnn", "default")
    x = torch.zeros(1, 1, 32, 32)
    with pytest.raises(si.UserError, match="unknown importance method"):
        layer_maps(model, x, None, method="gradcam+++")
    with pytest.raises(si.UserError, match="no map at split"):
        layer_maps(model, x, None, ["input"])
