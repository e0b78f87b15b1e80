"""Writing ``analyze``'s folder: the importance analysis and, when measured, the accuracy per
design point, with their figures."""

from __future__ import annotations

import json
from pathlib import Path

from ..config.scenario import Scenario
from ..plain import jsonable
from ..results.outputs import write_outputs
from .plots import cui_title, plot_accuracy, plot_cui


def save_analysis(scenario: Scenario, res, out_dir: str | Path | None = None, accuracy=None) -> Path:
    """Write the importance analysis to ``<out_dir>/<scenario name>/``: ``cui.csv``,
    ``cui_per_image.parquet``, ``cui_per_class.csv``, ``nominations.json``, ``cui.png``; with
    ``accuracy`` (an :class:`~splitimpera.accuracy.design_points.AccuracyAnalysis`), also
    ``accuracy.csv`` (one row per split and bottleneck: accuracy, agreement, bytes per coder),
    ``accuracy_summary.json`` and ``accuracy.png``."""
    best = res.best_per_class()
    doc = {
        "scenario": scenario.name,
        # What the analysis was computed on: reports use it only beside results of the same.
        "inputs": {"model": scenario.model.model_dump(mode="json"), "data": scenario.data.model_dump(mode="json")},
        "settings": res.settings,
        "best": res.best,
        "nominated": [{k: jsonable(v) for k, v in r.items()} for _, r in res.nominated.iterrows()],
        "best_per_class": [{"class": int(c), **{k: jsonable(v) for k, v in r.items()}} for c, r in best.iterrows()],
    }
    title = f"{scenario.name}: {scenario.model.name}"
    writers = {
        "cui.csv": lambda p: res.curve.to_csv(p),
        "cui_per_image.parquet": lambda p: res.per_image.to_parquet(p),
        "cui_per_class.csv": lambda p: res.per_class.to_csv(p),
        "nominations.json": lambda p: p.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n"),
        "cui.png": lambda p: p.write_bytes(plot_cui(res.curve, res.nominated.to_dict("records"), title or cui_title(res),
                                                    res.per_class, res.settings.get("class_names"))),
    }
    acc_files = ("accuracy.csv", "accuracy_summary.json", "accuracy.png")
    if accuracy is not None:
        m = accuracy.measured
        adoc = {"scenario": scenario.name, "inputs": doc["inputs"], **accuracy.summary()}
        col = "accuracy" if m.full_accuracy is not None else "agreement"
        writers.update({
            "accuracy.csv": lambda p: m.table.to_csv(p, index_label="split"),
            "accuracy_summary.json": lambda p: p.write_text(json.dumps(adoc, indent=2, allow_nan=False) + "\n"),
            "accuracy.png": lambda p: p.write_bytes(plot_accuracy(
                m.table, m.full_accuracy, scenario.bottleneck.coder,
                f"{title} · {col} vs bytes, each point a split")),
        })
    return write_outputs(out_dir if out_dir is not None else scenario.output.dir, scenario, writers,
                         remove=() if accuracy is not None else acc_files)
