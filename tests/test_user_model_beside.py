"""A user model's module beside the scenario file is found."""

import sys
import uuid

import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.model.loading import load_traced

MODULE = """
import torch.nn as nn

def make():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
"""


def _scenario(folder, mod):
    (folder / "scen.yaml").write_text(
        f"name: mine\nmodel: {{name: '{mod}:make', input_shape: [1, 8, 8], weights: none}}\ndata: {{source: none}}\n"
        "device: rpi4\nserver: server_t4\nnetwork: lte\nanalysis: {engine: analytic}\n")
    return folder / "scen.yaml"


@pytest.fixture
def mod(tmp_path, monkeypatch):
    name = f"mymod_{uuid.uuid4().hex[:8]}"  # not imported before, whatever ran earlier
    monkeypatch.chdir(tmp_path.parent)  # not the scenario's folder: the current folder is no help
    yield name
    sys.modules.pop(name, None)


def test_module_beside_the_scenario_is_imported_without_pythonpath(tmp_path, mod):
    (tmp_path / f"{mod}.py").write_text(MODULE)
    path_before = list(sys.path)
    sc = si.load_scenario(_scenario(tmp_path, mod))
    assert sc.base_dir == tmp_path.resolve()
    tm = load_traced(sc)
    assert tm.output_width == 3
    assert sys.path == path_before, "the scenario's folder is on sys.path only during the import"
    res = si.run(sc)
    assert res.recommended is not None


def test_a_missing_module_says_where_it_was_looked_for(tmp_path, mod, capsys):
    rc = main(["simulate", str(_scenario(tmp_path, mod))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"model.name: cannot import module '{mod}'" in err
    assert f"in the scenario's folder {tmp_path.resolve()}" in err and "PYTHONPATH" in err
