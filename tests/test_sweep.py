"""Parameter sweeps (issue 16): the sweep file, its points, and runs on a real Dask cluster
(``LocalCluster(processes=True, n_workers=2)``) checked against ``si.run`` on each point's
scenario, resumed after a killed run, and with invalid combinations among valid ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import splitimpera as si
from splitimpera.cli import main
from splitimpera.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scenarios" / "demo.yaml"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def write_sweep(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def point_rows(res, point: int) -> pd.DataFrame:
    t = res.table[res.table["point"] == point]
    return t.drop(columns=["point", "point_key", *res.axes]).set_index(["split", "bottleneck"])


# --------------------------------------------------------------------------------------------
# The sweep file


def test_points_are_the_product_of_grid_zip_and_seeded_random_samples(tmp_path):
    spec = {"name": "s", "seed": 7, "base": str(DEMO),
            "grid": {"network": ["lte", "wifi5"], "workload.num_devices": [1, 2, 4]},
            "zip": {"network.rtt_ms": [10, 50], "network.loss": [0.0, 0.01]},
            "random": {"samples": 5, "axes": {"network.uplink_mbps": {"loguniform": [0.5, 50]},
                                              "qos.max_latency_ms": {"uniform": [40, 60]},
                                              "workload.rate_hz": {"integers": [1, 3]},
                                              "device": {"choice": ["rpi4", "jetson_nano"]}}}}
    sw = load_sweep(spec)
    assert len(sw.values) == 2 * 3 * 2 * 5
    assert sw.axes == ["network", "workload.num_devices", "network.rtt_ms", "network.loss", "network.uplink_mbps",
                       "qos.max_latency_ms", "workload.rate_hz", "device"]
    grid = {(v["network"], v["workload.num_devices"]) for v in sw.values}
    assert grid == {(n, d) for n in ("lte", "wifi5") for d in (1, 2, 4)}
    assert {(v["network.rtt_ms"], v["network.loss"]) for v in sw.values} == {(10, 0.0), (50, 0.01)}  # paired
    up = np.array([v["network.uplink_mbps"] for v in sw.values])
    assert ((0.5 <= up) & (up < 50)).all() and len(set(up)) == 5  # 5 samples, each crossed with 12 rows
    assert {v["workload.rate_hz"] for v in sw.values} <= {1, 2, 3}
    assert load_sweep(spec).values == sw.values  # seeded
    assert load_sweep({**spec, "seed": 8}).values != sw.values
    assert len(set(sw.keys)) == len(sw.keys)
    # A value listed twice (or a random draw that comes up again) is one point.
    assert len(load_sweep({**spec, "grid": {"workload.num_devices": [1, 2, 1]}, "random": None}).values) == 2 * 2
    # The key names the resolved base: another base gives other keys (an earlier run's rows are stale).
    other = load_sweep({**spec, "set": {"qos.max_latency_ms": 70}, "random": {"samples": 5, "axes": {
        k: v for k, v in spec["random"]["axes"].items() if k != "qos.max_latency_ms"}}})
    assert not set(other.keys) & set(sw.keys)


@pytest.mark.parametrize("spec, field, words", [
    ({"grid": {"netwrk": ["lte"]}}, "grid.netwrk", "did you mean network"),
    ({"grid": {"network.uplink": [1]}}, "grid.network.uplink", "no field 'uplink' in network"),
    ({"zip": {"network": ["lte", "3g"], "workload.num_devices": [1]}}, "zip", "one length"),
    ({"random": {"samples": 3, "axes": {"qos.max_latency_ms": {"uniform": [50, 10]}}}},
     "random.axes.qos.max_latency_ms", "low must not exceed high"),
    ({"random": {"samples": 3, "axes": {"qos.max_latency_ms": {"uniform": [1, 2], "choice": [3]}}}},
     "random.axes.qos.max_latency_ms", "exactly one"),
    ({"set": {"network": "lte"}, "grid": {"network": ["3g"]}}, "grid.network", "also in set"),
    ({"grid": {"network": []}}, "grid", "at least one value"),
    ({"base": "no_such_scenario"}, "base", "not found"),
    ({"set": {"workload.num_devices": 0}}, "base", "workload.num_devices"),
    # The file names itself as its base (it is written as bad.yaml).
    ({"base": "bad.yaml"}, "base", "refers to itself"),
    # Refused from the counts, before a point is drawn: 10^8 drawn points would exhaust the memory.
    ({"random": {"samples": 100_000_000, "axes": {"network.uplink_mbps": {"loguniform": [0.5, 50]}}}},
     "random.samples", "would have 100,000,000 points (random.samples 100,000,000), more than max_points (100,000)"),
    ({"grid": {"workload.num_devices": [1, 2, 3, 4], "network": ["lte", "3g", "wifi5"]}, "max_points": 11},
     "grid", "would have 12 points (grid 12), more than max_points (11)"),
    ({"grid": {"network": ["lte", "3g"]}, "zip": {"workload.num_devices": [1, 2, 4]},
      "random": {"samples": 2, "axes": {"network.rtt_ms": {"uniform": [10, 50]}}}, "max_points": 11},
     "zip", "would have 12 points (grid 2 × zip 3 × random.samples 2)"),
    ({"random": {"samples": 3, "axes": {"network.rtt_ms": {"uniform": [10, float("inf")]}}}},
     "random.axes.network.rtt_ms.uniform.1", "finite"),
    ({"random": {"samples": True, "axes": {"network.rtt_ms": {"uniform": [10, 20]}}}},
     "random.samples", "not true or false"),
])
def test_bad_sweep_files_are_one_line_naming_file_and_key(tmp_path, capsys, spec, field, words):
    path = write_sweep(tmp_path, {"name": "bad", "base": str(DEMO), **spec})
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--workers", "0", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {path}: {field}: ") and words in err, err
    assert not (tmp_path / "out" / "bad").exists()


def test_a_sweep_of_max_points_points_is_taken(tmp_path):
    spec = {"name": "s", "base": str(DEMO), "grid": {"workload.num_devices": [1, 2, 3, 4], "network": ["lte", "3g"]},
            "zip": {"qos.max_latency_ms": [50, 90]}, "max_points": 16}
    assert len(load_sweep(spec).values) == 16


# --------------------------------------------------------------------------------------------
# On a cluster


def test_sweep_rows_equal_si_run_on_each_point(tmp_path, client):
    spec = {"name": "eq", "seed": 3, "base": str(DEMO), "set": {"analysis.engine": "analytic"},
            "grid": {"bottleneck.name": ["none", "int4"]},
            "zip": {"network": ["lte", "wifi5"], "workload.num_devices": [1, 4], "qos.max_latency_ms": [90, 38]},
            "random": {"samples": 1, "axes": {"network.uplink_mbps": {"loguniform": [1, 20]}}}}
    res = si.sweep(write_sweep(tmp_path, spec), client)
    assert len(res.summary) == 4 and (res.summary["status"] == "ok").all()
    assert res.meta["prepared_groups"] == 2  # the heavy stages once per bottleneck, not per point
    recs = set()
    for _, row in res.summary.iterrows():
        over = {"analysis.engine": "analytic", **{a: row[a] for a in res.axes}}
        over = {k: v.item() if hasattr(v, "item") else v for k, v in over.items()}
        ref = si.run(si.load_scenario(DEMO, over))
        got = point_rows(res, row["point"])
        pd.testing.assert_frame_equal(got, ref.table, check_exact=False, rtol=1e-12)
        rec = ref.recommended
        assert (row["recommended_split"], row["recommended_bottleneck"]) == ((rec.split, rec.bottleneck) if rec
                                                                               else (None, None))
        if rec is not None:
            lat = ref.table.loc[rec, "latency_qos_s"]
            assert row["margin_latency_s"] == pytest.approx(over["qos.max_latency_ms"] * 1e-3 - lat, rel=1e-12)
        recs.add(rec)
    assert len(recs) > 1  # the sweep moves the answer: the rows are not all one point's


RESUME_SCRIPT = """
import sys, splitimpera as si
from distributed import Client
with Client(sys.argv[1]) as c:
    si.sweep(sys.argv[2], c, out_dir=sys.argv[3], chunk_size=1, flush_s=0)
