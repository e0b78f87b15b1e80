"""Design points (split × bottleneck): the joint ranking equals ranking each bottleneck alone
and merging, every point equals its single-bottleneck run, and the key's edges (globs,
nominal sizes, the old payload_dtype key, a list of splits to rank)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import splitimpera as si
from splitimpera.errors import UserError

BOTTLENECKS = ["none", "fp16", "int8", "int4", "int2"]
SAME = ["bytes_sent", "accuracy", "accuracy_source", "device_compute_s", "uplink_s", "server_compute_s",
        "latency_s", "latency_p95_s", "energy_j", "feasible", "reason"]


@pytest.fixture(scope="module")
def joint_and_singles(demo_scenario):
    _demo = demo_scenario
    # coder zstd: bytes are measured under the coder, so they differ per point and per bottleneck.
    joint = si.run(_demo(**{"bottleneck.name": BOTTLENECKS, "bottleneck.coder": "zstd"}))
    singles = {b: si.run(_demo(**{"bottleneck.name": b, "bottleneck.coder": "zstd"})) for b in BOTTLENECKS}
    return joint, singles


def test_the_table_is_keyed_by_split_and_bottleneck(joint_and_singles):
    joint, singles = joint_and_singles
    t = joint.table
    assert list(t.index.names) == ["split", "bottleneck"]
    splits = list(singles["none"].table.index.get_level_values("split"))
    expected = pd.MultiIndex.from_product([splits, BOTTLENECKS], names=["split", "bottleneck"])
    assert t.index.equals(expected), "splits in topological order, bottlenecks in the order given"
    assert joint.bottlenecks == BOTTLENECKS


def test_every_point_equals_its_single_bottleneck_run(joint_and_singles):
    joint, singles = joint_and_singles
    for b, single in singles.items():
        mine = joint.for_bottleneck(b)
        theirs = single.for_bottleneck(b)
        assert list(mine.index) == list(theirs.index)
        for col in SAME:
            a, e = mine[col], theirs[col]
            if a.dtype.kind == "f":
                np.testing.assert_array_equal(a.to_numpy(), e.to_numpy(), err_msg=f"{b}.{col}")
            else:
                assert a.tolist() == e.tolist(), f"{b}.{col}"
    # Bytes really do differ between bottlenecks (the comparison above is not vacuous).
    at = joint.table.xs("features_4", level="split")["bytes_sent"]
    assert at["none"] > at["fp16"] > at["int8"] > at["int4"] > at["int2"]


def test_joint_ranking_equals_merging_the_per_bottleneck_rankings(joint_and_singles):
    joint, singles = joint_and_singles
    # Merge: every single run's feasible points, ordered by the ranking's keys (objective
    # latency; ties: mean latency, bytes, topological position, then bottleneck order).
    rows = []
    for pos, (b, single) in enumerate(singles.items()):
        t = single.table
        for (split, bn), r in t[t["feasible"]].iterrows():
            rows.append((r["latency_s"], r["latency_s"], r["bytes_sent"], r["index"], pos, (split, bn)))
    merged = [p for *_, p in sorted(rows)]
    t = joint.table
    ranked = list(t[t["feasible"]].sort_values("rank").index)
    assert ranked == merged
    assert t.loc[ranked, "rank"].tolist() == list(range(1, len(ranked) + 1))
    assert joint.recommended == si.DesignPoint(*merged[0])
    # The recommendation names both halves of the point, and the best split per bottleneck is
    # each single run's own recommendation.
    best = joint.best_per_bottleneck()
    for b, single in singles.items():
        assert best.loc[b, "split"] == single.recommended.split
        assert single.recommended.bottleneck == b


def test_pareto_front_is_over_points(joint_and_singles):
    joint, singles = joint_and_singles
    t = joint.table
    v = t[["latency_s", "energy_j"]].to_numpy()
    acc = t["accuracy"].to_numpy()
    for i, (point, on_front) in enumerate(t["pareto"].items()):
        dominated = any(
            v[j, 0] <= v[i, 0] and v[j, 1] <= v[i, 1] and acc[j] >= acc[i]
            and (v[j, 0] < v[i, 0] or v[j, 1] < v[i, 1] or acc[j] > acc[i]) for j in range(len(t)))
        assert on_front == (not dominated), point
    # Points of different bottlenecks compete: a point on its own bottleneck's front can be
    # dominated by another bottleneck's point.
    alone = pd.concat([s.table["pareto"] for s in singles.values()])
    assert (alone & ~t["pareto"].reindex(alone.index)).any()


def test_cli_ranks_a_list_of_bottlenecks_and_names_split_and_bottleneck(repo_root, capsys, tmp_path):
    from splitimpera.cli import main

    code = main(["simulate", str(repo_root / "scenarios" / "demo.yaml"), "--set",
                 "bottleneck.name=[none,int8,int4]", "--set", "analysis.engine=analytic", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    header = next(ln for ln in out.splitlines() if ln.startswith("rank "))
    assert header.split()[:3] == ["rank", "split", "bottleneck"]  # the ranking names both halves
    rec = [ln for ln in out.splitlines() if ln.startswith("Recommended: ")][0]
    assert " · " in rec  # split · bottleneck
    assert "Best split per bottleneck:" in out
    saved = pd.read_csv(tmp_path / "demo" / "splits.csv")
    assert list(saved.columns[:2]) == ["split", "bottleneck"]
    assert set(saved["bottleneck"]) == {"none", "int8", "int4"}


def test_a_glob_names_the_matching_bottlenecks_in_registry_order(demo_scenario):
    sc = demo_scenario(**{"bottleneck.name": "int*", "analysis.engine": "analytic",
                             "analysis.splits": ["input", "features_14", "output"]})
    res = si.run(sc)
    assert res.bottlenecks == si.list_bottlenecks("int*")
    assert len(res.bottlenecks) > 3
    assert set(res.table.index.get_level_values("split")) == {"input", "features_14", "output"}


def test_nominal_sizes_measure_nothing(demo_scenario):
    sc = demo_scenario(**{"bottleneck.name": ["fp16", "int4"], "bottleneck.nominal": True,
                             "analysis.engine": "analytic"})
    res = si.run(sc)
    prof = res.profile
    for split in ("features_4", "classifier_0"):
        n = int(prof.loc[split, "tx_bytes"]) // 4  # fp32 elements sent
        assert res.table.loc[(split, "fp16"), "bytes_sent"] == 2 * n
        assert res.table.loc[(split, "int4"), "bytes_sent"] == math.ceil(n / 2) + 8  # codes + fp32 range
    assert (res.table["accuracy_source"].drop(index="output", level="split") == "full model (nominal)").all()


def test_the_old_payload_dtype_key_is_translated(demo_scenario):
    old = demo_scenario(**{"workload.payload_dtype": "float16", "analysis.engine": "analytic"})
    assert old.bottleneck.name == "fp16" and old.bottleneck.nominal
    new = demo_scenario(**{"bottleneck.name": "fp16", "bottleneck.nominal": True, "analysis.engine": "analytic"})
    pd.testing.assert_frame_equal(si.run(old).table, si.run(new).table)
    with pytest.raises(UserError, match="payload_dtype"):
        demo_scenario(**{"workload.payload_dtype": "int8", "bottleneck.name": "int4"})
    with pytest.raises(UserError, match="payload_dtype"):
        demo_scenario(**{"workload.payload_dtype": "bfloat16"})


def test_analysis_splits_takes_a_list(demo_scenario):
    names = ["input", "features_9", "output"]
    res = si.run(demo_scenario(**{"analysis.splits": names, "analysis.engine": "analytic"}))
    assert list(res.table.index.get_level_values("split")) == names
    full = si.run(demo_scenario(**{"analysis.engine": "analytic"}))
    pd.testing.assert_series_equal(res.table["latency_s"], full.table.loc[res.table.index, "latency_s"])
    with pytest.raises(UserError, match="features_99"):
        si.run(demo_scenario(**{"analysis.splits": ["input", "features_99"]}))


def test_bottleneck_lists_are_checked(demo_scenario):
    with pytest.raises(UserError, match="bottleneck.name"):
        demo_scenario(**{"bottleneck.name": ["int8", "int8"]})
    with pytest.raises(UserError, match="bottleneck.name"):
        demo_scenario(**{"bottleneck.name": ["int8", "nosuch*"]})
    with pytest.raises(UserError, match="bottleneck"):
        demo_scenario(**{"bottleneck.name": "int8", "bottleneck.nominal": True, "bottleneck.coder": "zstd"})


def test_with_a_learning_bottleneck_every_point_is_scored_on_the_same_half(demo_scenario):
    """calibration: auto on data other than the digits test split sets a seeded half aside to
    fit on; then every bottleneck of the run is scored on the other half, so points compare
    on the same samples (a non-learning bottleneck run alone is scored on all the data)."""
    from splitimpera.accuracy.design_points import evaluate_accuracy, load_calibration
    from splitimpera.data import load_data
    from splitimpera.model.loading import load_traced

    over = {"data.split": "all", "data.limit": 300, "bottleneck.splits": ["features_4", "features_9"],
            "analysis.engine": "analytic"}
    sc = demo_scenario(**over, **{"bottleneck.name": ["int8", "top50_gradcam"]})
    joint = si.run(sc)
    alone = si.run(demo_scenario(**over, **{"bottleneck.name": "top50_gradcam"}))
    mine, theirs = joint.for_bottleneck("top50_gradcam"), alone.for_bottleneck("top50_gradcam")
    for col in ("bytes_sent", "accuracy", "accuracy_source"):
        pd.testing.assert_series_equal(mine[col], theirs[col])
    # int8 in the joint run: measured on the evaluation half, by an independent path.
    tm = load_traced(sc)
    ds = load_data(sc, tm.input_shape, tm.output_width)
    _, half, _ = load_calibration(sc, tm.input_shape, ds)
    assert len(half) == 150
    ref = si.measure_accuracy(tm, half, ["int8"], ["features_4", "features_9"], coders=["raw"], use_cache=False)
    int8 = joint.for_bottleneck("int8")
    for split in ("features_4", "features_9"):
        assert int8.at[split, "accuracy"] == ref.for_bottleneck("int8").at[split, "accuracy"]
    assert joint.full_accuracy == evaluate_accuracy(tm.model, half)
    plain = si.run(demo_scenario(**over, **{"bottleneck.name": "int8"}))
    assert plain.full_accuracy == evaluate_accuracy(tm.model, ds)  # alone: all 300 samples


@pytest.mark.parametrize("over, field", [
    ({"analysis.splits": []}, "analysis.splits"),
    ({"analysis.splits": ["input", "input"]}, "analysis.splits"),
    ({"workload.payload_dtype": "int8", "bottleneck.nominal": False}, "bottleneck.nominal"),
    ({"workload.payload_dtype": "int8", "bottleneck": "int4"}, "bottleneck"),
    ({"workload.payload_dtype": "int8", "bottleneck.coder": "zstd"}, "bottleneck.coder"),
])
def test_contradictions_are_one_line_errors_naming_the_key(repo_root, capsys, over, field):
    from splitimpera.cli import main

    args = ["simulate", str(repo_root / "scenarios" / "demo.yaml")]
    for k, v in over.items():
        args += ["--set", f"{k}={v}" if not isinstance(v, list) else f"{k}=[{','.join(v)}]"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err and "Traceback" not in err


def test_the_old_key_can_be_removed_from_the_command_line(demo_scenario):
    sc = demo_scenario(**{"workload.payload_dtype": None})
    assert sc.bottleneck.name == "none" and not sc.bottleneck.nominal


def test_simulate_follows_a_list_of_splits(demo_scenario):
    sc = demo_scenario(**{"analysis.splits": ["input", "output"], "workload.num_requests": 20})
    assert list(si.simulate(sc).summary.index) == [("input", "none"), ("output", "none")]
    assert list(si.simulate(sc, splits="output").summary.index) == [("output", "none")]


def test_a_folder_from_before_design_points_keeps_its_bottleneck(demo_scenario, tmp_path):
    """An old result folder (no bottleneck column, summary naming one bottleneck, no rank or
    pareto column) still reports, under the bottleneck it ran."""
    import json

    from splitimpera.report.html import render_report
    from splitimpera.results import load_result

    res = si.run(demo_scenario(**{"bottleneck.name": "int8", "analysis.engine": "analytic"}))
    folder = res.save(tmp_path)
    t = pd.read_csv(folder / "splits.csv").drop(columns=["bottleneck", "rank", "pareto"])
    t.to_csv(folder / "splits.csv", index=False)
    doc = json.loads((folder / "result.json").read_text())
    doc["summary"]["bottleneck"] = {"name": "int8", "coder": "raw"}
    (folder / "result.json").write_text(json.dumps(doc))
    rd = load_result(folder)
    assert set(rd.table.index.get_level_values("bottleneck")) == {"int8"}
    assert (rd.table["reason"].map(type) == str).all()
    # Without ranks, feasible points are ranked by mean latency: the same first point here.
    assert rd.recommended == res.recommended
    html = render_report([folder])
    assert "under int8" in html and res.recommended.split in html
