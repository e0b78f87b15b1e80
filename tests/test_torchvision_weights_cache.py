"""torchvision weights come from the local hub cache and are read with weights_only=True:
a cached file of tensors loads, a cached pickle of anything else is refused unexecuted."""

from __future__ import annotations

import pytest
import torch
import torchvision

import splitimpera as si
from splitimpera.errors import UserError
from splitimpera.model.loading import hub_checkpoint_path


class _Payload:
    """Unpickling this runs code: it creates a file (the test checks it never appears)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    path = hub_checkpoint_path(url)
    path.parent.mkdir(parents=True)
    return path


def test_cached_torchvision_weights_are_loaded_as_tensors_only(hub):
    ref = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(ref.fc.bias, 0.25)
    torch.save(ref.state_dict(), hub)
    model = si.load_model("resnet18", "default")
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_a_cached_pickle_that_is_not_tensors_is_refused_without_running_it(hub, tmp_path):
    marker = tmp_path / "ran"
    torch.save({"fc.weight": _Payload(marker)}, hub)
    with pytest.raises(UserError) as e:
        si.load_model("resnet18", "default")
    assert not marker.exists(), "the cached file's code ran"
    assert str(hub) in str(e.value)
