"""The dashboard's cached calls of the API: the heavy stages once per prepare key, the ranking
once per fully resolved scenario, the importance analysis and its figure, and the HTML report
rendered from memory."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from ..config.scenario import Scenario
from ..pipeline import Prepared, evaluate, prepare
from ..report.view import View
from ..results.run import Result


@st.cache_resource(max_entries=8, show_spinner="Loading the model, profiling every split, measuring accuracy…")
def prepared(key: str, _scenario: Scenario) -> Prepared:
    """``si.prepare``, once per prepare key (seed, model, data, analysis settings)."""
    return prepare(_scenario)


@st.cache_resource(max_entries=64, show_spinner=False)
def evaluated(scenario_yaml: str, key: str, _scenario: Scenario, _prep: Prepared) -> Result:
    """``si.evaluate``: latency and QoS ranking, once per fully resolved scenario."""
    return evaluate(_scenario, _prep)


@st.cache_resource(max_entries=8, show_spinner="I-SPLIT importance analysis: Grad-CAM at every split…")
def importance(key: str, _scenario: Scenario, _prep: Prepared):
    from splitimpera.accuracy.design_points import analyze

    return analyze(_scenario, _prep.traced)


@st.cache_resource(max_entries=8, show_spinner=False)
def best_per_class(key: str, _res) -> pd.DataFrame:
    return _res.best_per_class()


@st.cache_data(max_entries=32, show_spinner=False)
def cui_png(key: str, classes: tuple, _res, title: str) -> bytes:
    """``report.plots.plot_cui`` (curve, nominations, per-class curves) as PNG bytes."""
    from splitimpera.report.plots import cui_title, plot_cui

    return plot_cui(_res.curve, _res.nominated.to_dict("records"), title or cui_title(_res), _res.per_class,
                    _res.settings.get("class_names"))


def report_html(results: list[Result], cui=None) -> str:
    """The HTML report of the results, rendered from memory (the CUI beside the last)."""
    from splitimpera.report.html import render_html
    from splitimpera.results.folder import SavedAnalysis

    if cui is not None:
        saved = SavedAnalysis(cui=cui.curve, nominations={"nominated": cui.nominated.to_dict("records")})
        results = [*results[:-1], dataclasses.replace(results[-1], analysis=saved)]
    return render_html([View.of(r) for r in results])
