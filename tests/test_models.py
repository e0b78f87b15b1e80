"""Model loading: zoo, torchvision (offline), state dicts, user models; the demo model's accuracy."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

import splitimpera as si
from splitimpera.data import digits
from splitimpera.model.zoo import WEIGHTS_DIR


def test_demo_model_heldout_accuracy():
    model = si.load_model("digits_cnn", "default")
    assert not model.training
    x, y = digits("test").tensors
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.95
    # The recorded figure is the one the shipped weights give.
    meta = json.loads((WEIGHTS_DIR / "digits_cnn.json").read_text())
    assert abs(meta["test_accuracy"] - acc) < 1e-6


def test_demo_weights_are_small_and_split_is_held_out():
    assert (WEIGHTS_DIR / "digits_cnn.pt").stat().st_size < 2e6
    tr, te = digits("train").tensors, digits("test").tensors
    assert len(tr[1]) + len(te[1]) == 1797
    # No test image is also a training image.
    flat_tr = {tuple(v.tolist()) for v in tr[0].flatten(1)[:, ::7]}
    assert not any(tuple(v.tolist()) in flat_tr for v in te[0].flatten(1)[:, ::7])


def test_torchvision_default_weights_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    with pytest.raises(si.UserError) as e:
        si.load_model("resnet18", "default")
    msg = e.value.message
    assert "not in the local cache" in msg and "resnet18-" in msg and str(tmp_path) in msg


def test_state_dict_path_and_mismatch(tmp_path):
    ref = si.load_model("digits_cnn", "none")
    p = tmp_path / "w.pt"
    torch.save(ref.state_dict(), p)
    model = si.load_model("digits_cnn", str(p))
    assert torch.equal(model.features[0].weight, ref.features[0].weight)
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(si.UserError, match="do not fit the model"):
        si.load_model("digits_cnn", str(tmp_path / "bad.pt"))


def test_user_model(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def tiny(num_classes=3):
            return nn.Sequential(nn.Flatten(), nn.Linear(8, num_classes))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = si.load_model("mymodels:tiny", "none", num_classes=5)
    assert model[1].out_features == 5 and not model.training
    names = [s.name for s in si.find_splits(model, (8,))]
    assert names == ["input", "_0", "_1", "output"]  # fx names Sequential children _0, _1
    sys.modules.pop("mymodels", None)


def test_unknown_model_suggests_names():
    with pytest.raises(si.UserError, match="did you mean resnet50"):
        si.load_model("resnet05")


def _sc(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def test_runs_leave_the_global_torch_generator_alone(repo_root):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    si.run(_sc(repo_root, **{"model.weights": "none", "analysis.engine": "analytic"}))
    assert torch.equal(torch.rand(3), expected)
    # …and seeded random weights are still reproducible.
    a = si.evaluate(_sc(repo_root, **{"model.weights": "none"}),
                    si.prepare(_sc(repo_root, **{"model.weights": "none"}))).table
    b = si.run(_sc(repo_root, **{"model.weights": "none"})).table
    assert np.allclose(a["accuracy"], b["accuracy"], equal_nan=True)
