"""End-to-end through the CLI (in process; the bad-input suite also runs subprocesses)."""

import json

import pandas as pd
import pytest

from splitimpera.cli import main


def test_demo_end_to_end(repo_root, tmp_path, capsys):
    rc = main(["simulate", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    folder = tmp_path / "demo"
    assert sorted(p.name for p in folder.iterdir()) == ["requests.parquet", "result.json", "scenario.yaml",
                                                        "splits.csv", "splits.parquet"]
    table = pd.read_csv(folder / "splits.csv", index_col=["split", "bottleneck"])
    pq = pd.read_parquet(folder / "splits.parquet")
    assert list(pq.index.names) == ["split", "bottleneck"] and list(pq.index) == list(table.index)
    assert (pq["latency_s"] - table["latency_s"]).abs().max() < 1e-12
    doc = json.loads((folder / "result.json").read_text())
    rec = doc["summary"]["recommended"]
    assert set(rec) == {"split", "bottleneck"} and rec["bottleneck"] == "none"
    point = (rec["split"], rec["bottleneck"])
    # The recommendation is the feasible point of least latency, and the terminal says so.
    feas = table[table["feasible"]]
    assert point == feas["latency_s"].idxmin() or feas.loc[point, "latency_s"] == feas["latency_s"].min()
    assert f"Recommended: {rec['split']} " in out
    splits = list(table.index.get_level_values("split"))
    assert splits[:1] == ["input"] and splits[-1] == "output"
    assert set(table.index.get_level_values("bottleneck")) == {"none"}
    assert doc["summary"]["num_splits"] == len(table) and doc["summary"]["num_points"] == len(table)
    assert [(p["split"], p["bottleneck"]) for p in doc["points"]] == list(table.index)
    # Every infeasible row says why.
    assert (table.loc[~table["feasible"], "reason"].str.len() > 0).all()
    # Latency is the sum of its parts (mean stages of the simulated requests, waits included).
    parts = table[["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
                   "downlink_s"]].sum(axis=1)
    assert (parts - table["latency_s"]).abs().max() < 1e-12
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_same_scenario_same_bytes(repo_root, tmp_path, capsys):
    for d in ("a", "b"):
        assert main(["simulate", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path / d)]) == 0
    for f in ("splits.csv", "splits.parquet", "result.json", "scenario.yaml", "requests.parquet"):
        assert (tmp_path / "a/demo" / f).read_bytes() == (tmp_path / "b/demo" / f).read_bytes()


def test_set_changes_the_answer_and_rewrites_atomically(repo_root, tmp_path, capsys):
    sc = str(repo_root / "scenarios/demo.yaml")
    assert main(["simulate", sc, "-o", str(tmp_path)]) == 0
    before = pd.read_csv(tmp_path / "demo/splits.csv", index_col="split")
    assert main(["simulate", sc, "-o", str(tmp_path), "--set", "network.uplink_mbps=0.5",
                 "--set", "qos.max_latency_ms=1"]) == 0
    after = pd.read_csv(tmp_path / "demo/splits.csv", index_col="split")
    assert (after.loc["input", "uplink_s"] > before.loc["input", "uplink_s"])
    assert not after["feasible"].any()
    out = capsys.readouterr().out
    assert "No split meets the QoS" in out and "Closest" in out
    assert "uplink_mbps: 0.5" in (tmp_path / "demo/scenario.yaml").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_strict_exit_code_when_nothing_is_feasible(repo_root, tmp_path, capsys):
    rc = main(["simulate", str(repo_root / "scenarios/demo.yaml"), "--strict", "--set", "qos.max_latency_ms=1"])
    assert rc == 3


def test_splits_command_lists_resnet50(capsys):
    assert main(["splits", "resnet50", "--input", "3x224x224"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split()[1] for ln in out.splitlines()[3:] if ln.strip()]
    for name in ["input", "conv1", "maxpool", "layer1_0_relu_2", "layer4_2_relu_2", "avgpool", "flatten", "fc",
                 "output"]:
        assert name in rows
    assert "4.112 GFLOPs" in out


def test_splits_csv(capsys):
    assert main(["splits", "digits_cnn", "--csv"]) == 0
    from io import StringIO

    df = pd.read_csv(StringIO(capsys.readouterr().out), index_col="split")
    assert df.loc["output", "head_flops"] == df.loc["input", "tail_flops"] > 0


def test_profiles_command(capsys):
    assert main(["profiles", "devices", "--include", "jetson*"]) == 0
    out = capsys.readouterr().out
    assert "jetson_nano" in out and "rpi4" not in out


@pytest.mark.parametrize("name", ["vgg16_wifi5", "resnet50_lte"])
def test_bundled_scenarios_run(repo_root, name, capsys):
    assert main(["simulate", str(repo_root / "scenarios" / f"{name}.yaml")]) == 0
    assert "splitimpera · " + name in capsys.readouterr().out


def test_help_on_every_command(capsys):
    for cmd in (["--help"], ["simulate", "--help"], ["splits", "--help"], ["profiles", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_analyze_writes_every_output(repo_root, tmp_path, capsys):
    assert main(["simulate", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path)]) == 0
    assert main(["analyze", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path), "-q",
                 "--set", "bottleneck.measure=[none, int8]"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "demo"
    names = {p.name for p in folder.iterdir()}
    # analyze adds its files beside simulate's, it does not replace them
    assert names == {"splits.csv", "splits.parquet", "result.json", "scenario.yaml", "requests.parquet", "cui.csv",
                     "cui_per_image.parquet", "cui_per_class.csv", "nominations.json", "cui.png",
                     "accuracy.csv", "accuracy_summary.json", "accuracy.png"}
    curve = pd.read_csv(folder / "cui.csv", index_col="split")
    per_image = pd.read_parquet(folder / "cui_per_image.parquet")
    per_class = pd.read_csv(folder / "cui_per_class.csv", index_col="class")
    noms = json.loads((folder / "nominations.json").read_text())
    assert len(per_image) == 360 and list(per_class.index) == list(range(10))
    # The curve is the log10 of the per-image mean, and the best split is its maximum.
    import numpy as np

    assert np.allclose(curve["log10_cui"], np.log10(per_image[list(curve.index)].mean()))
    assert noms["best"] == curve["log10_cui"].idxmax() == noms["nominated"][0]["split"]
    assert f"1  {noms['best']}" in out and "Best split per class" in out
    assert (folder / "cui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # per-class best splits in the JSON are the maxima of the per-class table
    for row in noms["best_per_class"]:
        assert row["best_split"] == per_class.loc[row["class"]].idxmax()


def test_class_subset_through_the_cli(repo_root, tmp_path, capsys):
    sc = str(repo_root / "scenarios/demo.yaml")
    assert main(["analyze", sc, "-q", "--no-accuracy", "-o", str(tmp_path / "all")]) == 0
    best_all = json.loads((tmp_path / "all/demo/nominations.json").read_text())["best"]
    per_class = json.loads((tmp_path / "all/demo/nominations.json").read_text())["best_per_class"]
    other = [r["class"] for r in per_class if r["best_split"] != best_all]
    assert other, "the demo model has classes whose best split differs (0 and 6 with the shipped weights)"
    assert main(["analyze", sc, "-q", "--no-accuracy", "-o", str(tmp_path / "sub"),
                 "--set", f"analysis.cui.classes={other}"]) == 0
    sub = json.loads((tmp_path / "sub/demo/nominations.json").read_text())
    assert sub["best"] != best_all and sub["settings"]["classes"] == other


def test_simulate_ranks_only_nominated_splits(repo_root, tmp_path, capsys):
    sc = str(repo_root / "scenarios/demo.yaml")
    assert main(["analyze", sc, "-q", "--no-accuracy", "-o", str(tmp_path)]) == 0
    noms = [r["split"] for r in json.loads((tmp_path / "demo/nominations.json").read_text())["nominated"]]
    assert main(["simulate", sc, "-o", str(tmp_path), "--set", "analysis.splits=nominated"]) == 0
    table = pd.read_csv(tmp_path / "demo/splits.csv", index_col="split")
    assert sorted(table.index) == sorted(noms)
    assert table["index"].is_monotonic_increasing and "log10_cui" in table.columns
