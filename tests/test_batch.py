"""Many scenarios evaluated at once (``evaluate_batch``) equal each scenario evaluated alone by
the frame path (the latency stage's table, ``qos.rank``, ``qos.mark_ties``, ``qos.advise``),
on a small grid with overloaded and infeasible points; and a random sample of a sweep's points
equals ``si.run`` on the same scenario."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

import splitimpera as si
from splitimpera.batch import evaluate_batch, selection
from splitimpera.latency.engine import TABLE_COLUMNS, latency_table
from splitimpera.qos import advise, compute_error_fraction, mark_ties, rank
from splitimpera.sweep import load_sweep

GRID = {"network": ["3g", "lte", "wifi5"], "device": ["rpi4", "jetson_nano"],
        "workload.num_devices": [1, 8], "workload.rate_hz": [10.0, 600.0],  # 600 Hz overloads
        "qos.max_latency_ms": [30.0, 120.0]}


def frame_path(sc, prep) -> tuple[pd.DataFrame, dict]:
    """One scenario through the frame functions, as evaluate ran before batches."""
    points, frame, cols = selection(prep, prep.splits)
    _, lat = latency_table(sc, prep.profile, points.table, frame=frame)
    cols = {**cols, **{c: lat[c].to_numpy() for c in lat.columns}}
    table = pd.DataFrame({c: cols[c] for c in TABLE_COLUMNS + ["config"]}, index=points.table.index)
    table = rank(table, sc.qos, sc.device)
    table = mark_ties(table, compute_error_fraction(sc.device, prep.profile),
                      compute_error_fraction(sc.server, prep.profile), sc.qos.objective)
    return table, advise(table, sc.qos, sc.network, sc.workload)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for c in want.columns:
        a, b = got[c], want[c]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-12, atol=0,
                                       err_msg=c)
        else:
            assert list(a) == list(b), c


@pytest.fixture(scope="module")
def grid():
    sw = load_sweep({"name": "batch_grid", "base": "demo", "set": {"analysis.engine": "analytic"}, "grid": GRID})
    scenarios = [sw.base.scenario(v) for v in sw.values]
    return scenarios, si.prepare(scenarios[0])


def test_batch_equals_each_scenario_alone_on_every_point_of_a_grid(grid):
    scenarios, prep = grid
    batch = evaluate_batch(scenarios, prep)
    kinds = {"overloaded": 0, "nothing feasible": 0, "feasible": 0}
    for i, sc in enumerate(scenarios):
        want, tips = frame_path(sc, prep)
        got = batch.result(i)
        assert_same_rows(got.table, want)
        assert got.advice == tips
        assert got.table["rank"].equals(want["rank"]) and got.table["tie"].equals(want["tie"])
        kinds["overloaded"] += bool((want["overload"] != "").any())
        kinds["nothing feasible"] += not want["feasible"].any()
        kinds["feasible"] += bool(want["feasible"].any())
    assert all(kinds.values()), kinds  # the grid has every kind of point
    # The long table is every scenario's table, one after the other.
    long = batch.long_table()
    assert len(long) == len(scenarios) * len(prep.points.table)
    one = long.iloc[len(prep.points.table):2 * len(prep.points.table)].set_index(["split", "bottleneck"])
    assert_same_rows(one, batch.result(1).table)


def test_a_batch_of_one_is_evaluate(grid):
    scenarios, prep = grid
    sc = scenarios[5]
    assert_same_rows(si.evaluate(sc, prep).table, evaluate_batch([sc], prep).result(0).table)


def test_sweep_points_equal_si_run_on_their_scenario():
    spec = {"name": "batch_sample", "base": "demo", "set": {"analysis.engine": "analytic"}, "grid": GRID}
    res = si.sweep(spec)
    sw = load_sweep(spec)
    summary = res.summary.set_index("point")
    picks = random.Random(4).sample(range(len(sw.values)), 3)
    # ... and one overloaded point and one where nothing is feasible, whatever the sample drew
    over = res.table.loc[res.table["overload"] != "", "point"].unique()
    none = summary.index[summary["num_feasible"] == 0]
    for p in dict.fromkeys([*picks, int(over[0]), int(none[0])]):
        want = si.run(sw.base.scenario(sw.values[p])).table
        got = res.table[res.table["point"] == p].drop(columns=["point", "point_key", *res.axes])
        assert_same_rows(got.set_index(["split", "bottleneck"]), want)
        row = summary.loc[p]
        assert row["num_feasible"] == int(want["feasible"].sum())
        if row["num_feasible"]:
            assert row["recommended_split"] == want.index[want["rank"].eq(1).fillna(False).to_numpy(bool)][0][0]
