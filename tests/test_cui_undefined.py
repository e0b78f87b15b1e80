"""An all-zero CUI value is undefined, not log10 = −30."""

import numpy as np
import pandas as pd
import pytest

from splitimpera.accuracy.cui import _assemble, resolve_settings
from splitimpera.report.text import render_analysis

SPLITS = ["s0", "s1", "s2", "s3", "s4"]


def _result():
    # Class 0's maps are all zero at s1 and s2 (a ReLU killed them); class 1's never are.
    rows = [[0, 0, 0, 1e-2, 0.0, 0.0, 1e-1, 1e-3]] * 2 + [[1, 1, 1, 1e-1, 1e-2, 1e-2, 1e-3, 1e-1]] * 2
    per_image = pd.DataFrame(rows, columns=["label", "target", "predicted", *SPLITS])
    return _assemble(per_image, SPLITS, resolve_settings())


def test_an_all_zero_value_is_undefined_and_prominence_comes_from_real_values():
    sub = _result().for_classes([0])
    curve = sub.curve["log10_cui"]
    assert curve[["s1", "s2"]].isna().all()
    np.testing.assert_allclose(curve[["s0", "s3", "s4"]], [-2, -1, -3])
    # On the defined values (-2, -1, -3) the only peak is s3, standing 1 above the floor the
    # curve is padded with (its minimum - 1 = -4): prominence 3, not 30 above a -30 clamp.
    nom = sub.nominated
    assert list(nom["split"]) == ["s3"]
    assert nom["prominence"].iloc[0] == pytest.approx(-1 - (-4))
    pc = _result().per_class
    assert np.isnan(pc.loc[0, "s1"]) and np.isfinite(pc.loc[1]).all()


def test_undefined_values_are_shown_as_such():
    res = _result()
    best = res.best_per_class()
    assert best.loc[0, "best_split"] == "s3" and best.loc[1, "best_split"] == "s0"

    class _Sc:
        name, data = "t", type("D", (), {"source": "synthetic", "split": "test"})()
        model = type("M", (), {"name": "m"})()

    text = render_analysis(_Sc(), res.for_classes([0]), (1, 8, 8))
    assert "29." not in text and "-30" not in text
    assert "3.000" in text  # the prominence of s3
