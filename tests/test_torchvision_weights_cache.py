"""torchvision weights come from the local hub cache, must match the hash torchvision publishes
in their file name, and are read with weights_only=True: a cached file of tensors loads, a
file that is not the published one or a pickle of anything else is refused unexecuted, also
when `serve` loads the model."""

from __future__ import annotations

import hashlib

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


def _as_published(path, monkeypatch):
    """Name the cached file as torchvision would publish it (its sha256 prefix in the name):
    the weights' URL is pointed at that name."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    named = path.with_name(f"resnet18-{digest}.pth")
    path.rename(named)
    w = torchvision.models.get_model_weights("resnet18").DEFAULT
    monkeypatch.setattr(w.value, "url", w.url.rsplit("/", 1)[0] + "/" + named.name)
    return named


def test_cached_torchvision_weights_are_loaded_as_tensors_only(hub, monkeypatch):
    ref = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(ref.fc.bias, 0.25)
    torch.save(ref.state_dict(), hub)
    _as_published(hub, monkeypatch)
    model = si.load_model("resnet18", "default")
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_a_cached_file_that_is_not_the_published_one_is_refused_before_reading(hub):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), hub)  # tensors, but not the file whose hash the name gives
    with pytest.raises(UserError, match="not the published file: its name says sha256 f37072fd"):
        si.load_model("resnet18", "default")


def test_a_cached_pickle_that_is_not_tensors_is_refused_without_running_it(hub, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    torch.save({"fc.weight": _Payload(marker)}, hub)
    with pytest.raises(UserError) as e:  # refused on its hash
        si.load_model("resnet18", "default")
    assert not marker.exists(), "the cached file's code ran"
    assert str(hub) in str(e.value)
    named = _as_published(hub, monkeypatch)  # its hash matches the name: refused by weights_only
    with pytest.raises(UserError) as e:
        si.load_model("resnet18", "default")
    assert not marker.exists(), "the cached file's code ran"
    assert str(named) in str(e.value)


def test_serve_refuses_a_planted_pickle_in_torch_home_in_one_line(repo_root, tmp_path, monkeypatch, capsys):
    from splitimpera.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    path = hub_checkpoint_path(url)
    assert str(tmp_path) in str(path)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"fc.weight": _Payload(marker)}, path)
    rc = main(["serve", str(repo_root / "scenarios" / "measure_resnet18.yaml"), "--set", "model.weights=default"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(path) in err[0], err
    assert not marker.exists(), "the planted file's code ran"