"""


def test_killed_sweep_resumes_to_the_same_table(tmp_path, client):
    spec = {"name": "resume", "seed": 1, "base": str(DEMO), "set": {"analysis.engine": "analytic"},
            "grid": {"network": ["lte", "wifi5", "3g"], "workload.num_devices": [1, 2, 3, 4]},
            "random": {"samples": 4, "axes": {"qos.max_latency_ms": {"uniform": [30, 120]}}}}
    path = write_sweep(tmp_path, spec)
    full = si.sweep(path, client)  # uninterrupted, in memory
    out = tmp_path / "out"
    parts = out / "resume" / ".parts"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, client.scheduler.address, str(path), str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    k = 4  # kill once k points are on disk (chunks of 1 point, each written when it finishes)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("*.summary.parquet"))) >= k:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sum(len(pd.read_parquet(p)) for p in parts.glob("*.summary.parquet")) if parts.is_dir() else 0
    assert done >= k, proc.stderr.read().decode()[-2000:]
    assert done < len(full.summary), "the run finished before it was killed: no resume tested"
    assert not (out / "resume" / "points.parquet").exists()
    res = si.sweep(path, client, out_dir=out)
    assert res.meta["resumed"] == done and res.meta["run_points"] == len(full.summary) - done
    pd.testing.assert_frame_equal(res.table, full.table)
    pd.testing.assert_frame_equal(res.summary, full.summary)
    on_disk = pd.read_parquet(out / "resume" / "points.parquet")
    pd.testing.assert_frame_equal(on_disk, full.table, check_dtype=False)  # text columns read back as strings
    assert not parts.exists()
    # Run again: nothing left to do. Change the base: every point is stale and runs again.
    assert si.sweep(path, client, out_dir=out).meta["run_points"] == 0
    spec["set"]["workload.rate_hz"] = 1000
    again = si.sweep(write_sweep(tmp_path, spec), client, out_dir=out)
    assert again.meta["resumed"] == 0 and again.meta["run_points"] == len(full.summary)
    assert (again.table["uplink_utilisation"] > full.table["uplink_utilisation"]).any()


def test_invalid_combinations_are_reported_per_point_and_the_others_finish(tmp_path, client, capsys):
    spec = {"name": "mixed", "base": str(DEMO), "set": {"analysis.engine": "analytic"},
            "grid": {"workload.num_devices": [1, 0],                     # 0: the schema rejects it
                     "analysis.splits": ["all", ["features_4", "nope"]]}}  # prepare rejects it (unknown split)
    path = write_sweep(tmp_path, spec)
    res = si.sweep(path, client)
    s = res.summary.set_index("point")
    assert list(s["status"]) == ["ok", "invalid", "invalid", "invalid"]
    assert "workload.num_devices" in s.loc[2, "error"] and "greater than or equal to 1" in s.loc[2, "error"]
    assert "unknown split(s) nope" in s.loc[1, "error"] and "analysis.splits" in s.loc[1, "error"]
    assert set(res.table["point"]) == {0}
    ref = si.run(si.load_scenario(DEMO, {"analysis.engine": "analytic"}))
    pd.testing.assert_frame_equal(point_rows(res, 0), ref.table, check_exact=False, rtol=1e-12)
    # The command line: the invalid points are listed, the results written, exit 0.
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--scheduler", client.scheduler.address,
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "1 ok, 3 invalid, 0 error" in out and "unknown split(s) nope" in out
    assert len(pd.read_parquet(tmp_path / "out" / "mixed" / "summary.parquet")) == 4
    # The sweep report lists them too.
    assert main(["report", str(tmp_path / "out" / "mixed"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "Points that did not run" in page and "unknown split(s) nope" in page and "data:image/png" in page


def test_report_heatmap_cells_and_cut_moves_on_a_known_summary(tmp_path):
    from splitimpera.report.sweep import choice_grid, cut_moves
    from splitimpera.results.sweep import SweepDir

    # a = uplink-like axis, b = a marginalised axis; the cut moves from output to input between
    # a=1 and a=2 where b is x or z, and only between a=2 and a=3 where b is y.
    rec = {(1, "x"): "output", (1, "y"): "output", (1, "z"): "output",
           (2, "x"): "input", (2, "y"): "output", (2, "z"): "input",
           (3, "x"): "input", (3, "y"): "input", (3, "z"): None}
    summary = pd.DataFrame([{"point": i, "a": a, "b": b, "status": "ok", "recommended_split": r,
                             "recommended_bottleneck": "none" if r else None} for i, ((a, b), r) in enumerate(rec.items())])
    table = pd.DataFrame({"split": ["input", "output"], "bottleneck": "none", "head_flops": [0, 10],
                          "tail_flops": [10, 0], "latency_s": 0.01, "energy_j": 0.01, "accuracy": 0.9,
                          "feasible": True, "point": 0})
    sd = SweepDir(tmp_path, table, summary, {"axes": ["a", "b"], "name": "t"})
    grid = choice_grid(sd, "a", None, {}).set_index("x")
    assert list(grid["split"]) == ["output", "input", "input"]
    assert list(grid["share"]) == pytest.approx([1, 2 / 3, 2 / 3])
    assert list(grid["device_share"]) == [1.0, 0.0, 0.0]
    assert choice_grid(sd, "a", None, {"b": "y"}).set_index("x")["split"].tolist() == ["output", "output", "input"]
    moves = cut_moves(sd)
    got = {(r["axis"], r["from"], r["to"], r["before"], r["after"]): r["pairs"] for _, r in moves.iterrows()}
    assert got == {("a", "1", "2", "output · none", "input · none"): 2,
                   ("a", "2", "3", "output · none", "input · none"): 1,
                   ("a", "2", "3", "input · none", "none feasible"): 1,
                   ("b", "x", "y", "input · none", "output · none"): 1,
                   ("b", "y", "z", "output · none", "input · none"): 1,
                   ("b", "y", "z", "input · none", "none feasible"): 1}
