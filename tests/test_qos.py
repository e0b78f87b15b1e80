"""QoS ranking: property-based checks on random tables."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from splitimpera.qos import constraints, rank
from splitimpera.config.scenario import QoSSpec


class _Dev:
    def __init__(self, mem):
        self.memory_bytes = mem


@st.composite
def cases(draw):
    n = draw(st.integers(1, 25))
    fl = st.floats(1e-4, 1.0, allow_nan=False)
    table = pd.DataFrame({
        "index": np.arange(n),
        "latency_s": draw(st.lists(fl, min_size=n, max_size=n)),
        "energy_j": draw(st.lists(fl, min_size=n, max_size=n)),
        "bytes_sent": draw(st.lists(st.integers(1, 10**7), min_size=n, max_size=n)),
        "accuracy": draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)),
        "head_mem_bytes": draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n)),
        "latency_p95_s": draw(st.lists(fl, min_size=n, max_size=n)),
        "deadline_miss_ratio": draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)),
        "uplink_utilisation": draw(st.lists(st.floats(0, 2), min_size=n, max_size=n)),
    }, index=[f"s{i}" for i in range(n)])
    opt = lambda s: st.none() | s  # noqa: E731
    max_latency_ms = draw(opt(st.floats(0.1, 1000)))
    qos = QoSSpec(
        max_latency_ms=max_latency_ms,
        latency_statistic=draw(st.sampled_from(["mean", "p95"])),
        max_deadline_miss_ratio=None if max_latency_ms is None else draw(opt(st.floats(0, 1))),
        max_uplink_utilisation=draw(opt(st.floats(0.01, 1))),
        max_energy_mj=draw(opt(st.floats(0.1, 1000))),
        max_tx_bytes=draw(opt(st.integers(1, 10**7))),
        min_accuracy=draw(opt(st.floats(0, 1))),
        fit_device_memory=draw(st.booleans()),
        objective=draw(st.sampled_from(["latency", "energy", "bytes", "accuracy", "weighted"])),
        weights={"latency": draw(st.floats(0, 2)), "energy": draw(st.floats(0, 2)), "bytes": draw(st.floats(0, 2)),
                 "accuracy": draw(st.floats(0, 2))},
    )
    return table, qos, _Dev(draw(st.integers(1, 10**9)))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_feasibility_reasons_and_order(case):
    table, qos, dev = case
    out = rank(table, qos, dev)
    cs = constraints(qos, dev)
    lat_col = "latency_s" if qos.latency_statistic == "mean" else "latency_p95_s"
    lim = {lat_col: qos.max_latency_s, "energy_j": qos.max_energy_j, "bytes_sent": qos.max_tx_bytes,
           "accuracy": qos.min_accuracy, "head_mem_bytes": dev.memory_bytes if qos.fit_device_memory else None,
           "deadline_miss_ratio": qos.max_deadline_miss_ratio, "uplink_utilisation": qos.max_uplink_utilisation}
    alias = {"latency_qos_s": lat_col}
    for name, r in out.iterrows():
        violated = [c for c in cs if not (r[c.column] <= c.limit if c.upper else r[c.column] >= c.limit)]
        # Independent re-check of each limit from the QoS spec itself.
        indep = [col for col, l in lim.items() if l is not None and
                 ((r[col] < l) if col == "accuracy" else (r[col] > l))]
        assert sorted(alias.get(c.column, c.column) for c in violated) == sorted(indep)
        if r["feasible"]:
            assert not violated and r["reason"] == "" and not pd.isna(r["rank"])
            assert r["violation"] == 0  # also with a limit of 0 (no deadline miss allowed)
        else:
            assert violated and pd.isna(r["rank"])
            for c in violated:  # every violated constraint is named in the reason
                assert c.name in r["reason"]
            assert r["reason"].count(";") == len(violated) - 1
    feas = out[out["feasible"]].sort_values("rank")
    assert list(feas["rank"]) == list(range(1, len(feas) + 1))
    if qos.objective == "accuracy":
        assert feas["accuracy"].is_monotonic_decreasing
    elif qos.objective != "weighted":
        # Latency: the statistic the limit applies to (ranked as it is constrained).
        key = {"latency": lat_col, "energy": "energy_j", "bytes": "bytes_sent"}[qos.objective]
        assert feas[key].is_monotonic_increasing
    else:  # an independent weighted score: Σ w · min-max scaled metric (accuracy reversed)
        w = qos.weights
        score = 0.0
        for col, wt, sign in ((lat_col, w.latency, 1), ("energy_j", w.energy, 1), ("bytes_sent", w.bytes, 1),
                              ("accuracy", w.accuracy, -1)):
            v = table[col].astype(float) * sign
            if wt and v.max() > v.min():
                score = score + wt * (v - v.min()) / (v.max() - v.min())
        sc = (score if isinstance(score, pd.Series) else pd.Series(0.0, index=table.index)).loc[feas.index]
        assert (np.diff(sc.to_numpy()) >= -1e-12).all()


@st.composite
def objective_tables(draw):
    n = draw(st.integers(1, 30))
    # Few distinct values so that ties and duplicates are common.
    vals = st.sampled_from([0.1, 0.2, 0.3, 0.5, 1.0])
    cols = {c: draw(st.lists(vals, min_size=n, max_size=n)) for c in ("latency_s", "accuracy", "energy_j")}
    return pd.DataFrame(cols, index=[f"s{i}" for i in range(n)])


def _dominates(a, b):
    better_eq = a.latency_s <= b.latency_s and a.accuracy >= b.accuracy and a.energy_j <= b.energy_j
    strictly = a.latency_s < b.latency_s or a.accuracy > b.accuracy or a.energy_j < b.energy_j
    return better_eq and strictly


@settings(max_examples=300, deadline=None)
@given(objective_tables())
def test_pareto_front_is_non_dominated_and_complete(table):
    from splitimpera.qos import pareto_front

    front = pareto_front(table)
    rows = list(table.itertuples())
    for r, on in zip(rows, front):
        dominated = any(_dominates(o, r) for o in rows if o.Index != r.Index)
        assert on == (not dominated)  # non-dominated ⇔ on the front (completeness both ways)
    assert front.any()


def test_pareto_ignores_unmeasured_accuracy():
    from splitimpera.qos import pareto_front

    t = pd.DataFrame({"latency_s": [1.0, 2.0, 3.0], "energy_j": [3.0, 1.0, 2.0], "accuracy": [np.nan] * 3},
                     index=["a", "b", "c"])
    assert list(pareto_front(t)) == [True, True, False]


def test_what_would_change_suggestions_are_sufficient(repo_root):
    """Applying the suggested uplink rate (or limit) to the analytic model makes the split feasible."""
    import splitimpera as si
    from splitimpera.latency.analytic import analytic_latency
    from splitimpera.qos import what_would_change

    over = {"network": "3g", "qos.max_latency_ms": 60, "analysis.engine": "analytic"}
    sc = si.load_scenario(repo_root / "scenarios/demo.yaml", overrides=over)
    res = si.run(sc)
    assert not res.table["feasible"].any()
    tips = what_would_change(res.table, sc.qos, sc.network)
    assert tips
    prof = si.profile_model(si.load_model("digits_cnn", "default"), (1, 32, 32))
    for split, lines in tips.items():
        up = [t for t in lines if t.startswith("uplink ≥")]
        if up:
            mbps = float(up[0].split()[2]) * 1.001  # the printed value is rounded to 3 digits
            sc2 = si.load_scenario(repo_root / "scenarios/demo.yaml",
                                   overrides={**over, "network.uplink_mbps": mbps})
            assert analytic_latency(prof, sc2).loc[split, "latency_s"] <= sc2.qos.max_latency_s * 1.001
        assert any(t.startswith("a latency limit of") for t in lines)
