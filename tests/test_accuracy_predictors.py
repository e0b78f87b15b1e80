"""Leave-one-split-out validation of accuracy predictors against scikit-learn's own
cross-validation, regret and the bootstrap bar against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from splitimpera.accuracy import predictors as P


def _points(seed=0, groups=(("a", "ae"), ("b", "ae"), ("a", "int2")), n=12, noise=0.02, slope=0.3):
    rng = np.random.default_rng(seed)
    rows = []
    for model, bn in groups:
        depth = np.linspace(0, 1, n)
        cui = rng.normal(size=n)
        size = rng.uniform(2, 5, size=n)
        acc = np.clip(0.6 + slope * depth + rng.normal(scale=noise, size=n), 0, 1)
        for i in range(n):
            rows.append({"model": model, "bottleneck": bn, "split": f"s{i}", "accuracy": acc[i],
                         "depth": depth[i], "log10_cui": cui[i], "log10_tx_bytes": size[i]})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method,estimator", [
    ("mean", DummyRegressor(strategy="mean")),
    ("depth", LinearRegression()),
    ("log_size", LinearRegression()),
    ("cui_linear", LinearRegression()),
    ("cui", IsotonicRegression(increasing="auto", out_of_bounds="clip")),
])
def test_leave_one_out_equals_scikit_learn_cross_val_predict(method, estimator):
    pts = _points()
    v = P.validate(pts, ["model", "bottleneck"], bootstrap=0)
    feature = P.METHODS[method].feature or "depth"
    for (model, bn), g in v.points.groupby(["model", "bottleneck"]):
        x = g[feature].to_numpy()[:, None]
        x = x[:, 0] if method == "cui" else x
        want = cross_val_predict(estimator, x, g["accuracy"].to_numpy(), cv=LeaveOneOut())
        np.testing.assert_allclose(g[f"loo_{method}"].to_numpy(), want, rtol=1e-9, atol=1e-12)
        row = v.groups.query("model == @model and bottleneck == @bn and method == @method").iloc[0]
        assert row["mae"] == pytest.approx(np.mean(np.abs(want - g["accuracy"].to_numpy())), rel=1e-9)


def test_regret_and_spearman_by_hand():
    measured = np.array([0.5, 0.9, 0.8, 0.7])
    assert P.regret(np.array([0.1, 0.2, 0.9, 0.3]), measured) == pytest.approx(0.1)
    assert P.regret(measured, measured) == 0.0
    pts = pd.DataFrame({"model": "m", "bottleneck": "b", "split": list("abcd"), "accuracy": measured,
                        "depth": [0.0, 1 / 3, 2 / 3, 1.0]})
    v = P.validate(pts, ["model", "bottleneck"], methods=["depth"], bootstrap=0)
    g = v.points
    from scipy.stats import spearmanr

    assert v.groups.at[0, "spearman"] == pytest.approx(spearmanr(g["loo_depth"], g["accuracy"]).statistic)
    assert v.groups.at[0, "regret"] == pytest.approx(0.9 - measured[int(np.argmax(g["loo_depth"]))])


def test_a_predictor_that_follows_the_accuracy_passes_the_bar_and_noise_does_not():
    pts = _points(noise=0.005, slope=0.3)
    rng = np.random.default_rng(1)
    # The probe tracks the accuracy to 0.2 points, depth (a baseline) to about 0.5: the probe's
    # error is well under 0.75 × depth's, CUI is noise.
    v = P.validate(pts.assign(probe_accuracy=pts["accuracy"] + rng.normal(scale=0.002, size=len(pts))),
                   ["model", "bottleneck"], bootstrap=500)
    assert v.passes == ("probe",) and v.chosen == "probe"
    assert v.pooled.at["probe", "win_rate"] >= P.BAR_WIN_RATE and v.pooled.at["cui", "win_rate"] < 0.05
    # A probe about as good as depth is better than it but not by the bar's margin: nothing passes.
    v2 = P.validate(pts.assign(probe_accuracy=pts["accuracy"] + rng.normal(scale=0.005, size=len(pts))),
                    ["model", "bottleneck"], bootstrap=500)
    assert v2.passes == () and v2.chosen is None
    assert v2.pooled.at["probe", "mae"] < v2.pooled.at["mean", "mae"]


def test_the_bar_needs_two_architectures_and_thirty_points():
    pts = _points(groups=(("a", "ae"),), n=40, noise=0.005)
    pts["probe_accuracy"] = pts["accuracy"]
    pts["depth"] = np.random.default_rng(3).normal(size=len(pts))
    v = P.validate(pts, ["model", "bottleneck"], bootstrap=200)
    assert v.pooled.at["probe", "win_rate"] == 1.0 and v.passes == () and v.chosen is None
    assert v.architectures == 1
