"""Regressions for bugs a code review found (labels, subsets, report statistic, stale files, RNG)."""

import json

import numpy as np
import torch

import splitimpera as si
from splitimpera.cli import main
from splitimpera.report.html import load_result_dir, render_report


def _sc(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)


def test_labels_beyond_the_model_outputs_are_a_user_error(repo_root, tmp_path, capsys):
    rc = main(["analyze", str(repo_root / "scenarios/demo.yaml"), "-q", "-o", str(tmp_path),
               "--set", "model.weights=none", "--set", "model.num_classes=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "model.num_classes" in err[0] and "10 classes" in err[0]
    assert not list(tmp_path.iterdir())


def test_limit_takes_a_seeded_subset_across_classes(repo_root):
    from splitimpera.data import load_dataset

    sc = _sc(repo_root, **{"data.limit": 30})
    a = load_dataset(sc.data, (1, 32, 32), seed=0)
    b = load_dataset(sc.data, (1, 32, 32), seed=0)
    labels = [int(a[i][1]) for i in range(len(a))]
    assert len(a) == 30 and a.indices == b.indices
    assert len(set(labels)) >= 8  # not just the first classes of the list


def test_report_margin_uses_the_constrained_statistic(repo_root, tmp_path):
    res = si.run(_sc(repo_root, **{"qos.max_latency_ms": 80, "qos.latency_statistic": "p95"}))
    folder = res.save(tmp_path)
    rec = res.recommended
    p95 = res.table.loc[rec, "latency_p95_s"]
    text = render_report([folder])
    assert f"{80 - p95 * 1e3:.3g} ms under the 80 ms limit on p95" in text


def test_no_stale_files_in_a_result_folder(repo_root, tmp_path):
    si.run(_sc(repo_root)).save(tmp_path)  # simpy: writes requests.parquet
    assert (tmp_path / "demo/requests.parquet").exists()
    si.run(_sc(repo_root, **{"analysis.engine": "analytic"})).save(tmp_path)
    assert not (tmp_path / "demo/requests.parquet").exists()
    # An analysis of another model in the same folder is not shown beside these results.
    from splitimpera.pipeline import analyze, save_analysis

    other = _sc(repo_root, **{"model.weights": "none"})
    save_analysis(other, analyze(other), tmp_path)
    si.run(_sc(repo_root)).save(tmp_path)
    assert load_result_dir(tmp_path / "demo").cui is None
    same = _sc(repo_root)
    save_analysis(same, analyze(same), tmp_path)
    assert load_result_dir(tmp_path / "demo").cui is not None
    assert json.loads((tmp_path / "demo/nominations.json").read_text())["inputs"]["model"]["weights"] == "default"


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
