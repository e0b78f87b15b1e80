"""CUI curves, nominations, per-class curves and class subsets."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy.stats import trim_mean
from torch.utils.data import TensorDataset

import splitimpera as si
from splitimpera.accuracy import cui as cui_mod
from splitimpera.accuracy.cui import cui, nominate
from splitimpera.data import digits


class TwoStage(nn.Module):
    """logit_k = spatial mean of l2_k, l2 = l1 + bias, l1 = x (1×1 convs with identity weights).

    Grad-CAM with target k at l1 and l2 has closed forms (w_k = 1/HW, other channels 0):
    CUI_k(l1) = mean(x_k)/HW, CUI_k(l2) = mean(ReLU(x_k + b_k))/HW.
    With x ~ U(0, 1), b = (+2, -0.5): class 0 peaks at l2, class 1 at l1.
    """

    def __init__(self):
        super().__init__()
        self.l1 = nn.Conv2d(2, 2, 1)
        self.l2 = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            for conv in (self.l1, self.l2):
                conv.weight.copy_(torch.eye(2)[:, :, None, None])
            self.l1.bias.zero_()
            self.l2.bias.copy_(torch.tensor([2.0, -0.5]))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()

    def forward(self, x):
        return self.flat(self.pool(self.l2(self.l1(x))))


def _two_stage_data(n=400, hw=8):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, hw, hw, generator=g)
    y = torch.arange(n) % 2
    return TensorDataset(x, y)


def test_closed_form_and_class_subset_moves_the_best_split():
    data = _two_stage_data()
    res = cui(TwoStage(), data, splits=["l1", "l2"], use_cache=False)
    x, y = data.tensors
    hw = 64
    for k, b in ((0, 2.0), (1, -0.5)):
        xs = x[y == k, k]
        pi = res.per_image[res.per_image["label"] == k]
        assert np.allclose(pi["l1"], xs.mean((1, 2)).double() / hw, rtol=1e-5)
        assert np.allclose(pi["l2"], torch.relu(xs + b).mean((1, 2)).double() / hw, rtol=1e-5)
    # Over all images l2 wins; the subset {1} must move the best split to l1.
    assert res.best == "l2"
    assert res.for_classes([1]).best == "l1"
    assert res.for_classes([0]).best == "l2"
    best = res.best_per_class()
    assert best.loc[0, "best_split"] == "l2" and best.loc[1, "best_split"] == "l1"
    # The per-class curve is the log10 of the class's mean.
    exp = np.log10(res.per_image[res.per_image["label"] == 1][["l1", "l2"]].mean())
    assert np.allclose(res.per_class.loc[1], exp)


def test_aggregations_are_the_reference_statistics():
    data = _two_stage_data(60)
    base = cui(TwoStage(), data, splits=["l1", "l2"], use_cache=False)
    vals = base.per_image[["l1", "l2"]]
    med = cui(TwoStage(), data, splits=["l1", "l2"], aggregate="median", use_cache=False)
    tri = cui(TwoStage(), data, splits=["l1", "l2"], aggregate="trimmed", trim=0.2, use_cache=False)
    assert np.allclose(base.curve["cui"], vals.mean())
    assert np.allclose(med.curve["cui"], vals.median())
    assert np.allclose(tri.curve["cui"], trim_mean(vals, 0.2))
    assert np.allclose(base.curve["log10_cui"], np.log10(base.curve["cui"]))


def test_reference_preset_is_mean_reduction_of_predicted_class():
    model = si.load_model("digits_cnn", "default")
    data = torch.utils.data.Subset(digits("test"), range(24))
    ref = cui(model, data, preset="reference", use_cache=False)
    pred = cui(model, data, target="predicted", splits=list(ref.splits), use_cache=False)
    assert ref.settings["reduction"] == "mean" and pred.settings["reduction"] == "sum"
    assert (ref.per_image["target"] == ref.per_image["predicted"]).all()
    # mean over channels = sum / C, layer by layer
    for s in ref.splits:
        channels = si.find_splits(model, (1, 32, 32))
        c = next(sp.shape[0] for sp in channels if sp.name == s)
        assert np.allclose(ref.per_image[s] * c, pred.per_image[s], rtol=1e-5)


def _series(vals):
    return pd.Series(vals, index=[f"s{i}" for i in range(len(vals))])


@pytest.mark.parametrize("vals,expected", [
    ([1, 2, 3, 4], ["s3"]),                 # increasing: the last split, no spurious first point
    ([4, 3, 2, 1], ["s0"]),                 # decreasing: the first split is a maximum
    ([1, 3, 1, 2, 1], ["s1", "s3"]),        # two peaks, best first
    ([1, 3, 2.95, 3, 1], ["s1"]),           # a dip under the prominence does not split a peak
    ([1, 3, 3, 3, 1], ["s1"]),              # plateau: its earliest split
    ([1, 2.9, 2.5, 3, 1], ["s3", "s1"]),    # 0.4 of prominence clears 0.1
    ([1, 2.95, 2.9, 3, 1], ["s3"]),         # 0.05 does not
])
def test_nominations(vals, expected):
    nom = nominate(_series(vals), prominence=0.1, top_k=5)
    assert list(nom["split"]) == expected
    assert nom["kind"].iloc[0] == "global" and (nom["kind"].iloc[1:] == "local").all()
    assert list(nom["rank"]) == list(range(1, len(nom) + 1))


def test_top_k():
    nom = nominate(_series([5, 1, 4, 1, 3, 1, 2]), prominence=0.1, top_k=2)
    assert list(nom["split"]) == ["s0", "s2"]


def test_cache_hit_and_settings_in_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(tmp_path))
    data = _two_stage_data(20)
    first = cui(TwoStage(), data, splits=["l1", "l2"])
    assert list(tmp_path.glob("cui/*.json"))

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(cui_mod.MapEngine, "__call__", boom)
    again = cui(TwoStage(), data, splits=["l1", "l2"])
    pd.testing.assert_frame_equal(again.per_image, first.per_image)
    with pytest.raises(AssertionError, match="recomputed"):
        cui(TwoStage(), data, splits=["l1", "l2"], reduction="mean")  # another setting
    other = TwoStage()
    with torch.no_grad():
        other.l2.bias.add_(1.0)
    with pytest.raises(AssertionError, match="recomputed"):
        cui(other, data, splits=["l1", "l2"])  # other weights


def test_unknown_class_subset_is_a_user_error():
    res = cui(TwoStage(), _two_stage_data(10), splits=["l1", "l2"], use_cache=False)
    with pytest.raises(si.UserError, match="no image of class"):
        res.for_classes([7])
