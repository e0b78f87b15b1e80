"""Predicted accuracy in the product: which predictor `bottleneck.predictor` picks, the
band a prediction travels with, and measuring instead when no predictor is to be trusted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import LeaveOneOut, cross_val_predict

import splitimpera as si
from splitimpera.accuracy import predictors
from splitimpera.model.loading import load_traced

MEASURED = ["features_0", "features_2", "features_4", "features_7", "features_9", "features_11", "features_14"]


def _run(repo_root, **over):
    base = {"bottleneck.name": "int2", "analysis.engine": "analytic", "bottleneck.splits": MEASURED}
    return si.run(si.load_scenario(repo_root / "scenarios" / "demo.yaml", overrides={**base, **over}))


def test_a_named_baseline_predicts_with_its_leave_one_out_band(repo_root):
    res = _run(repo_root, **{"bottleneck.predictor": "log_size"})
    t = res.for_bottleneck("int2")
    tm = load_traced(res.scenario)
    pred = t.index[t["accuracy_source"] == "predicted (log_size)"]
    rest = [n for n in t.index if n not in MEASURED and n != "output"
            and t.at[n, "accuracy_source"] != "full model (bottleneck n/a)"]
    assert len(pred) > 5 and list(pred) == rest
    x = np.log10([tm.split(n).tx_bytes for n in MEASURED])[:, None]
    y = t.loc[MEASURED, "accuracy"].to_numpy(float)
    line = LinearRegression().fit(x, y)
    for n in pred:
        want = float(np.clip(line.predict(np.log10([[tm.split(n).tx_bytes]]))[0], 0, 1))
        assert t.at[n, "accuracy"] == pytest.approx(want, abs=1e-12)
    loo = cross_val_predict(LinearRegression(), x, y, cv=LeaveOneOut())
    assert t.loc[pred, "accuracy_band"].to_numpy() == pytest.approx(np.mean(np.abs(loo - y)), rel=1e-9)
    s = res.summary()["bottleneck"]["predictor"]
    assert s["method"] == "log_size" and s["measured_splits"] == len(MEASURED)


def test_auto_without_a_validated_predictor_measures_every_split(repo_root, monkeypatch, caplog):
    monkeypatch.setattr(predictors, "VALIDATED", None)
    res = _run(repo_root, **{"bottleneck.predictor": "auto"})
    t = res.for_bottleneck("int2")
    assert not t["accuracy_source"].map(predictors.is_predicted).any()
    assert (t.drop(index="output")["accuracy_source"] == "measured").all()
    assert t["accuracy_band"].isna().all()
    assert "every split measured" in res.summary()["bottleneck"]["prediction"]
    assert any("no accuracy predictor has passed validation" in r.getMessage() for r in caplog.records)


def test_auto_follows_the_validated_predictor(repo_root, monkeypatch):
    monkeypatch.setattr(predictors, "VALIDATED", "depth")
    t = _run(repo_root, **{"bottleneck.predictor": "auto"}).for_bottleneck("int2")
    assert t["accuracy_source"].eq("predicted (depth)").sum() == len(t) - len(MEASURED) - 1


def test_predicted_accuracy_text_carries_the_band():
    from splitimpera.report.view import accuracy_footnote, accuracy_text

    assert accuracy_text(0.9751, "predicted (cui)", band=0.0123) == "97.5 ±1.2 %*"
    assert accuracy_text(0.9751, "measured", band=float("nan")) == "97.5 %"
    note = accuracy_footnote(["measured", "predicted (log_size)"])
    assert note.startswith("* predicted (B2: linear on log10 sent bytes)") and "leave-one-split-out" in note


def test_dashboard_plots_cui_against_the_measured_accuracy(repo_root):
    from splitimpera.dashboard.charts import cui_accuracy_chart
    from splitimpera.data import digits

    res = _run(repo_root, **{"bottleneck.name": ["int2", "int4"], "bottleneck.splits": "all"})
    cui = si.cui(load_traced(res.scenario), digits("test"))
    spec = cui_accuracy_chart(cui, res.table)
    pts = pd.DataFrame(spec["layer"][0]["data"]["values"])
    measured = res.table[res.table["accuracy_source"] == "measured"].reset_index()
    measured = measured[measured["split"].isin(cui.curve.index)]
    assert len(pts) == len(measured) and set(pts["bottleneck"]) == {"int2", "int4"}
    for _, r in pts.iterrows():
        assert r["cui"] == pytest.approx(cui.curve.at[r["split"], "log10_cui"])
        assert r["accuracy"] == pytest.approx(100 * res.table.at[(r["split"], r["bottleneck"]), "accuracy"])
    assert cui_accuracy_chart(cui, res.table.assign(accuracy_source="full model")) is None


def test_linear_probe_equals_a_probe_fitted_on_heads_built_by_split_model(repo_root):
    """The probe's features come from one shared pass; the reference runs each head built by
    ``si.split_model`` and fits scikit-learn's logistic regression on the same pooling."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from torch.utils.data import Subset

    from splitimpera.accuracy.evaluate import linear_probe_accuracy
    from splitimpera.data import digits

    tm = load_traced(si.load_scenario(repo_root / "scenarios" / "demo.yaml"))
    calib, test = Subset(digits("train"), list(range(300))), Subset(digits("test"), list(range(200)))
    splits = ["features_4", "features_14", "classifier_1"]
    got = linear_probe_accuracy(tm, calib, test, splits, seed=0)

    def feats(ds, head):
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = np.array([int(ds[i][1]) for i in range(len(ds))])
        with torch.no_grad():
            z = head(x)
        if z.dim() == 4:
            z = torch.nn.functional.adaptive_avg_pool2d(z, 2)
        return z.flatten(1).numpy(), y

    for s in splits:
        head, _ = si.split_model(tm.model, s, (1, 32, 32))
        (xtr, ytr), (xte, yte) = feats(calib, head.eval()), feats(test, head.eval())
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=0)).fit(xtr, ytr)
        assert got[s] == pytest.approx(float((clf.predict(xte) == yte).mean()), abs=1.5 / len(test))


def test_kept_predictions_give_the_table_accuracy_and_subset_accuracies(repo_root):
    from splitimpera.accuracy.evaluate import measure_accuracy
    from splitimpera.data import digits

    tm = load_traced(si.load_scenario(repo_root / "scenarios" / "demo.yaml"))
    ds = digits("test")
    at = measure_accuracy(tm, ds, ["int2", "top25_random"], ["features_4", "features_9"],
                          calibration=digits("train"), keep_predictions=True)
    assert at.labels.tolist() == [int(ds[i][1]) for i in range(len(ds))]
    for (s, b), pred in at.predictions.items():
        draws = 3 if b == "top25_random" else 1
        assert pred.shape == (draws, len(ds))
        assert (pred == at.labels).mean() == pytest.approx(at.for_bottleneck(b).at[s, "accuracy"], abs=1e-12)
    # int2 is deterministic: its predictions are the split pipeline's, run head then tail.
    import torch

    head, tail = si.split_model(tm.model, "features_9", (1, 32, 32))
    b = si.get_bottleneck("int2")
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        ref = tail(b.roundtrip(head.eval()(x))[0].clone()).argmax(1).numpy()
    assert np.array_equal(at.predictions[("features_9", "int2")][0], ref)
